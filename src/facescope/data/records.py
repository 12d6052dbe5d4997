"""The one record every dataset loader yields, and the result of loading a dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceRecord:
    """One labelled face image. Labels a dataset does not have are None.

    `source` is the image file's path; for the 48x48 CSV, whose images live in the CSV itself, it is
    ``CSVPATH#row=N`` and `pixels` holds the 48x48 grey values.
    """

    source: str
    age_years: float | None
    age_bin: str | None
    gender: str | None
    race: str | None
    taxonomy: str
    original: str
    partition: str | None = None  # the dataset's own split, where it ships one (FairFace: train / val)
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)
    dataset: str = ""  # the data set the record comes from (a key of facescope.data.loaders.FORMATS)
    person: str | None = None  # who is pictured, where the data set says (LFW): splits keep a person together
    # The labelled face's box (x1, y1, x2, y2) where the data set gives one; else the data set's face
    # rule (data.loaders.face_rule) says which detected face the labels belong to.
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class SkippedEntry:
    """An entry a loader could not read, with the reason; never guessed, always reported."""

    name: str
    reason: str


@dataclass
class LoadedDataset:
    format: str
    root: Path
    taxonomy: str
    records: list[FaceRecord]
    skipped: list[SkippedEntry]
    # The dataset the records first came from (utkface, fairface, ...): `format` itself, except for a
    # manifest, whose `source_format` column names it (a split manifest) or not ("manifest"). A model
    # trained on the records carries that dataset's name and licence.
    source_format: str = ""

    def __post_init__(self) -> None:
        self.source_format = self.source_format or self.format

    def __len__(self) -> int:
        return len(self.records)

    def to_frame(self) -> pd.DataFrame:
        """The labels as a table, one row a record (no pixels)."""
        columns = ["source", "age_years", "age_bin", "gender", "race", "taxonomy", "original", "partition",
                   "dataset", "person"]
        return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in self.records], columns=columns)

    def warn_skipped(self) -> None:
        if self.skipped:
            names = ", ".join(s.name for s in self.skipped[:10])
            more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            log.warning("skipped %d malformed %s entries: %s%s", len(self.skipped), self.format, names, more)
