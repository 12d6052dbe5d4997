"""Export a trained network as an inference bundle (model.onnx + model.json)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch
import yaml

from facescope.model.bundle import BundleInfo
from facescope.model.network import MultiTaskNet, ProbabilityNet

log = logging.getLogger(__name__)
UTKFACE_LICENCE = (
    "Trained on UTKFace, which is available for non-commercial research purposes only; this model "
    "inherits that restriction."
)
# The dataset a loader format stands for, and the licence a model trained on it inherits.
DATASETS = {
    "utkface": ("UTKFace", UTKFACE_LICENCE),
    "utk48csv": ("UTKFace (48x48 grey CSV)", UTKFACE_LICENCE),
    "fairface": ("FairFace", "Trained on FairFace (CC BY 4.0): attribute the FairFace authors."),
    "manifest": ("a manifest of images", "Inherits the licences of the images it was trained on."),
}


def training_data_summary(splits_csv: Path) -> dict:
    """Counts of the training split by race, gender and age bin, from a run's splits.csv."""
    table = pd.read_csv(splits_csv, dtype=str, keep_default_na=False)
    train = table[table["partition"] == "train"]
    return {
        "splits": table["partition"].value_counts().to_dict(),
        "train_by_race": train["race"].value_counts().to_dict(),
        "train_by_gender": train["gender"].value_counts().to_dict(),
        "train_by_age_bin": train["age_bin"].value_counts().to_dict(),
    }


def training_recipe(run: Path) -> list[dict]:
    """How a run was trained, one entry per stage: a run that started from another run's checkpoint
    (`init`) lists that run's stages first, so a fine-tuned model's card shows its whole history."""
    run = Path(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").exists() else []
    best = json.loads((run / "checkpoints" / "best.json").read_text()) if (run / "checkpoints" / "best.json").exists() else {}
    start = (f"weights of {config['init']}" if config.get("init")
             else "ImageNet weights where on disk" if config.get("pretrained") else "random initialisation")
    stage = {
        "backbone": config.get("backbone"), "input_size": best.get("input_size", config.get("input_size")),
        "start": start, "epochs_run": len(history), "best_epoch": best.get("best_epoch"),
        "batch_size": config.get("batch_size"), "lr": config.get("lr"), "balance": config.get("balance"),
        "augment": config.get("augment"), "minutes": round(sum(h.get("seconds", 0) for h in history) / 60, 1),
    }
    earlier = []
    if config.get("init"):
        init_run = Path(config["init"]).parent.parent  # <run>/checkpoints/best
        if (init_run / "config.yaml").exists():
            earlier = training_recipe(init_run)
    return earlier + [stage]


def export_onnx(model: MultiTaskNet, path: Path, input_size: int, mirror: bool = False) -> Path:
    # The wrapper itself in eval mode: the exporter puts the module back in the mode it found it in, and a
    # fresh wrapper is in training mode, which would leave the caller's network in it (BatchNorm on batch stats).
    probabilities = ProbabilityNet(model, mirror).eval()
    example = torch.zeros(2, 3, input_size, input_size)
    torch.onnx.export(
        probabilities, (example,), str(path), input_names=["images"],
        output_names=["gender", "race", "age"], dynamic_axes={"images": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    return path


def export_bundle(model: MultiTaskNet, folder: Path, input_size: int, run: Path | None = None,
                  name: str | None = None, dataset_format: str = "utkface", mirror: bool = False) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, folder / "model.onnx", input_size, mirror)
    dataset, licence = DATASETS[dataset_format]
    summary = {"dataset": dataset}
    if run is not None and (Path(run) / "splits.csv").exists():
        summary.update(training_data_summary(Path(run) / "splits.csv"))
    if run is not None and (Path(run) / "config.yaml").exists():
        summary["recipe"] = training_recipe(Path(run))
    info = BundleInfo(
        name=name or f"facescope-{model.backbone_name}-{model.race_taxonomy}",
        backbone=model.backbone_name,
        input_size=input_size,
        race_taxonomy=model.race_taxonomy,
        age_mode=model.age_mode,
        licence=licence,
        training_data=summary,
        test_time_mirror=mirror,
    )
    (folder / "model.json").write_text(info.to_json())
    log.info("exported bundle to %s", folder)
    return folder
