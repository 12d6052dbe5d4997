"""Checkpoints: weights and optimizer moments as safetensors, everything else as JSON (no pickle).

A checkpoint's JSON carries what the bundle must say later: the network's design, the input size, the
data sets with their licences and counts (`provenance`) and the training recipe stage by stage
(`recipe`), so export never reconstructs them from the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from facescope import labels
from facescope.heads import Head
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


def start_from(model: MultiTaskNet, source: Path) -> dict:
    """Load trained weights into a fresh network (the run's own epochs, schedule and input size then
    apply: progressive resizing, new data, new heads); returns the source's state (for a bundle: its
    recipe and input size). `source` is a run's checkpoint, or a model bundle (an installed model's name or a bundle
    folder: its float or int8 ONNX weights).

    A head the source has in the same shape starts from its weights; a head in a finer taxonomy than the
    source's head of that name (FairFace's 7 races from UTKFace's 5) starts from the coarse head, each fine
    class from its coarse class, less the log of how many fine classes share it: the coarse probabilities
    are kept exactly. Any other head starts fresh."""
    if not checkpoint_path(source).with_suffix(".json").is_file():
        from facescope.bundles import read_info, resolve_bundle
        from facescope.model.onnx_weights import read_onnx_weights

        source = resolve_bundle(str(source))  # an installed model's name, or a bundle folder
        info = read_info(source)
        theirs = {name: torch.from_numpy(value) for name, value in read_onnx_weights(source / "model.onnx").items()}
        # Format-2 graphs named their layers <task>_head.
        theirs = {re.sub(r"^(\w+)_head\.", r"heads.\1.", name): value for name, value in theirs.items()}
        their_heads, backbone = info.heads, info.backbone
        state = {"recipe": info.training_data.get("recipe", []), "input_size": info.input_size}
    else:
        source = checkpoint_path(source)
        state = read_state(source)
        theirs = load_file(str(source.with_suffix(".safetensors")))
        their_heads, backbone = heads_of(state), state["backbone"]
    if backbone != model.backbone_name:
        raise ValueError(f"{source} is a {backbone} network; this run trains a {model.backbone_name} one")
    ours = model.state_dict()
    loaded = {name: value for name, value in theirs.items() if name in ours and value.shape == ours[name].shape}
    by_name = {head.name: head for head in their_heads}
    for head in model.outputs:
        coarse = by_name.get(head.name)
        if f"heads.{head.name}.weight" in loaded or coarse is None or coarse.taxonomy is None:
            continue
        if (head.taxonomy, coarse.taxonomy) in labels.RACE_MAPPINGS:
            mapping = labels.RACE_MAPPINGS[(head.taxonomy, coarse.taxonomy)]
            rows = [coarse.labels.index(mapping[fine]) for fine in head.labels]
            shares = torch.tensor([math.log(rows.count(row)) for row in rows])
            loaded[f"heads.{head.name}.weight"] = theirs[f"heads.{head.name}.weight"][rows]
            loaded[f"heads.{head.name}.bias"] = theirs[f"heads.{head.name}.bias"][rows] - shares
            log.info("head %s: %s classes from the %s head through the taxonomy mapping", head.name, head.taxonomy,
                     coarse.taxonomy)
    missing = sorted({name.split(".")[1] for name in ours if name.startswith("heads.") and name not in loaded})
    if any(not name.startswith("heads.") and name not in loaded for name in ours):
        raise ValueError(f"{source}: its backbone weights do not fit this {model.backbone_name} network")
    model.load_state_dict(loaded, strict=False)
    log.info("weights from %s (trained at %s px)%s", source, state.get("input_size", "its bundle's"),
             f"; new heads: {', '.join(missing)}" if missing else "")
    return state


def heads_of(state: dict) -> tuple[Head, ...]:
    return tuple(Head.from_json(h) for h in state["heads"])


def load_trained_model(checkpoint: str | Path) -> tuple[MultiTaskNet, dict]:
    """A trained network from a run's checkpoint (`.../checkpoints/best`, with or without a file suffix),
    and its checkpoint state."""
    state = read_state(checkpoint)
    model = MultiTaskNet(state["backbone"], heads_of(state), pretrained=False)
    load_weights(checkpoint, model)
    return model.eval(), state
