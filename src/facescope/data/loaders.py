"""Dataset loaders: UTKFace folders, FairFace label CSVs, the UTK 48x48 CSV, All-Age-Faces, LFW, and
generic manifests.

Each reads labels only (no image is decoded) and returns a `LoadedDataset` of `FaceRecord`s.
Malformed entries are skipped and listed in `LoadedDataset.skipped`, never guessed.
`FORMATS` is the one table of data set formats: how to recognise and read each, its licence, and which
face in a photo its labels belong to. `load_dataset(path)` picks the format from what is at the path.
Adding a format is one loader and its entry in `FORMATS`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
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
_AAF_NAME = re.compile(r"^\d{5}A\d{2}\.jpg$")  # All-Age-Faces: image number, "A", age
_LFW_PATH = re.compile(r"^(?:.*/)?([^/]+)/\1_\d{4}\.jpg$")  # Labeled Faces in the Wild: Person/Person_0001.jpg
LABELS_CSV = "labels.csv"
FAIRFACE_CSVS = ("fairface_label_train.csv", "fairface_label_val.csv")
FAIRFACE_COLUMNS = {"file", "age", "gender", "race"}
UTK48_HEADER = "age,ethnicity,gender,img_name,pixels"  # the 48x48 CSV's header line, in its order
UTK48_COLUMNS = set(UTK48_HEADER.split(","))


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
        records.append(FaceRecord(str(path), age, age_bin, gender, race, "utkface5", path.name, dataset="utkface"))
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
                FaceRecord(str(root / row.file), None, age_bin, gender, race, "fairface7", row.file, partition,
                           dataset="fairface")
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
                    pixels=pixels.astype(np.uint8).reshape(48, 48), dataset="utk48csv",
                )
            )
    return LoadedDataset("utk48csv", path.parent, "utkface5", records, skipped)


def load_manifest(path: Path, taxonomy: str | None = None, per_row_taxonomy: bool = False) -> LoadedDataset:
    """A CSV with a `path` column (relative to the CSV's folder, or absolute) and any of `age` (years),
    `age_bin`, `gender`, `race`, plus `race_taxonomy` (or the `taxonomy` argument) when races are given.
    Races are in one taxonomy, except with `per_row_taxonomy` (a training run's split manifest over data
    sets labelled in different ones): then each row's race is read in its own row's `race_taxonomy`, and
    the data set's taxonomy is the finest of them.
    Optional: `partition` (train / val / test), `dataset` (the data set a row comes from, e.g. a split
    manifest's), `person` (an identity: splits keep a person's photos together) and `x1,y1,x2,y2` (the
    labelled face's box). A path `CSV#row=N` is row N of a 48x48 CSV, read from that CSV."""
    path = Path(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "path" not in table.columns:
        raise UnknownDatasetLayout(f"{path} has no 'path' column")
    found = set(table.get("race_taxonomy", pd.Series(dtype=str))) - {""}
    if per_row_taxonomy and len(found) > 1:
        taxonomy = max(found, key=lambda name: len(labels.taxonomy(name).labels))
    if "race" in table.columns and taxonomy is None:
        if len(found) > 1 or (not found and (table["race"] != "").any()):
            raise ValueError(
                f"{path}: races need one taxonomy: give a race_taxonomy column or --taxonomy "
                f"(one of {sorted(labels.TAXONOMIES)}); found {sorted(found) or 'none'}"
            )
        taxonomy = found.pop() if found else None
    race_taxonomy = labels.taxonomy(taxonomy or "utkface5")
    has_box = {"x1", "y1", "x2", "y2"} <= set(table.columns)
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
            row_taxonomy = labels.taxonomy(row["race_taxonomy"]) if per_row_taxonomy and row.get("race_taxonomy") \
                else race_taxonomy
            if race is not None:
                row_taxonomy.index(race)
            box = _box(row) if has_box and row["x1"] else None
            source, pixels = _manifest_image(path, row["path"])
        except ValueError as error:
            skipped.append(SkippedEntry(name, str(error)))
            continue
        records.append(
            FaceRecord(source, age, age_bin, gender, race, row_taxonomy.name, row["path"],
                       row.get("partition") or None, pixels, row.get("dataset") or "manifest",
                       row.get("person") or None, box)
        )
    sources = {r.dataset for r in records}
    source_format = sources.pop() if len(sources) == 1 else "manifest"
    return LoadedDataset("manifest", path.parent, race_taxonomy.name, records, skipped, source_format)


def _box(row: dict) -> tuple[float, float, float, float]:
    box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"box {box} is empty: x2 must exceed x1 and y2 exceed y1")
    return box


def _manifest_image(manifest: Path, entry: str) -> tuple[str, np.ndarray | None]:
    """(source, pixels): an image file's path, or for `CSV#row=N` that 48x48 CSV row's grey pixels."""
    file, _, row = entry.partition("#row=")
    image = Path(file) if Path(file).is_absolute() else manifest.parent / file
    if not row:
        return str(image), None
    pixels = _utk48_pixels(str(image)).get(entry.replace(file, str(image), 1))
    if pixels is None:
        raise ValueError(f"{entry}: no such readable row in {image}")
    return f"{image}#row={row}", pixels


@lru_cache(maxsize=4)
def _utk48_pixels(csv_path: str) -> dict[str, np.ndarray]:
    return {r.source: r.pixels for r in load_utk48_csv(Path(csv_path)).records}


def _labels_csv_dataset(root: Path, dataset: str, person_from_path: bool = False) -> LoadedDataset:
    loaded = load_manifest(Path(root) / LABELS_CSV)
    records = []
    for record in loaded.records:
        person = None
        if person_from_path:
            person = Path(record.original).parent.name
        records.append(FaceRecord(record.source, record.age_years, record.age_bin, record.gender, None,
                                  loaded.taxonomy, record.original, dataset=dataset, person=person))
    return LoadedDataset(dataset, Path(root), loaded.taxonomy, records, loaded.skipped)


def load_aaf(root: Path) -> LoadedDataset:
    """All-Age-Faces: `labels.csv` (path, age, gender) beside the photos; ages in years, no race."""
    return _labels_csv_dataset(root, "aaf")


def load_lfw(root: Path) -> LoadedDataset:
    """Labeled Faces in the Wild: `labels.csv` (path, gender) over Person/Person_NNNN.jpg; each
    person's folder name is their identity, so splits keep a person's photos together."""
    return _labels_csv_dataset(root, "lfw", person_from_path=True)


def _labels_csv_paths(path: Path) -> list[str]:
    if not (path.is_dir() and (path / LABELS_CSV).exists()):
        return []
    return pd.read_csv(path / LABELS_CSV, dtype=str, keep_default_na=False, nrows=50).get("path", pd.Series()).tolist()


def _is_utkface(path: Path) -> bool:
    if not path.is_dir():
        return False
    images = [p.name for p in path.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)]
    return bool(images) and sum(bool(_UTK_NAME.match(n)) for n in images) >= 0.5 * len(images)


def _csv_header(path: Path) -> set[str]:
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return set()
    with path.open(newline="") as handle:
        return set(next(csv.reader(handle), []))


@dataclass(frozen=True)
class DatasetFormat:
    """A data set format: how to recognise and read it, what it is, its terms, and which detected face
    its labels belong to (`face_rule`: "aligned" — the image is already a crop in facescope's canonical
    framing; "largest"; "centre" — the face nearest the image centre; a record's own `box` wins)."""

    name: str
    title: str
    licence: str
    face_rule: str
    looks_like: Callable[[Path], bool]
    load: Callable[[Path], LoadedDataset]
    layout: str  # for help texts and error messages
    # What the data set is, for the model cards of models trained or evaluated on it (it travels into
    # the bundle with the training data's provenance).
    description: str = ""


UTKFACE_LICENCE = "UTKFace is available for non-commercial research purposes only."
UTKFACE_DESCRIPTION = ("UTKFace (Zhang, Song and Qi, CVPR 2017): about 20,000 face photos of people aged 0 to 116 "
                       "collected from the web, with age, gender and race labels estimated by an algorithm and "
                       "checked by human annotators. Non-commercial research use only.")
FORMATS: dict[str, DatasetFormat] = {f.name: f for f in (
    DatasetFormat(
        "fairface", "FairFace", "CC BY 4.0 (the data set and its labels; the images are Flickr photos under "
        "Creative Commons licences): attribute \"FairFace: Face Attribute Dataset for Balanced Race, Gender, and "
        "Age\" (Karkkainen and Joo, WACV 2021).", "centre",
        lambda p: (p.is_dir() and any((p / n).exists() for n in FAIRFACE_CSVS)) or FAIRFACE_COLUMNS <= _csv_header(p),
        load_fairface, "a FairFace folder (fairface_label_train.csv / fairface_label_val.csv beside the images) "
                       "or label CSV (file,age,gender,race)",
        "FairFace (Kärkkäinen and Joo, WACV 2021): photos balanced across 7 race groups, with annotated "
        "apparent race, gender and age group."),
    DatasetFormat("utkface", "UTKFace", UTKFACE_LICENCE, "largest", _is_utkface, load_utkface,
                  "a UTKFace folder (AGE_GENDER_RACE_DATETIME.jpg files)", UTKFACE_DESCRIPTION),
    DatasetFormat(
        "aaf", "All-Age-Faces", "Published for research (Cheng et al.); cite the All-Age-Faces dataset by its "
        "authors in any report or model card.", "centre",
        lambda p: any(_AAF_NAME.match(Path(x).name) for x in _labels_csv_paths(p)), load_aaf,
        "an All-Age-Faces folder (labels.csv: path,age,gender over NNNNNAxx.jpg photos)",
        "All-Age-Faces (Cheng et al.): web photos of mostly East Asian people aged 2 to 80, age and gender "
        "labels. Research use; cite the authors."),
    DatasetFormat(
        "lfw", "Labeled Faces in the Wild", "Published for research (Huang et al.; gender labels by Afifi and "
        "Abdelhamed).", "centre",
        lambda p: any(_LFW_PATH.match(x) for x in _labels_csv_paths(p)), load_lfw,
        "an LFW folder (labels.csv: path,gender over Person/Person_NNNN.jpg photos)",
        "Labeled Faces in the Wild: news photos of mostly adult public figures (74% men), gender labels "
        "from Afifi and Abdelhamed's checked lists. Research use."),
    DatasetFormat("utk48csv", "UTKFace (48x48 grey CSV)", UTKFACE_LICENCE, "aligned",
                  lambda p: UTK48_COLUMNS <= _csv_header(p), load_utk48_csv,
                  "the UTK 48x48 CSV (age,ethnicity,gender,img_name,pixels)", UTKFACE_DESCRIPTION),
    DatasetFormat("manifest", "a manifest of images", "Inherits the licences of the images it lists.", "largest",
                  lambda p: "path" in _csv_header(p), load_manifest,
                  "a manifest CSV with a 'path' column (and any of age, age_bin, gender, race, person, x1..y2)"),
)}


def face_rule(record: FaceRecord) -> str:
    """Which detected face a record's labels belong to: its data set's rule (a record's own box wins over it
    where the caller has one)."""
    spec = FORMATS.get(record.dataset)
    return spec.face_rule if spec else "largest"


def utk48_labelled(record: FaceRecord) -> bool:
    """Whether a record can be a row of the UTK 48x48 CSV: an age in years, a gender and a UTKFace race."""
    return record.age_years is not None and bool(record.gender) and bool(record.race) and record.taxonomy == "utkface5"


def utk48_row(record: FaceRecord, grey: np.ndarray) -> str:
    """The record as a row of the UTK 48x48 CSV (UTKFace's codes for ethnicity and gender), its face the
    48x48 grey `grey`."""
    gender_code = next(code for code, gender in UTK_GENDERS.items() if gender == record.gender)
    return (f"{int(record.age_years)},{labels.UTKFACE5.index(record.race)},{gender_code},"
            f"{Path(record.source).name},{' '.join(map(str, grey.ravel()))}")


def detect_format(path: Path) -> str:
    """Name the dataset format at `path`, or raise with what is understood and what was found."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}")
    for name, spec in FORMATS.items():
        if spec.looks_like(path):
            return name
    if path.is_dir():
        images = [p.name for p in path.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)]
        found = f"{len(images)} images" + (f", e.g. {images[0]!r}" if images else "")
    elif path.suffix.lower() == ".csv":
        found = f"a CSV with columns {sorted(_csv_header(path))}"
    else:
        found = f"a {path.suffix or 'suffix-less'} file"
    understood = "; ".join(spec.layout for spec in FORMATS.values())
    raise UnknownDatasetLayout(f"cannot tell the dataset format of {path}: found {found}. Understood: {understood}.")


def load_dataset(path: Path | str, format: str | None = None, taxonomy: str | None = None) -> LoadedDataset:
    """Load any understood dataset; `format` names the loader, else it is detected from the path."""
    path = Path(path)
    format = format or detect_format(path)
    if format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; known: {sorted(FORMATS)}")
    dataset = load_manifest(path, taxonomy) if format == "manifest" else FORMATS[format].load(path)
    dataset.warn_skipped()
    return dataset
