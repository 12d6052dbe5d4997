"""Training configuration: defaults here, a YAML file over them, command-line overrides over that."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

import yaml


BALANCES = ("none", "sampler", "loss", "gender", "gender_sampler")


@dataclass
class TrainConfig:
    # One data set (a path), or several: a list of paths or of {path, weight}; a weight is the share of
    # each batch drawn from that data set (relative to the others; default: in proportion to its size).
    # "${FACESCOPE_DATA}" in a path is the data folder (facescope.paths.data_root()), "${FACESCOPE_CACHE}"
    # facescope's cache (facescope.paths.cache_dir(): where build_fairface.py's FairFace folder goes).
    data: str | list = ""
    output: str = "runs/train"
    backbone: str = "mobilenet_v2"  # one of facescope.model.BACKBONE_NAMES
    input_size: int | None = None  # None: the backbone's default (BACKBONES[...].input_size)
    framing_zoom: float = 1.0  # the face crop: facescope's canonical framing, zoomed about its centre (>1: tighter)
    pretrained: bool = True
    # Trained weights that start the run: a checkpoint (e.g. fine-tuning at a larger size), or an installed
    # model's name or bundle folder (training.checkpoints.start_from)
    init: str | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    patience: int = 3  # early stopping: epochs without a better validation score
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    splits: str | None = None  # a split manifest to reuse instead of making one
    # none | sampler | loss: race x gender groups drawn equally often (within each data set), or weighed
    # equally in the loss (bias mitigation); gender: women and men weigh the same in the loss within each
    # data set; gender_sampler: women and men drawn equally often within each data set
    balance: str = "none"
    augment: bool = True
    label_smoothing: float = 0.1
    age_sigma: float = 2.0  # years: width of the Gaussian age label distribution
    age_l1_weight: float = 0.1  # weight of |expected age - true age| beside the distribution loss
    max_images: int | None = None  # train on a seeded sample of N training images only (quick runs, tests)
    max_steps_per_epoch: int | None = None
    threads: int | None = None
    # Heads first: this many epochs train the heads on a frozen backbone (keeps what pretraining knows
    # while the new heads are random), then the whole network trains with the backbone's learning rate
    # scaled by backbone_lr_scale.
    frozen_backbone_epochs: int = 0
    backbone_lr_scale: float = 1.0

    @classmethod
    def load(cls, yaml_path: Path | None = None, **overrides) -> "TrainConfig":
        values = {}
        if yaml_path is not None:
            values = yaml.safe_load(Path(yaml_path).read_text()) or {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
        config = cls(**values)
        if config.balance not in BALANCES:
            raise ValueError(f"balance is one of {', '.join(BALANCES)}")
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
