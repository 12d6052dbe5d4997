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
import random
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
from facescope.heads import Head
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
    """Per-record truths as tensors. `masks`: for each label head, N x classes booleans marking the classes
    a record's label stands for (one where the label is in the head's taxonomy, several where it is in a
    coarser one, none where the record has no label). Ages: years (-1 where unknown) and the age group's
    index (-1 where unknown). `group`: the race x gender group, for balancing."""

    masks: dict[str, torch.Tensor]
    age_years: torch.Tensor
    age_bin: torch.Tensor
    group: torch.Tensor

    @classmethod
    def from_records(cls, records: list[FaceRecord], heads: tuple[Head, ...]) -> "Targets":
        masks = {}
        for head in heads:
            if head.kind != "label":
                continue
            mask = torch.zeros(len(records), len(head.labels), dtype=torch.bool)
            for row, record in enumerate(records):
                label = getattr(record, head.learns_from)
                if label is not None:
                    taxonomy = labels.GENDER.name if head.learns_from == "gender" else record.taxonomy
                    mask[row, labels.fine_classes(label, taxonomy, head.taxonomy)] = True
            masks[head.name] = mask
        age = [min(r.age_years, labels.MAX_AGE) if r.age_years is not None else -1.0 for r in records]
        age_bin = [labels.AGE_BIN_LABELS.index(r.age_bin) if r.age_bin else -1 for r in records]
        groups = [(r.taxonomy, r.race, r.gender) for r in records]
        ids = {key: n for n, key in enumerate(sorted(set(groups), key=str))}
        return cls(masks, torch.tensor(age, dtype=torch.float32), torch.tensor(age_bin),
                   torch.tensor([ids[key] for key in groups]))

    def take(self, index: torch.Tensor, device: str = "cpu") -> "Targets":
        return Targets({name: mask[index].to(device) for name, mask in self.masks.items()},
                       self.age_years[index].to(device), self.age_bin[index].to(device), self.group[index].to(device))


def group_weights(groups: torch.Tensor) -> torch.Tensor:
    """Per-sample weights inversely proportional to the race x gender group's size, mean 1."""
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse].float()
    return weights / weights.mean()


_BIN_OF_YEAR = torch.tensor(labels.year_to_bin_index())


