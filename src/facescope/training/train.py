"""`facescope train`: split, align, augment, fit with early stopping, checkpoint, export a bundle.

A run folder holds everything: config.yaml, splits.csv, train.log, history.json, curves.png,
checkpoints/ (last and best, safetensors + JSON) and, at the end, bundle/ (model.onnx + model.json).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from facescope import labels
from facescope.data import load_dataset
from facescope.data.records import FaceRecord
from facescope.data.splits import assign_splits, write_split_manifest
from facescope.model.network import BACKBONES, MultiTaskNet
from facescope.training.augment import augment_batch
from facescope.training.config import TrainConfig
from facescope.faces.crops import build_crops

log = logging.getLogger(__name__)


@dataclass
class Targets:
    """Per-record label indices as tensors; -1 where a record lacks that label."""

    gender: torch.Tensor
    race: torch.Tensor
    age_years: torch.Tensor  # float, -1 where unknown
    age_bin: torch.Tensor
    group: torch.Tensor  # race x gender group index, for balancing

    @classmethod
    def from_records(cls, records: list[FaceRecord], taxonomy: str) -> "Targets":
        races = labels.taxonomy(taxonomy)
        gender = [labels.GENDERS.index(r.gender) if r.gender else -1 for r in records]
        race = [races.index(r.race) if r.race else -1 for r in records]
        age = [min(r.age_years, labels.MAX_AGE) if r.age_years is not None else -1.0 for r in records]
        age_bin = [labels.AGE_BIN_LABELS.index(r.age_bin) if r.age_bin else -1 for r in records]
        group = [max(rc, 0) * len(labels.GENDERS) + max(g, 0) for rc, g in zip(race, gender)]
        return cls(torch.tensor(gender), torch.tensor(race), torch.tensor(age, dtype=torch.float32),
                   torch.tensor(age_bin), torch.tensor(group))

    def take(self, index: torch.Tensor, device: str = "cpu") -> "Targets":
        return Targets(*(getattr(self, f)[index].to(device)
                         for f in ("gender", "race", "age_years", "age_bin", "group")))


def group_weights(groups: torch.Tensor) -> torch.Tensor:
    """Per-sample weights inversely proportional to the race x gender group's size, mean 1."""
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse].float()
    return weights / weights.mean()


