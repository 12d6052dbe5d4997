"""Checkpoints: weights and optimizer moments as safetensors, everything else as JSON (no pickle).

A checkpoint's JSON carries what the bundle must say later: the network's design, the input size, the
data sets with their licences and counts (`provenance`) and the training recipe stage by stage
(`recipe`), so export never reconstructs them from the run folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from facescope.model.network import MultiTaskNet

log = logging.getLogger(__name__)


def checkpoint_path(checkpoint: str | Path) -> Path:
    """A checkpoint's path without a file suffix (`.../best`), however it was given."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_suffix("") if checkpoint.suffix in (".json", ".safetensors") else checkpoint


def read_state(checkpoint: str | Path) -> dict:
    return json.loads(checkpoint_path(checkpoint).with_suffix(".json").read_text())


def save_checkpoint(path: Path, model: MultiTaskNet, optimizer: torch.optim.Optimizer, state: dict) -> None:
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
    path.with_suffix(".json").write_text(json.dumps(dict(state, optimizer_scalars=optimizer_scalars), indent=2))


def load_weights(path: Path, model: MultiTaskNet) -> None:
    model.load_state_dict(load_file(str(checkpoint_path(path).with_suffix(".safetensors"))))


def load_checkpoint(path: Path, model: MultiTaskNet, optimizer: torch.optim.Optimizer) -> dict:
    """Weights and optimizer state of a checkpoint, to resume its run; returns the run's state."""
    load_weights(path, model)
    state = read_state(path)
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


def start_from(model: MultiTaskNet, checkpoint: Path) -> dict:
    """Load a trained checkpoint's weights into a fresh network of the same design (the run's own
    epochs, schedule and input size then apply: progressive resizing); returns that checkpoint's state."""
    checkpoint = checkpoint_path(checkpoint)
    state = read_state(checkpoint)
    ours = {"backbone": model.backbone_name, "race_taxonomy": model.race_taxonomy, "age_mode": model.age_mode}
    theirs = {key: state.get(key) for key in ours}
    if theirs != ours:
        raise ValueError(f"init checkpoint {checkpoint} is a {theirs} network; this run trains a {ours} one")
    load_weights(checkpoint, model)
    log.info("weights from %s (trained at %s px, epoch %s)", checkpoint, state.get("input_size"), state.get("epoch"))
    return state


def load_trained_model(checkpoint: str | Path) -> tuple[MultiTaskNet, dict]:
    """A trained network from a run's checkpoint (`.../checkpoints/best`, with or without a file suffix),
    and its checkpoint state."""
    state = read_state(checkpoint)
    model = MultiTaskNet(state["backbone"], state["race_taxonomy"], state["age_mode"], pretrained=False)
    load_weights(checkpoint, model)
    return model.eval(), state
