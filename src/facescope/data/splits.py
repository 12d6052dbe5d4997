"""Reproducible train / validation / test splits, stratified by race x gender, saved as a manifest.

The same records and seed always give the same split (records are ordered by source first), and the
manifest written here is itself a dataset `load_dataset` reads, so a later run can train or evaluate on
exactly the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facescope.data.records import FaceRecord

SPLITS = ("train", "val", "test")


def assign_splits(records: list[FaceRecord], val_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0) -> list[str]:
    """The split of each record, in the records' order: each race x gender stratum is shuffled with
    the seed and cut into test, validation and training shares."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction and test_fraction must be in [0, 1) with a sum below 1")
    order = sorted(range(len(records)), key=lambda i: records[i].source)
    strata: dict[tuple, list[int]] = {}
    for i in order:
        strata.setdefault((records[i].race, records[i].gender), []).append(i)
    rng = np.random.default_rng(seed)
    assigned = [""] * len(records)
    for key in sorted(strata, key=str):
        members = strata[key]
        shuffled = [members[j] for j in rng.permutation(len(members))]
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        for position, i in enumerate(shuffled):
            assigned[i] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    return assigned


def write_split_manifest(records: list[FaceRecord], splits: list[str], path: Path, source_format: str) -> Path:
    """A manifest CSV (path, age, age_bin, gender, race, race_taxonomy, partition, source_format) with
    absolute paths. `source_format` is the dataset the records came from (`LoadedDataset.source_format`):
    a model trained from the manifest inherits that dataset's name and licence."""
    table = pd.DataFrame(
        {
            "path": [str(Path(r.source).resolve()) for r in records],
            "age": [r.age_years if r.age_years is not None else "" for r in records],
            "age_bin": [r.age_bin or "" for r in records],
            "gender": [r.gender or "" for r in records],
            "race": [r.race or "" for r in records],
            "race_taxonomy": [r.taxonomy for r in records],
            "partition": splits,
            "source_format": source_format,
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path