def multitask_loss(outputs: dict[str, torch.Tensor], targets: Targets, config: TrainConfig,
                   age_mode: str, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of the three heads' losses (each averaged over the samples that have that label)."""
    parts: dict[str, torch.Tensor] = {}

    def mean(per_sample: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.float() if weights is None else mask.float() * weights
        return (per_sample * w).sum() / w.sum().clamp(min=1e-6)

    for task in ("gender", "race"):
        target = getattr(targets, task)
        mask = target >= 0
        per_sample = F.cross_entropy(outputs[task], target.clamp(min=0), reduction="none",
                                     label_smoothing=config.label_smoothing)
        parts[task] = mean(per_sample, mask)
    if age_mode == "years":
        mask = targets.age_years >= 0
        years = torch.arange(labels.MAX_AGE + 1, dtype=torch.float32, device=outputs["age"].device)
        # Label distribution learning: the target is a Gaussian around the true age, not one class,
        # so neighbouring years are "nearly right" and the expected value is a sensible estimate.
        soft = torch.exp(-0.5 * ((years[None] - targets.age_years[:, None]) / config.age_sigma) ** 2)
        soft = soft / soft.sum(1, keepdim=True)
        log_probs = outputs["age"].float().log_softmax(1)
        distribution = -(soft * log_probs).sum(1)
        expected = (log_probs.exp() * years[None]).sum(1)
        l1 = (expected - targets.age_years).abs()
        parts["age"] = mean(distribution + config.age_l1_weight * l1, mask)
    else:
        mask = targets.age_bin >= 0
        parts["age"] = mean(F.cross_entropy(outputs["age"], targets.age_bin.clamp(min=0), reduction="none"), mask)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def expected_years(age_logits: torch.Tensor) -> torch.Tensor:
    years = torch.arange(age_logits.shape[1], dtype=torch.float32, device=age_logits.device)
    return (age_logits.float().softmax(1) * years).sum(1)


def _to_images(crops: np.ndarray, index: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops[index])).permute(0, 3, 1, 2).float()


def _to_device(images: torch.Tensor, device: str) -> torch.Tensor:
    # Channels-last (NHWC): the layout oneDNN's (CPU) and cuDNN's (GPU) fast convolution kernels prefer;
    # benchmarks/train_step.py times a step in each layout.
    return images.to(device, memory_format=torch.channels_last)


def training_step(model: MultiTaskNet, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: Targets,
                  config: TrainConfig, weights: torch.Tensor | None = None) -> tuple[float, dict[str, float]]:
    """One optimisation step on a batch already on the model's device and in its memory layout;
    returns the loss and its per-head parts."""
    with _autocast(images.device.type):
        loss, parts = multitask_loss(model(images), targets, config, model.age_mode, weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), parts


@torch.no_grad()
def validate(model: MultiTaskNet, crops: np.ndarray, targets: Targets, config: TrainConfig,
             device: str = "cpu") -> dict[str, float]:
    model.eval()
    totals: dict[str, float] = {"loss": 0.0}
    correct = {"gender": 0, "race": 0}
    counted = {"gender": 0, "race": 0}
    abs_error, n_age = 0.0, 0
    for start in range(0, len(crops), 256):
        index = np.arange(start, min(start + 256, len(crops)))
        batch_targets = targets.take(torch.from_numpy(index), device)
        with _autocast(device):
            outputs = model(_to_device(_to_images(crops, index), device))
        loss, _ = multitask_loss(outputs, batch_targets, config, model.age_mode)
        totals["loss"] += float(loss) * len(index)
        for task in ("gender", "race"):
            target = getattr(batch_targets, task)
            mask = target >= 0
            correct[task] += int((outputs[task].argmax(1)[mask] == target[mask]).sum())
            counted[task] += int(mask.sum())
        if model.age_mode == "years":
            mask = batch_targets.age_years >= 0
            abs_error += float((expected_years(outputs["age"])[mask] - batch_targets.age_years[mask]).abs().sum())
            n_age += int(mask.sum())
    result = {"loss": totals["loss"] / max(1, len(crops))}
    for task in ("gender", "race"):
        result[f"{task}_accuracy"] = correct[task] / max(1, counted[task])
    if n_age:
        result["age_mae"] = abs_error / n_age
    return result


def _save_checkpoint(path: Path, model: MultiTaskNet, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Weights and optimizer moments as safetensors, the rest as JSON: no pickle anywhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(path.with_suffix(".safetensors")))
    optimizer_tensors, optimizer_scalars = {}, {}
    for index, param_state in optimizer.state_dict()["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                optimizer_tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                optimizer_scalars[f"{index}.{key}"] = value
    save_file(optimizer_tensors or {"empty": torch.zeros(1)}, str(path.with_suffix(".optimizer.safetensors")))
    state = dict(state, optimizer_scalars=optimizer_scalars)
    path.with_suffix(".json").write_text(json.dumps(state, indent=2))


def _load_weights(path: Path, model: MultiTaskNet) -> None:
    model.load_state_dict(load_file(str(path.with_suffix(".safetensors"))))


def _load_checkpoint(path: Path, model: MultiTaskNet, optimizer: torch.optim.Optimizer) -> dict:
    """Weights and optimizer state of a checkpoint, to resume its run; returns the run's state."""
    _load_weights(path, model)
    state = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path.with_suffix(".optimizer.safetensors")))
    per_param: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(state["optimizer_scalars"].items()):
        if name == "empty":
            continue
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    saved = optimizer.state_dict()
    saved["state"] = per_param
    optimizer.load_state_dict(saved)
    return state