def label_loss(logits: torch.Tensor, mask: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Per sample: minus the log of the probability of the classes the label stands for (cross-entropy
    for one class; a coarse label's likelihood is the sum of its fine classes'), label-smoothed as
    PyTorch's cross-entropy is; 0 where the sample has no label."""
    log_probs = logits.float().log_softmax(1)
    known = mask.any(1)
    nll = -torch.logsumexp(log_probs.masked_fill(~mask, -math.inf), 1)
    per_sample = (1 - smoothing) * nll - smoothing * log_probs.mean(1)
    return torch.where(known, per_sample, torch.zeros_like(per_sample))


def age_years_loss(logits: torch.Tensor, targets: Targets, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample loss, which samples have an age) for a distribution over whole years. Exact ages:
    label distribution learning (a Gaussian around the true age, so neighbouring years are "nearly
    right") plus the expected age's absolute error. Age groups only (FairFace): minus the log of the
    probability mass inside the group."""
    years = torch.arange(logits.shape[1], dtype=torch.float32, device=logits.device)
    log_probs = logits.float().log_softmax(1)
    exact = targets.age_years >= 0
    soft = torch.exp(-0.5 * ((years[None] - targets.age_years[:, None]) / config.age_sigma) ** 2)
    soft = soft / soft.sum(1, keepdim=True)
    distribution = -(soft * log_probs).sum(1)
    l1 = ((log_probs.exp() * years[None]).sum(1) - targets.age_years).abs()
    in_bin = _BIN_OF_YEAR.to(logits.device)[None] == targets.age_bin[:, None]
    binned = (~exact) & (targets.age_bin >= 0)
    bin_nll = -torch.logsumexp(log_probs.masked_fill(~in_bin, -math.inf), 1)
    per_sample = torch.where(exact, distribution + config.age_l1_weight * l1,
                             torch.where(binned, bin_nll, torch.zeros_like(bin_nll)))
    return per_sample, exact | binned


def multitask_loss(outputs: dict[str, torch.Tensor], targets: Targets, config: TrainConfig, heads: tuple[Head, ...],
                   weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of the heads' losses (each averaged over the samples that have that head's label)."""
    parts: dict[str, torch.Tensor] = {}

    def mean(per_sample: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.float() if weights is None else mask.float() * weights
        # The global batch's denominator: under DDP the averaged gradients are the single-process ones.
        return (per_sample * w).sum() / distributed.global_denominator(w.sum()).clamp(min=1e-6)

    for head in heads:
        logits = outputs[head.name]
        if head.kind == "label":
            mask = targets.masks[head.name]
            parts[head.name] = mean(label_loss(logits, mask, config.label_smoothing), mask.any(1))
        elif head.kind == "age_years":
            parts[head.name] = mean(*age_years_loss(logits, targets, config))
        else:
            known = targets.age_bin >= 0
            per_sample = F.cross_entropy(logits, targets.age_bin.clamp(min=0), reduction="none")
            parts[head.name] = mean(per_sample, known)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def expected_years(age_logits: torch.Tensor) -> torch.Tensor:
    years = torch.arange(age_logits.shape[1], dtype=torch.float32, device=age_logits.device)
    return (age_logits.float().softmax(1) * years).sum(1)


def age_bin_probabilities(head: Head, logits: torch.Tensor) -> torch.Tensor:
    """N x 9 age-group probabilities of an age head."""
    probs = logits.float().softmax(1)
    if head.kind == "age_bins":
        return probs
    return torch.zeros(len(probs), len(labels.AGE_BINS)).index_add_(1, _BIN_OF_YEAR, probs)


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
        loss, parts = multitask_loss(model(images), targets, config, model.outputs, weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), parts


@torch.no_grad()
def validate(model: MultiTaskNet, crops: np.ndarray, targets: Targets, config: TrainConfig, device: str = "cpu",
             datasets: np.ndarray | None = None) -> dict[str, float]:
    """Validation loss and figures, overall and (given each crop's data set) per data set: a label head's
    accuracy (the answer is right when it is one of the classes the label stands for), an age head's
    mean absolute error in years and age-group accuracy."""
    model.eval()
    loss_sum = 0.0
    outputs: dict[str, list[torch.Tensor]] = {head.name: [] for head in model.outputs}
    for start in range(0, len(crops), 256):
        index = np.arange(start, min(start + 256, len(crops)))
        with _autocast(device):
            batch = model(network_input(model, _to_images(crops, index), device))
        loss, _ = multitask_loss(batch, targets.take(torch.from_numpy(index), device), config, model.outputs)
        loss_sum += float(loss) * len(index)
        for name in outputs:
            outputs[name].append(batch[name].float().cpu())
    logits = {name: torch.cat(parts) for name, parts in outputs.items()}
    result = {"loss": loss_sum / max(1, len(crops))}
    groups = {"": np.ones(len(crops), dtype=bool)}
    if datasets is not None and len(set(datasets)) > 1:
        groups.update({f"{name}_": datasets == name for name in sorted(set(datasets))})
    for prefix, member in groups.items():
        member = torch.from_numpy(member)
        for head in model.outputs:
            if head.kind == "label":
                mask = targets.masks[head.name]
                known = mask.any(1) & member
                if known.any():
                    right = mask.gather(1, logits[head.name].argmax(1, keepdim=True))[:, 0]
                    result[f"{prefix}{head.name}_accuracy"] = float(right[known].float().mean())
                continue
            exact = (targets.age_years >= 0) & member
            if head.kind == "age_years" and exact.any():
                error = expected_years(logits[head.name])[exact] - targets.age_years[exact]
                result[f"{prefix}{head.name}_mae"] = float(error.abs().mean())
            binned = (targets.age_bin >= 0) & member
            if binned.any():
                right = age_bin_probabilities(head, logits[head.name]).argmax(1) == targets.age_bin
                result[f"{prefix}{head.name}_bin_accuracy"] = float(right[binned].float().mean())
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


def seeded_sample(index: list[int], limit: int | None, seed: int) -> list[int]:
    """`limit` of `index` drawn at random across all of it (the same ones for the same seed), in their
    order; all of it without a limit. A data set's files are often sorted by label (AAF by age, UTKFace
    by age, then gender and race), so the first N would be one kind of face."""
    if limit is None or limit >= len(index):
        return list(index)
    return sorted(random.Random(seed).sample(list(index), limit))


def training_crops(data: TrainingData, split: str, size: int, framing: Framing,
                   limit: int | None = None, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """(record indices, their crops) of a split's faces found by the face pipeline (with `limit`, of a
    seeded sample of that many across the split); faces not found or unreadable are counted in the log
    and left out."""
    index = seeded_sample(data.indices(split), limit, seed)
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
        train_index, train_crops = training_crops(data, "train", input_size, framing, limit, config.seed)
        val_index, val_crops = training_crops(data, "val", input_size, framing, max(32, limit // 4) if limit else None,
                                              config.seed)
    heads = data.heads(train_index)
    train_targets = Targets.from_records([data.records[i] for i in train_index], heads)
    val_targets = Targets.from_records([data.records[i] for i in val_index], heads)
    val_datasets = np.array([data.records[i].dataset for i in val_index])
    log.info("data %s: %d train, %d val faces, heads %s, input %d px", config.data or config.splits,
             len(train_index), len(val_index), ", ".join(f"{h.name} ({h.taxonomy or h.kind})" for h in heads), input_size)

    # Step 3, model: pretrained backbone and new heads, or a checkpoint's (or a bundle's) weights.
    device = distributed.device()
    model = MultiTaskNet(config.backbone, heads, pretrained=config.pretrained and not config.init)
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
        "backbone": config.backbone, "heads": [head.to_json() for head in heads],
        "input_size": input_size, "framing": framing.to_json(), "provenance": data.provenance(),
    }
    sample_weights = data.sample_weights(train_index, config.balance)
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
    # Each data set's test split on its own (their race labels may be in different taxonomies).
    from facescope.data.splits import write_split_manifest
    from facescope.evaluation.run import run_evaluation

    for name in sorted({data.records[i].dataset for i in data.indices("test")}):
        index = [i for i in range(len(data.records)) if data.records[i].dataset == name]
        manifest = write_split_manifest([data.records[i] for i in index], [data.splits[i] for i in index],
                                        run.root / f"splits-{name}.csv")
        run_evaluation(bundle, manifest, split="test", output=run.evaluation / name, update_bundle=True,
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
        # As the config gives them: paths, or {path, weight} entries (the share of each batch).
        "data": list(config.data) if isinstance(config.data, list) else [config.data],
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


