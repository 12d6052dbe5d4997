"""Reproducible train / validation / test splits, made per data set, stratified by race x gender, by
person where a data set names who is pictured, and saved as a manifest.

The same records and seed always give the same split (records are ordered by source first), and the
manifest written here is itself a dataset `load_dataset` reads, so a later run can train or evaluate on
exactly the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facescope.data.loaders import load_manifest
from facescope.data.records import FaceRecord, LoadedDataset

SPLITS = ("train", "val", "test")


def assign_splits(records: list[FaceRecord], val_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0) -> list[str]:
    """The split of each record, in the records' order. Units are people where a record names its
    `person` (all of a person's photos land in one split, so a model is never tested on a face it has
    seen) and single records otherwise; each (data set, race, gender) stratum of units is shuffled with
    the seed and cut into test, validation and training shares."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction and test_fraction must be in [0, 1) with a sum below 1")
    units: dict[tuple, list[int]] = {}
    for i in sorted(range(len(records)), key=lambda i: records[i].source):
        record = records[i]
        units.setdefault((record.dataset, record.person) if record.person else (i,), []).append(i)
    strata: dict[tuple, list[list[int]]] = {}
    for members in units.values():
        first = records[members[0]]
        strata.setdefault((first.dataset, first.race, first.gender), []).append(members)
    rng = np.random.default_rng(seed)
    assigned = [""] * len(records)
    for key in sorted(strata, key=str):
        stratum = strata[key]
        shuffled = [stratum[j] for j in rng.permutation(len(stratum))]
        n_test = round(len(stratum) * test_fraction)
        n_val = round(len(stratum) * val_fraction)
        for position, members in enumerate(shuffled):
            split = "test" if position < n_test else "val" if position < n_test + n_val else "train"
            for i in members:
                assigned[i] = split
    return assigned


def manifest_path(source: str) -> str:
    """A record's source as a split manifest lists it: absolute (a 48x48 CSV's row as it is)."""
    return source if "#row=" in source else str(Path(source).resolve())


def write_split_manifest(records: list[FaceRecord], splits: list[str], path: Path) -> Path:
    """A manifest CSV (path, age, age_bin, gender, race, race_taxonomy, partition, dataset, person, box)
    with absolute paths. `dataset` is the data set each record came from: a model trained from the
    manifest inherits those data sets' names and licences."""
    table = pd.DataFrame(
        {
            "path": [manifest_path(r.source) for r in records],
            "age": [r.age_years if r.age_years is not None else "" for r in records],
            "age_bin": [r.age_bin or "" for r in records],
            "gender": [r.gender or "" for r in records],
            "race": [r.race or "" for r in records],
            "race_taxonomy": [r.taxonomy for r in records],
            "partition": splits,
            "dataset": [r.dataset for r in records],
            "person": [r.person or "" for r in records],
            **{key: [r.box[i] if r.box else "" for r in records] for i, key in enumerate(("x1", "y1", "x2", "y2"))},
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def read_split_manifest(path: Path) -> LoadedDataset:
    """A split manifest as write_split_manifest wrote it: each row's race in its own row's taxonomy (a run
    over several data sets mixes them), its split in `partition`."""
    dataset = load_manifest(Path(path), per_row_taxonomy=True)
    dataset.warn_skipped()
    return dataset