def _start_from(model: MultiTaskNet, checkpoint: Path) -> None:
    """Load a trained checkpoint's weights into a fresh network of the same design; the run's own epochs,
    schedule and input size then apply (progressive resizing: train small, fine-tune larger)."""
    checkpoint = _checkpoint_path(checkpoint)
    state = json.loads(checkpoint.with_suffix(".json").read_text())
    ours = {"backbone": model.backbone_name, "race_taxonomy": model.race_taxonomy, "age_mode": model.age_mode}
    theirs = {key: state.get(key) for key in ours}
    if theirs != ours:
        raise ValueError(f"init checkpoint {checkpoint} is a {theirs} network; this run trains a {ours} one")
    _load_weights(checkpoint, model)
    log.info("weights from %s (trained at %s px, epoch %s)", checkpoint, state.get("input_size"), state.get("epoch"))


def _checkpoint_path(checkpoint: str | Path) -> Path:
    """A checkpoint's path without a file suffix (`.../best`), however it was given."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_suffix("") if checkpoint.suffix in (".json", ".safetensors") else checkpoint


def load_trained_model(checkpoint: Path) -> tuple[MultiTaskNet, dict]:
    """A trained network from a run's checkpoint (`.../checkpoints/best`, with or without a file suffix),
    and its checkpoint state."""
    checkpoint = _checkpoint_path(checkpoint)
    state = json.loads(checkpoint.with_suffix(".json").read_text())
    model = MultiTaskNet(state["backbone"], state["race_taxonomy"], state["age_mode"], pretrained=False)
    _load_weights(checkpoint, model)
    return model.eval(), state


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    keys = [k for k in ("loss", "gender_accuracy", "race_accuracy", "age_mae") if f"val_{k}" in history[0]]
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for axis, key in zip(np.atleast_1d(axes), keys):
        if f"train_{key}" in history[0]:
            axis.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train")
        axis.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        axis.set_title(key.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _autocast(device: str):
    """Mixed precision (bfloat16) on a GPU; full precision on the CPU, where it would be slower."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")


def _lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def prepare_data(config: TrainConfig, run: Path) -> tuple[list[FaceRecord], list[str], str, str]:
    """The records, their split (train / val / test), the race taxonomy and the source dataset's format;
    writes run/splits.csv."""
    if config.splits:
        dataset = load_dataset(config.splits, format="manifest")
        splits = [r.partition or "" for r in dataset.records]
    else:
        dataset = load_dataset(config.data)
        splits = assign_splits(dataset.records, config.val_fraction, config.test_fraction, config.seed)
    write_split_manifest(dataset.records, splits, run / "splits.csv", dataset.source_format)
    return dataset.records, splits, dataset.taxonomy, dataset.source_format


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train per `config` into its output folder; returns the exported bundle's folder."""
    run = Path(config.output)
    run.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("facescope").addHandler(handler)
    logging.getLogger("facescope").setLevel(logging.INFO)
    try:
        return _train(config, run, resume)
    finally:
        logging.getLogger("facescope").removeHandler(handler)


