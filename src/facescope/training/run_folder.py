"""The run folder's layout, defined once: every step reads and writes its files through `RunFolder`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / "config.yaml")  # the options the run used
    splits = property(lambda self: self.root / "splits.csv")  # every record with its split: a manifest
    log = property(lambda self: self.root / "train.log")
    history = property(lambda self: self.root / "history.json")  # one entry per epoch
    curves = property(lambda self: self.root / "curves.png")
    checkpoints = property(lambda self: self.root / "checkpoints")
    best = property(lambda self: self.root / "checkpoints" / "best")  # + .safetensors / .json
    last = property(lambda self: self.root / "checkpoints" / "last")
    bundle = property(lambda self: self.root / "bundle")
    evaluation = property(lambda self: self.root / "evaluation")
