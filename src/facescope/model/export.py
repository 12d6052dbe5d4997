"""Export a trained network as an inference bundle (model.onnx + model.json)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

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


def export_onnx(model: MultiTaskNet, path: Path, input_size: int, mirror: bool = True) -> Path:
    probabilities = ProbabilityNet(model.eval(), mirror)
    example = torch.zeros(2, 3, input_size, input_size)
    torch.onnx.export(
        probabilities, (example,), str(path), input_names=["images"],
        output_names=["gender", "race", "age"], dynamic_axes={"images": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    return path


def export_bundle(model: MultiTaskNet, folder: Path, input_size: int, run: Path | None = None,
                  name: str | None = None, dataset_format: str = "utkface", mirror: bool = True) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, folder / "model.onnx", input_size, mirror)
    dataset, licence = DATASETS[dataset_format]
    summary = {"dataset": dataset}
    if run is not None and (Path(run) / "splits.csv").exists():
        summary.update(training_data_summary(Path(run) / "splits.csv"))
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