def _train(config: TrainConfig, run: Path, resume: bool) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    input_size = config.input_size or BACKBONES[config.backbone].input_size
    records, splits, taxonomy, dataset_format = prepare_data(config, run)
    by_split = {s: [i for i, name in enumerate(splits) if name == s] for s in ("train", "val")}
    if config.max_images:
        by_split["train"] = by_split["train"][: config.max_images]
        by_split["val"] = by_split["val"][: max(32, config.max_images // 4)]
    age_mode = "years" if all(records[i].age_years is not None for i in by_split["train"]) else "bins"
    log.info("data %s: %d train, %d val images, taxonomy %s, age head %s, input %d px",
             config.data or config.splits, len(by_split["train"]), len(by_split["val"]), taxonomy, age_mode, input_size)

    crops = {}
    for split, index in by_split.items():
        crops[split], readable = build_crops([records[i] for i in index], input_size).only_readable()
        by_split[split] = [index[i] for i in readable]
    targets = {s: Targets.from_records([records[i] for i in idx], taxonomy) for s, idx in by_split.items()}

    device = _device()
    log.info("training on %s", device)
    model = MultiTaskNet(config.backbone, taxonomy, age_mode, pretrained=config.pretrained and not config.init)
    if config.init and not resume:
        _start_from(model, Path(config.init))
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_train = len(by_split["train"])
    steps_per_epoch = n_train // config.batch_size or 1
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, int(config.warmup_epochs * steps_per_epoch))
    sample_weights = group_weights(targets["train"].group)
    checkpoints = run / "checkpoints"
    state = {"epoch": 0, "step": 0, "best_score": math.inf, "best_epoch": 0, "history": []}
    if resume and (checkpoints / "last.json").exists():
        state = _load_checkpoint(checkpoints / "last", model, optimizer)
        log.info("resumed from epoch %d", state["epoch"])

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if epoch - state["best_epoch"] > config.patience and state["best_epoch"] > 0:
            log.info("early stop: no better validation loss since epoch %d", state["best_epoch"])
            break
        model.train()
        if config.balance == "sampler":  # race x gender groups drawn equally often
            order = torch.multinomial(sample_weights, steps_per_epoch * config.batch_size, replacement=True,
                                      generator=torch.Generator().manual_seed(config.seed + epoch)).numpy()
        else:
            order = rng.permutation(n_train)
        sums: dict[str, float] = {}
        progress = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", unit="batch")
        started = time.time()
        for step in progress:
            # Sorted: the memory-mapped crops are read in file order.
            index = np.sort(order[step * config.batch_size:(step + 1) * config.batch_size])
            images = _to_images(crops["train"], index)
            if config.augment:
                images = augment_batch(images, torch.Generator().manual_seed(config.seed * 100_003 + state["step"]))
            batch_targets = targets["train"].take(torch.from_numpy(index), device)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(state["step"], total_steps, warmup_steps, config.lr)
            weights = sample_weights[torch.from_numpy(index)].to(device) if config.balance == "loss" else None
            loss, parts = training_step(model, optimizer, _to_device(images, device), batch_targets, config, weights)
            state["step"] += 1
            for key, value in dict(parts, loss=loss).items():
                sums[key] = sums.get(key, 0.0) + value
            progress.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}")
        val = validate(model, crops["val"], targets["val"], config, device)
        record = {"epoch": epoch, "seconds": round(time.time() - started, 1),
                  "train_loss": sums["loss"] / steps_per_epoch, **{f"val_{k}": v for k, v in val.items()}}
        state["history"].append(record)
        log.info("epoch %d: %s", epoch, json.dumps({k: round(v, 4) for k, v in record.items()}))
        print(json.dumps({k: round(v, 4) for k, v in record.items()}), flush=True)
        state["epoch"] = epoch
        common = {"backbone": config.backbone, "race_taxonomy": taxonomy, "age_mode": age_mode,
                  "input_size": input_size, "dataset_format": dataset_format}
        if val["loss"] < state["best_score"]:
            state["best_score"], state["best_epoch"] = val["loss"], epoch
            _save_checkpoint(checkpoints / "best", model, optimizer, dict(state, **common))
        _save_checkpoint(checkpoints / "last", model, optimizer, dict(state, **common))
        (run / "history.json").write_text(json.dumps(state["history"], indent=2))
        plot_curves(state["history"], run / "curves.png")

    from facescope.model.export import export_bundle

    model, _ = load_trained_model(checkpoints / "best")
    bundle = export_bundle(model, run / "bundle", input_size=input_size, run=run, dataset_format=dataset_format)
    if "test" in splits:
        # The bundle carries its own figures: the held-out test split, per group, and the model card.
        from facescope.evaluation.run import run_evaluation

        run_evaluation(bundle, run / "splits.csv", split="test", output=run / "evaluation", update_bundle=True,
                       limit=max(32, config.max_images // 4) if config.max_images else None)
    return bundle
