"""Dataset loaders: UTKFace folders, FairFace label CSVs, the UTK 48x48 CSV, and generic manifests.

Each reads labels only (no image is decoded) and returns a `LoadedDataset` of `FaceRecord`s.
Malformed entries are skipped and listed in `LoadedDataset.skipped`, never guessed.
`load_dataset(path)` picks the loader from what is at the path.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from facescope import labels
from facescope.data.records import FaceRecord, LoadedDataset, SkippedEntry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
UTK_GENDERS = {0: "Male", 1: "Female"}  # UTKFace and the 48x48 CSV: 0 = male, 1 = female
# AGE_GENDER_RACE_DATETIME...: the three labels must be integers; the date is not a label, and some
# public files have an odd one (18 digits, a stray space), which does not make their labels doubtful.
_UTK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_([^_]+)$")
FAIRFACE_CSVS = ("fairface_label_train.csv", "fairface_label_val.csv")
FAIRFACE_COLUMNS = {"file", "age", "gender", "race"}
UTK48_COLUMNS = {"age", "ethnicity", "gender", "img_name", "pixels"}


class UnknownDatasetLayout(ValueError):
    pass


def _utk_labels(age: int, gender: int, race: int) -> tuple[float, str, str, str]:
    if gender not in UTK_GENDERS:
        raise ValueError(f"gender code {gender} is not 0 or 1")
    if not 0 <= race < len(labels.UTKFACE5.labels):
        raise ValueError(f"race code {race} is not 0..4")
    return float(age), labels.age_to_bin(age), UTK_GENDERS[gender], labels.UTKFACE5.labels[race]


def load_utkface(root: Path) -> LoadedDataset:
    """A folder of UTKFace images, labels in the names: AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]."""
    root = Path(root)
    records, skipped = [], []
    for path in sorted(root.iterdir()):
        if not path.is_file() or not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        match = _UTK_NAME.match(path.name)
        if not match:
            skipped.append(SkippedEntry(path.name, "not AGE_GENDER_RACE_DATETIME: a label field is missing or not a number"))
            continue
        try:
            age, age_bin, gender, race = _utk_labels(*(int(match.group(i)) for i in (1, 2, 3)))
        except ValueError as error:
            skipped.append(SkippedEntry(path.name, str(error)))
            continue
        records.append(FaceRecord(str(path), age, age_bin, gender, race, "utkface5", path.name))
    return LoadedDataset("utkface", root, "utkface5", records, skipped)


def load_fairface(path: Path) -> LoadedDataset:
    """FairFace: a folder with fairface_label_{train,val}.csv beside the image folders, or one such CSV.

    FairFace gives age only as a bin, so `age_years` is None; its official split is kept in `partition`.
    """
    path = Path(path)
    csv_paths = [path] if path.is_file() else [path / name for name in FAIRFACE_CSVS if (path / name).exists()]
    root = path.parent if path.is_file() else path
    records, skipped = [], []
    for csv_path in csv_paths:
        partition = "val" if "val" in csv_path.stem else "train"
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        missing = FAIRFACE_COLUMNS - set(table.columns)
        if missing:
            raise UnknownDatasetLayout(f"{csv_path} lacks the FairFace columns {sorted(missing)}")
        for row_number, row in enumerate(table.itertuples(index=False), start=2):
            name = f"{csv_path.name}:{row_number}"
            try:
                if not row.file:
                    raise ValueError("empty file column")
                age_bin = labels.normalise_age_bin(row.age)
                gender = row.gender.strip()
                if gender not in labels.GENDERS:
                    raise ValueError(f"gender {gender!r} is not one of {labels.GENDERS}")
                race = row.race.strip().replace("Latino Hispanic", "Latino_Hispanic")
                labels.FAIRFACE7.index(race)
            except ValueError as error:
                skipped.append(SkippedEntry(name, str(error)))
                continue
            records.append(
                FaceRecord(str(root / row.file), None, age_bin, gender, race, "fairface7", row.file, partition)
            )
    return LoadedDataset("fairface", root, "fairface7", records, skipped)


def load_utk48_csv(path: Path) -> LoadedDataset:
    """The course CSV of UTKFace at 48x48 grey: age, ethnicity, gender, img_name, pixels (2,304 values)."""
    path = Path(path)
    records, skipped = [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = UTK48_COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise UnknownDatasetLayout(f"{path} lacks the 48x48 CSV columns {sorted(missing)}")
        for row_number, row in enumerate(reader, start=2):
            name = row.get("img_name") or f"{path.name}:{row_number}"
            try:
                pixels = np.array(row["pixels"].split(), dtype=np.float32)
                if pixels.size != 48 * 48:
                    raise ValueError(f"pixels has {pixels.size} values, not 2304")
                if pixels.min() < 0 or pixels.max() > 255:
                    raise ValueError("pixels outside 0..255")
                age, age_bin, gender, race = _utk_labels(
                    int(row["age"]), int(row["gender"]), int(row["ethnicity"])
                )
            except (ValueError, TypeError, AttributeError) as error:
                skipped.append(SkippedEntry(name, str(error)))
                continue
            records.append(
                FaceRecord(
                    f"{path}#row={row_number}", age, age_bin, gender, race, "utkface5", name,
                    pixels=pixels.astype(np.uint8).reshape(48, 48),
                )
            )
    return LoadedDataset("utk48csv", path.parent, "utkface5", records, skipped)


def load_manifest(path: Path, taxonomy: str | None = None) -> LoadedDataset:
    """A CSV with a `path` column (relative to the CSV's folder, or absolute) and any of `age` (years),
    `age_bin`, `gender`, `race`, plus `race_taxonomy` (or the `taxonomy` argument) when races are given."""
    path = Path(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "path" not in table.columns:
        raise UnknownDatasetLayout(f"{path} has no 'path' column")
    if "race" in table.columns and taxonomy is None:
        found = set(table.get("race_taxonomy", pd.Series(dtype=str))) - {""}
        if len(found) != 1:
            raise ValueError(
                f"{path}: races need one taxonomy: give a race_taxonomy column or --taxonomy "
                f"(one of {sorted(labels.TAXONOMIES)}); found {sorted(found) or 'none'}"
            )
        taxonomy = found.pop()
    race_taxonomy = labels.taxonomy(taxonomy or "utkface5")
    records, skipped = [], []
    for row_number, row in enumerate(table.to_dict("records"), start=2):
        name = row["path"] or f"{path.name}:{row_number}"
        try:
            if not row["path"]:
                raise ValueError("empty path")
            age = float(row["age"]) if row.get("age") else None
            age_bin = labels.normalise_age_bin(row["age_bin"]) if row.get("age_bin") else None
            if age is not None:
                derived = labels.age_to_bin(age)
                if age_bin is not None and age_bin != derived:
                    raise ValueError(f"age {age:g} is not in age_bin {age_bin}")
                age_bin = derived
            gender = row.get("gender") or None
            if gender is not None and gender not in labels.GENDERS:
                raise ValueError(f"gender {gender!r} is not one of {labels.GENDERS}")
            race = row.get("race") or None
            if race is not None:
                race_taxonomy.index(race)
        except ValueError as error:
            skipped.append(SkippedEntry(name, str(error)))
            continue
        image = Path(row["path"])
        source = image if image.is_absolute() else path.parent / image
        records.append(
            FaceRecord(str(source), age, age_bin, gender, race, race_taxonomy.name, row["path"],
                       row.get("partition") or None)
        )
    sources = set(table.get("source_format", pd.Series(dtype=str))) - {""}
    source_format = sources.pop() if len(sources) == 1 else "manifest"
    return LoadedDataset("manifest", path.parent, race_taxonomy.name, records, skipped, source_format)


LOADERS: dict[str, Callable[..., LoadedDataset]] = {
    "utkface": load_utkface,
    "fairface": load_fairface,
    "utk48csv": load_utk48_csv,
    "manifest": load_manifest,
}


def detect_format(path: Path) -> str:
    """Name the dataset format at `path`, or raise with what is understood and what was found."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}")
    if path.is_dir():
        if any((path / name).exists() for name in FAIRFACE_CSVS):
            return "fairface"
        images = [p.name for p in path.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)]
        if images and sum(bool(_UTK_NAME.match(n)) for n in images) >= 0.5 * len(images):
            return "utkface"
        found = f"{len(images)} images" + (f", e.g. {images[0]!r}" if images else "")
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            header = set(next(csv.reader(handle), []))
        if UTK48_COLUMNS <= header:
            return "utk48csv"
        if "path" in header:
            return "manifest"
        if FAIRFACE_COLUMNS <= header:
            return "fairface"
        found = f"a CSV with columns {sorted(header)}"
    else:
        found = f"a {path.suffix or 'suffix-less'} file"
    raise UnknownDatasetLayout(
        f"cannot tell the dataset format of {path}: found {found}. Understood: a UTKFace folder "
        "(AGE_GENDER_RACE_DATETIME.jpg files), a FairFace folder (fairface_label_train.csv / "
        "fairface_label_val.csv beside the images) or label CSV (file,age,gender,race), the UTK 48x48 CSV "
        "(age,ethnicity,gender,img_name,pixels), or a manifest CSV with a 'path' column."
    )


def load_dataset(path: Path | str, format: str | None = None, taxonomy: str | None = None) -> LoadedDataset:
    """Load any understood dataset; `format` names the loader, else it is detected from the path."""
    path = Path(path)
    format = format or detect_format(path)
    if format not in LOADERS:
        raise ValueError(f"unknown dataset format {format!r}; known: {sorted(LOADERS)}")
    dataset = load_manifest(path, taxonomy) if format == "manifest" else LOADERS[format](path)
    dataset.warn_skipped()
    return dataset
