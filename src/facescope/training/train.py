"""`facescope train`, as steps: data (splits per data set), crops (the face pipeline, cached), model
(backbone + heads, from pretrained weights or a checkpoint), loop (heads first, then all; early stopping),
checkpoint, export (the bundle) and evaluation (the bundle on its own test split).

The run folder's layout is `RunFolder`'s; what the bundle must say about its data and recipe travels in
the checkpoint (training.checkpoints), not reconstructed from the folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from facescope import labels
from facescope.data.records import FaceRecord
from facescope.faces.align import CANONICAL, Framing
from facescope.faces.crops import build_crops
from facescope.model.network import BACKBONES, MultiTaskNet, to_network_input
from facescope.training import distributed
from facescope.training.augment import augment_batch
from facescope.training.checkpoints import load_checkpoint, load_trained_model, read_state, save_checkpoint, start_from
from facescope.training.config import TrainConfig
from facescope.training.data import TrainingData, prepare_data
from facescope.training.run_folder import RunFolder

log = logging.getLogger(__name__)
__all__ = ["Targets", "multitask_loss", "training_step", "validate", "train", "load_trained_model"]


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
        # The global batch's denominator: under DDP the averaged gradients are the single-process ones.
        return (per_sample * w).sum() / distributed.global_denominator(w.sum()).clamp(min=1e-6)

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


def network_input(model: MultiTaskNet, images: torch.Tensor, device: str) -> torch.Tensor:
    """RGB 0..255 images as the network's input: its backbone's convention, on the device, channels-last
    (NHWC: the layout oneDNN's (CPU) and cuDNN's (GPU) fast convolution kernels prefer;
    benchmarks/train_step.py times a step in each layout)."""
    return to_network_input(images, model.input_spec).to(device, memory_format=torch.channels_last)


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
def validate(model: MultiTaskNet, crops: np.ndarray, targets: Targets, config: TrainConfig, device: str = "cpu",
             datasets: np.ndarray | None = None) -> dict[str, float]:
    """Validation loss and figures, overall and (given each crop's data set) per data set."""
    model.eval()
    loss_sum = 0.0
    outputs: dict[str, list[torch.Tensor]] = {"gender": [], "race": [], "age": []}
    for start in range(0, len(crops), 256):
        index = np.arange(start, min(start + 256, len(crops)))
        with _autocast(device):
            batch = model(network_input(model, _to_images(crops, index), device))
        loss, _ = multitask_loss(batch, targets.take(torch.from_numpy(index), device), config, model.age_mode)
        loss_sum += float(loss) * len(index)
        for task in outputs:
            outputs[task].append(batch[task].float().cpu())
    logits = {task: torch.cat(parts) for task, parts in outputs.items()}
    result = {"loss": loss_sum / max(1, len(crops))}
    groups = {"": np.ones(len(crops), dtype=bool)}
    if datasets is not None and len(set(datasets)) > 1:
        groups.update({f"{name}_": datasets == name for name in sorted(set(datasets))})
    for prefix, member in groups.items():
        member = torch.from_numpy(member)
        for task in ("gender", "race"):
            target = getattr(targets, task)
            mask = (target >= 0) & member
            if mask.any():
                result[f"{prefix}{task}_accuracy"] = float((logits[task].argmax(1)[mask] == target[mask]).float().mean())
        mask = (targets.age_years >= 0) & member
        if model.age_mode == "years" and mask.any():
            result[f"{prefix}age_mae"] = float((expected_years(logits["age"])[mask] - targets.age_years[mask]).abs().mean())
    return result


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


def _autocast(device: str):
    """Mixed precision (bfloat16) on a GPU; full precision on the CPU, where it would be slower."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")


def _lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def training_crops(data: TrainingData, split: str, size: int, framing: Framing,
                   limit: int | None = None) -> tuple[list[int], np.ndarray]:
    """(record indices, their crops) of a split's faces found by the face pipeline; faces not found or
    unreadable are counted in the log and left out."""
    index = data.indices(split)[:limit]
    aligned = build_crops([data.records[i] for i in index], size, framing)
    crops, found = aligned.only_found()
    log.info("%s crops: %s", split, aligned.outcomes)
    return [index[i] for i in found], crops


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train per `config` into its run folder; returns the exported bundle's folder. Under torchrun,
    one process of several (training.distributed); rank 0 writes."""
    run = RunFolder(config.output)
    with distributed.session():
        if not distributed.is_main():
            logging.getLogger("facescope").setLevel(logging.WARNING)
            return _train(config, run, resume)
        run.root.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("facescope").addHandler(handler)
        logging.getLogger("facescope").setLevel(logging.INFO)
        try:
            return _train(config, run, resume)
        finally:
            logging.getLogger("facescope").removeHandler(handler)


def _train(config: TrainConfig, run: RunFolder, resume: bool) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    if distributed.is_main():
        run.config.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    torch.manual_seed(config.seed)

    # Step 1, data: the records and their splits (step 2 too: rank 0 writes them, the others read them).
    with distributed.main_first():
        # Only rank 0 writes the run's split manifest; the others make the same splits and discard theirs.
        data = prepare_data(config, run.splits if distributed.is_main() else Path(os.devnull))
        input_size = config.input_size or BACKBONES[config.backbone].input_size
        framing = CANONICAL.zoomed(config.framing_zoom)

        # Step 2, crops: each split's faces through the face pipeline (cached).
        limit = config.max_images
        train_index, train_crops = training_crops(data, "train", input_size, framing, limit)
        val_index, val_crops = training_crops(data, "val", input_size, framing, max(32, limit // 4) if limit else None)
    train_targets = Targets.from_records([data.records[i] for i in train_index], data.taxonomy)
    val_targets = Targets.from_records([data.records[i] for i in val_index], data.taxonomy)
    val_datasets = np.array([data.records[i].dataset for i in val_index])
    log.info("data %s: %d train, %d val faces, taxonomy %s, age head %s, input %d px",
             config.data or config.splits, len(train_index), len(val_index), data.taxonomy, data.age_mode, input_size)

    # Step 3, model: pretrained backbone and new heads, or a checkpoint's weights.
    device = distributed.device()
    model = MultiTaskNet(config.backbone, data.taxonomy, data.age_mode, pretrained=config.pretrained and not config.init)
    earlier_recipe = start_from(model, Path(config.init)).get("recipe", []) if config.init and not resume else []
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([
        {"params": model.features.parameters(), "lr_scale": config.backbone_lr_scale},
        {"params": [p for name, p in model.named_parameters() if not name.startswith("features.")], "lr_scale": 1.0},
    ], lr=config.lr, weight_decay=config.weight_decay)
    state = {"epoch": 0, "step": 0, "best_score": math.inf, "best_epoch": 0, "history": []}
    if resume and run.last.with_suffix(".json").exists():
        state = load_checkpoint(run.last, model, optimizer)
        earlier_recipe = state["recipe"][:-1]
        log.info("resumed from epoch %d", state["epoch"])

    # Step 4, loop (with step 5, checkpoints after every epoch).
    common = {
        "backbone": config.backbone, "race_taxonomy": data.taxonomy, "age_mode": data.age_mode,
        "input_size": input_size, "framing": framing.to_json(), "provenance": data.provenance(),
    }
    sample_weights = data.sample_weights(train_index, group_weights(train_targets.group) if config.balance == "sampler" else None)
    loss_weights = None
    if config.balance == "loss":
        loss_weights = group_weights(train_targets.group)
    elif config.balance == "gender":
        loss_weights = data.gender_weights(train_index)
    for state in fit(distributed.wrap(model), optimizer, state, config, train_crops, train_targets, val_crops,
                     val_targets, val_datasets, sample_weights, loss_weights, device):
        if not distributed.is_main():
            continue
        stage = recipe_stage(config, state, init=config.init)
        checkpoint = dict(state, **common, recipe=earlier_recipe + [stage])
        if state["best_epoch"] == state["epoch"]:
            save_checkpoint(run.best, model, optimizer, checkpoint)
        save_checkpoint(run.last, model, optimizer, checkpoint)
        run.history.write_text(json.dumps(state["history"], indent=2))
        plot_curves(state["history"], run.curves)
    if not distributed.is_main():
        return run.bundle
    if not run.best.with_suffix(".json").exists():
        raise RuntimeError(f"{run.root}: no epoch was trained (epochs={config.epochs})")
    best = read_state(run.best)
    best["recipe"][-1] = recipe_stage(config, state, init=config.init)  # the whole stage, not up to its best epoch
    run.best.with_suffix(".json").write_text(json.dumps(best, indent=2))

    # Step 6, export; step 7, evaluation of the bundle on its own held-out test split.
    from facescope.model.export import export_bundle

    model, checkpoint = load_trained_model(run.best)
    bundle = export_bundle(model, run.bundle, checkpoint)
    if data.indices("test"):
        from facescope.evaluation.run import run_evaluation

        run_evaluation(bundle, run.splits, split="test", output=run.evaluation, update_bundle=True,
                       limit=max(32, limit // 4) if limit else None)
    return bundle


def recipe_stage(config: TrainConfig, state: dict, init: str | None) -> dict:
    """One training stage as the model card tells it."""
    start = f"weights of {init}" if init else (
        BACKBONES[config.backbone].pretraining if config.pretrained else "random initialisation")
    return {
        "backbone": config.backbone, "input_size": config.input_size or BACKBONES[config.backbone].input_size,
        "start": start, "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
        "frozen_backbone_epochs": config.frozen_backbone_epochs, "batch_size": config.batch_size, "lr": config.lr,
        "backbone_lr_scale": config.backbone_lr_scale, "balance": config.balance, "augment": config.augment,
        "data": [str(path) for path in (config.data if isinstance(config.data, list) else [config.data])],
        "minutes": round(sum(h.get("seconds", 0) for h in state["history"]) / 60, 1),
    }


def fit(model: MultiTaskNet, optimizer: torch.optim.Optimizer, state: dict, config: TrainConfig,
        crops: np.ndarray, targets: Targets, val_crops: np.ndarray, val_targets: Targets, val_datasets: np.ndarray,
        sample_weights: torch.Tensor | None, loss_weights: torch.Tensor | None, device: str):
    """The training loop from `state`'s epoch on; yields the state after each epoch (the caller saves it).
    Stops early when the validation loss has not improved for `config.patience` epochs."""
    rng = np.random.default_rng(config.seed + state["epoch"])
    steps_per_epoch = len(crops) // config.batch_size or 1
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, int(config.warmup_epochs * steps_per_epoch))
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if epoch - state["best_epoch"] > config.patience and state["best_epoch"] > 0:
            log.info("early stop: no better validation loss since epoch %d", state["best_epoch"])
            return
        frozen = epoch <= config.frozen_backbone_epochs
        model.train()
        model.features.requires_grad_(not frozen)
        if frozen:  # heads first: the backbone as a fixed feature extractor (batch norm statistics too)
            model.features.eval()
        if sample_weights is not None:
            order = torch.multinomial(sample_weights, steps_per_epoch * config.batch_size, replacement=True,
                                      generator=torch.Generator().manual_seed(config.seed + epoch)).numpy()
        else:
            order = rng.permutation(len(crops))
        sums: dict[str, float] = {}
        progress = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}" + (" (heads)" if frozen else ""),
                        unit="batch", disable=not distributed.is_main())
        started = time.time()
        for step in progress:
            # Sorted: the memory-mapped crops are read in file order.
            index = np.sort(order[step * config.batch_size:(step + 1) * config.batch_size])
            images = _to_images(crops, index)
            if config.augment:
                images = augment_batch(images, torch.Generator().manual_seed(config.seed * 100_003 + state["step"]))
            # Under torchrun, this process's slice of the global batch (augmented whole: the same draws).
            mine = distributed.shard(len(index))
            images, index = images[mine], index[mine]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(state["step"], total_steps, warmup_steps, config.lr) * group["lr_scale"]
            weights = loss_weights[torch.from_numpy(index)].to(device) if loss_weights is not None else None
            loss, parts = training_step(model, optimizer, network_input(model, images, device),
                                        targets.take(torch.from_numpy(index), device), config, weights)
            state["step"] += 1
            for key, value in distributed.average(dict(parts, loss=loss)).items():
                sums[key] = sums.get(key, 0.0) + value
            progress.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}")
        model.features.requires_grad_(True)
        val = validate(model, val_crops, val_targets, config, device, val_datasets)
        record = {"epoch": epoch, "seconds": round(time.time() - started, 1),
                  "train_loss": sums["loss"] / steps_per_epoch, **{f"val_{k}": v for k, v in val.items()}}
        state["history"].append(record)
        log.info("epoch %d: %s", epoch, json.dumps({k: round(v, 4) for k, v in record.items()}))
        if distributed.is_main():
            print(json.dumps({k: round(v, 4) for k, v in record.items()}), flush=True)
        state["epoch"] = epoch
        if val["loss"] < state["best_score"]:
            state["best_score"], state["best_epoch"] = val["loss"], epoch
        yield state


