"""Audit any estimator: read its predictions (CSV or JSONL), join them to a data set's ground truth,
map its label spellings and race taxonomy onto facescope's label schema, and produce the same figures
and report as `facescope evaluate`, for one or several estimators on the same photos.

A predictions file has one row a photo: a path column and any of age in years, age group, gender and
race, with or without probabilities. Column names are mapped by a ColumnMap (options or a small YAML).
A photo on which the tool found no face (a `face_found` column that is false, or a row whose
predictions are all empty) is wrong on every label and counts in the "faces missed" figure.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from facescope import labels
from facescope.evaluation.tool_outputs import flatten, json_objects
from facescope.evaluation.metrics import MIN_GROUP_SIZE, evaluate, map_truth_races
from facescope.evaluation.uncertainty import N_BOOT, NO_FACE
from facescope.heads import UNCERTAIN

GENDER_SPELLINGS = {
    "female": "Female", "f": "Female", "woman": "Female", "women": "Female", "girl": "Female", "1": "Female",
    "male": "Male", "m": "Male", "man": "Male", "men": "Male", "boy": "Male", "0": "Male",
}
RACE_TAXONOMIES = tuple(labels.TAXONOMIES)
PREDICTION_FIELDS = ("gender", "race", "age_years", "age_bin")
UNMATCHED_EXAMPLES = 10
# Bounds on what a predictions file may hold: a longer line is counted and skipped (never read whole,
# never echoed), a larger file or column YAML refused. A CLI record with 50 faces is about 40 kB.
MAX_LINE_BYTES = 1 << 20
MAX_PREDICTIONS_BYTES = 4 << 30
MAX_JSON_DOCUMENT_BYTES = 256 << 20  # a .json document is parsed whole; larger: JSON lines
MAX_YAML_BYTES = 1 << 20
SHOWN_CHARACTERS = 80  # of a value quoted in a message


def shown(value) -> str:
    """A value from an input file as a message quotes it: repr, cut to SHOWN_CHARACTERS."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else f"{text[:SHOWN_CHARACTERS]}... ({len(text):,} characters)"


@dataclass
class ColumnMap:
    """Which column of a predictions file holds what (None: the tool does not give it)."""

    path: str | None = None  # default: path, source, file, filename or image, whichever the file has
    gender: str | None = None
    race: str | None = None
    age_years: str | None = None
    age_bin: str | None = None
    face_found: str | None = None
    race_taxonomy: str | None = None  # the tool's race labels; default: the one that holds them all
    # {head: {label: column}}: the tool's probability of each label (labels in the tool's spelling)
    probabilities: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ColumnMap:
        """The map a column YAML gives; ValueError, in one line, for a file that cannot be read, is not
        YAML, is not a mapping, or gives a key a value of the wrong type."""
        try:
            if os.path.getsize(path) > MAX_YAML_BYTES:
                raise ValueError(f"{path}: a column YAML over {MAX_YAML_BYTES:,} bytes")
            values = yaml.safe_load(Path(path).read_text(errors="replace"))
        except OSError as error:
            raise ValueError(f"{path}: cannot be read ({error.strerror})") from None
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            raise ValueError(f"{path}: not valid YAML{f' (line {where.line + 1})' if where else ''}") from None
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a column YAML is a mapping (key: column name), not a {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = {str(key) for key in values} - known
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(shown(k) for k in unknown)}; known: {sorted(known)}")
        for key, value in values.items():
            if key == "probabilities":
                if not (isinstance(value, dict) and all(isinstance(by_label, dict) and all(
                        isinstance(c, str) for c in by_label.values()) for by_label in value.values())):
                    raise ValueError(f"{path}: probabilities is a mapping of head -> label -> column name, "
                                     f"not {shown(value)}")
            elif value is not None and not isinstance(value, str):
                raise ValueError(f"{path}: {key} is a column name (text), not {shown(value)}")
        return cls(**{**values, "probabilities": values.get("probabilities") or {}})

    def guessed(self, columns: list[str]) -> ColumnMap:
        """Fields left unset filled from the file's own column names where they are the usual ones
        (gender, race, age / age_years, age_bin / age_group, face_found), and p_<head>_<label> columns."""
        usual = {"path": ("path", "source", "file", "filename", "image"),
                 "gender": ("pred_gender", "gender", "dominant_gender"),
                 "race": ("pred_race", "race", "dominant_race"),
                 "age_years": ("pred_age_years", "age_years", "age"),
                 "age_bin": ("pred_age_bin", "age_bin", "age_group"),
                 "face_found": ("face_found", "face_detected")}
        filled = ColumnMap(**{f.name: getattr(self, f.name) for f in fields(self)})
        for name, candidates in usual.items():
            if getattr(filled, name) is None:
                setattr(filled, name, next((c for c in candidates if c in columns), None))
        if not filled.probabilities:
            for column in columns:
                match = re.fullmatch(r"p_(gender|race|age_bin)_(.+)", column)
                if match:
                    filled.probabilities.setdefault(match.group(1), {})[match.group(2)] = column
        return filled


def read_predictions(path: str | Path, skipped: dict[str, int] | None = None) -> pd.DataFrame:
    """A predictions file as a table of strings and numbers: CSV, or JSON / JSON Lines (.json, .jsonl,
    .ndjson), tools' nested records flattened to one row a photo (tool_outputs). Lines over
    MAX_LINE_BYTES and JSON values that are not objects (or lists of them) are skipped, counted in
    `skipped`; a .json document is read whole, up to MAX_JSON_DOCUMENT_BYTES."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no predictions file at {path}")
    if path.stat().st_size > MAX_PREDICTIONS_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes, over the limit of {MAX_PREDICTIONS_BYTES:,} "
                         "for a predictions file; split it")
    skipped = {} if skipped is None else skipped
    suffix = path.suffix.lower()
    try:
        # A .json document is read whole, once; anything else line by line (a long line skipped, counted).
        values = _json_document(path) if suffix == ".json" else None
        lines = _bounded_lines(path, skipped) if values is None else []
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror})") from None
    if suffix in (".jsonl", ".ndjson", ".json"):
        if values is None:  # JSON lines
            values = []
            for line in lines:
                try:
                    values.append(json.loads(line) if line.strip() else None)
                except (ValueError, RecursionError):
                    values.append("")  # not JSON: counted as not an object
        records = json_objects(values, skipped)
        return flatten(records)[0] if records else pd.DataFrame()
    if not lines:
        raise ValueError(f"{path}: no header line within {MAX_LINE_BYTES:,} bytes")
    return pd.read_csv(io.BytesIO(b"".join(lines)), dtype=str, keep_default_na=True)


def _bounded_lines(path: Path, skipped: dict[str, int]) -> list[bytes]:
    """The file's lines, each read at most MAX_LINE_BYTES at a time: a longer one is passed over in
    chunks (never held whole) and counted as "line too long"."""
    lines = []
    with open(path, "rb") as file:
        while line := file.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):
                    line = file.readline(MAX_LINE_BYTES)
                skipped["line too long"] = skipped.get("line too long", 0) + 1
            else:
                lines.append(line)
    return lines


def _json_document(path: Path) -> list | None:
    """A .json file's values where it holds one JSON document (a list of photos' records, as
    `predict --format json` and DeepFace write); None where it holds JSON lines."""
    with open(path, "rb") as file:
        start = file.read(1 << 16).lstrip()[:1]
        if start not in (b"[", b"{"):
            return None
        size = path.stat().st_size
        if size > MAX_JSON_DOCUMENT_BYTES:
            raise ValueError(f"{path}: a JSON document of {size:,} bytes, over the limit of "
                             f"{MAX_JSON_DOCUMENT_BYTES:,}; write it as JSON lines (.jsonl), one photo a line")
        file.seek(0)
        data = file.read()
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None
    except ValueError:  # JSON lines under a .json name
        return None
    return value if isinstance(value, list) else [value]


def _key(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(text).strip().lower())


def normalise_gender(value) -> str | None:
    if _missing(value):
        return None
    if _key(value) == UNCERTAIN:  # an answer withheld (facescope's threshold): never right
        return UNCERTAIN
    try:
        return GENDER_SPELLINGS[_key(value)]
    except KeyError:
        raise ValueError(f"cannot read {shown(value)} as a gender; understood: {sorted(GENDER_SPELLINGS)}") from None


def normalise_race(value, taxonomy: str) -> str | None:
    """A race label in the tool's spelling -> the exact label of `taxonomy` (case, spaces, underscores)."""
    if _missing(value):
        return None
    if _key(value) == UNCERTAIN:
        return UNCERTAIN
    choices = labels.taxonomy(taxonomy).labels
    by_key = {_key(label): label for label in choices}
    try:
        return by_key[_key(value)]
    except KeyError:
        raise ValueError(f"cannot read {shown(value)} as a {taxonomy} race; expected one of {choices}") from None


def guess_order() -> list[str]:
    """The declared race taxonomies (labels.TAXONOMIES) in the order a guess tries them: coarsest first,
    the taxonomies the most others map onto (labels.RACE_MAPPINGS), since labels that fit a coarse
    taxonomy and a finer one can be compared in the coarse one with either's truth; of two as coarse, the
    one with more labels (FairFace-4's labels are all UTKFace's)."""
    onto = {name: sum(target == name for _, target in labels.RACE_MAPPINGS) for name in labels.TAXONOMIES}
    return sorted(labels.TAXONOMIES, key=lambda name: (-onto[name], -len(labels.TAXONOMIES[name].labels)))


def guess_race_taxonomy(values: pd.Series) -> str:
    """The first taxonomy of guess_order whose labels hold every value (case, spaces and underscores aside)."""
    seen = {_key(v) for v in values.dropna()} - {UNCERTAIN}
    for name in guess_order():
        choices = labels.taxonomy(name).labels
        if seen <= {_key(label) for label in choices}:
            return name
    examples = sorted(shown(v) for v in seen)[:10]
    raise ValueError(f"race labels {examples} fit none of {RACE_TAXONOMIES}; name the tool's taxonomy "
                     "(race_taxonomy in the column YAML, or --race-taxonomy)")


def map_race_labels(values: pd.Series, source: str, target: str) -> pd.Series:
    """Races of taxonomy `source` as `target` labels (None where `target` has no counterpart)."""
    return values.map(lambda v: v if v == UNCERTAIN else labels.map_race(v, source, target), na_action="ignore")


def map_race_probabilities(table: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """The p_race_* columns (labels of taxonomy `source`, as load_predictions names them) as `target`'s:
    labels.coarse_probabilities, column by column. A row without race probabilities keeps none."""
    columns = [c for c in table.columns if c.startswith("p_race_")]
    if not columns:
        return table
    fine = {column.removeprefix("p_race_"): table[column].astype(float) for column in columns}
    mapped = pd.DataFrame({f"p_race_{label}": p for label, p in labels.coarse_probabilities(fine, source, target).items()},
                          index=table.index)
    mapped[table[columns].isna().all(axis=1)] = np.nan
    return pd.concat([table.drop(columns=columns), mapped], axis=1)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _years(value) -> float:
    if _missing(value):
        return np.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{shown(value)} is not an age in years")
    return number


def _found(value) -> bool:
    if isinstance(value, bool):
        return value
    return _key(value) not in ("false", "0", "no", "none", "")


@dataclass
class Predictions:
    """One tool's predictions in facescope's schema, by photo (its path as written in the file)."""

    name: str
    table: pd.DataFrame  # path, face_found, pred_gender, pred_race, pred_age_years, pred_age_bin, p_*
    race_taxonomy: str | None
    duplicates: int  # rows dropped because their photo already had one (a tool reporting several faces)
    # what was passed over and how often: "line too long", "not a JSON object", "probability outside [0, 1]"
    skipped: dict[str, int] = field(default_factory=dict)
    model: str | None = None  # the facescope model that made them, where the file names one


def load_predictions(path: str | Path, columns: ColumnMap, name: str | None = None) -> Predictions:
    """Read a predictions file and bring it into facescope's schema (labels normalised; races still in
    the tool's taxonomy, mapped when joined to the ground truth)."""
    skipped: dict[str, int] = {}
    raw = read_predictions(path, skipped)
    columns = columns.guessed(list(raw.columns))
    if columns.path is None or columns.path not in raw:
        raise ValueError(f"{path}: no path column {columns.path or 'path'!r} (columns: {list(raw.columns)}); name it with "
                         "--path-column or `path:` in the column YAML")
    given = [f for f in PREDICTION_FIELDS if getattr(columns, f)]
    for f in given:
        if getattr(columns, f) not in raw:
            raise ValueError(f"{path}: no column {getattr(columns, f)!r} for {f} (columns: {list(raw.columns)})")
    if not given:
        raise ValueError(f"{path}: none of gender, race, age_years, age_bin found; map them with options or YAML")
    table = pd.DataFrame({"path": raw[columns.path].astype(str).str.strip()})
    if columns.gender:
        table["pred_gender"] = raw[columns.gender].map(normalise_gender)
    taxonomy = None
    if columns.race:
        taxonomy = columns.race_taxonomy or guess_race_taxonomy(raw[columns.race])
        if taxonomy not in RACE_TAXONOMIES:
            raise ValueError(f"unknown race taxonomy {taxonomy!r}; known: {RACE_TAXONOMIES}")
        table["pred_race"] = raw[columns.race].map(lambda v: normalise_race(v, taxonomy))
    if columns.age_years:
        table["pred_age_years"] = raw[columns.age_years].map(_years).astype(float)
    if columns.age_bin:
        table["pred_age_bin"] = raw[columns.age_bin].map(lambda v: None if _missing(v) else labels.normalise_age_bin(str(v)))
    elif columns.age_years:
        table["pred_age_bin"] = table["pred_age_years"].map(labels.age_to_bin, na_action="ignore")
    predicted = [c for c in table.columns if c.startswith("pred_")]
    if columns.face_found:
        table["face_found"] = raw[columns.face_found].map(_found).astype(bool)
    else:
        table["face_found"] = table[predicted].notna().any(axis=1)
    for head, by_label in columns.probabilities.items():
        for label, column in by_label.items():
            spelled = (normalise_gender(label) if head == "gender" else
                       normalise_race(label, taxonomy) if head == "race" else labels.normalise_age_bin(label))
            if column not in raw:
                raise ValueError(f"{path}: no column {shown(column)} for the {head} probability of {shown(label)}")
            table[f"p_{head}_{spelled}"] = pd.to_numeric(raw[column], errors="coerce")
        # A probability outside [0, 1] (or not a number) is not one: the row's probabilities for this
        # head are dropped and counted, never clipped into range.
        head_columns = [c for c in table.columns if c.startswith(f"p_{head}_")]
        values = table[head_columns]
        outside = values.notna() & ((values < 0.0) | (values > 1.0))
        invalid = outside.any(axis=1) | (values.isna().any(axis=1) & values.notna().any(axis=1))
        if invalid.any():
            table.loc[invalid, head_columns] = np.nan
            skipped["probability outside [0, 1]"] = skipped.get("probability outside [0, 1]", 0) + int(invalid.sum())
    before = len(table)
    table = table.drop_duplicates("path", keep="first").reset_index(drop=True)
    return Predictions(name or Path(path).stem, table, taxonomy, before - len(table), skipped,
                       model_of(raw))


def model_of(raw: pd.DataFrame) -> str | None:
    """The facescope model named in a predictions file's `model` column (one model a file)."""
    if "model" not in raw:
        return None
    names = sorted({str(m) for m in raw["model"].dropna()})
    if len(names) > 1:
        raise ValueError(f"the predictions name several models ({', '.join(shown(n) for n in names[:5])}); "
                         "audit one model a file")
    return names[0] if names else None


def _path_keys(source: str, root: Path) -> list[str]:
    """The ways a predictions file may name a data set photo: absolute, relative to the data set, bare
    name. Resolving never fails: a symbolic link loop or a name the system refuses keeps its own spelling."""
    path = Path(source)
    keys = [_resolved(path if path.is_absolute() else root / path)]
    try:
        keys.append(str(Path(_resolved(path)).relative_to(_resolved(root))))
    except ValueError:
        pass
    keys.append(path.name)
    return keys


def _resolved(path: Path) -> str:
    try:
        return os.path.realpath(path)  # unlike Path.resolve, gives up quietly on a link loop
    except (OSError, ValueError):  # a NUL byte, a name too long
        return os.path.abspath(path)


def join_truth(predictions: Predictions, truth: pd.DataFrame, truth_taxonomy: str, root: Path) -> tuple[pd.DataFrame, dict]:
    """Predictions joined to the truth rows (truth_table's columns, `source` the photo's path), with the
    tool's races mapped onto the truth's taxonomy (or the truth's onto the tool's, whichever is coarser).
    Returns the joined table and a note: unmatched prediction rows (count and examples), truth photos
    without a prediction row, duplicates dropped, and the taxonomy mapping."""
    index: dict[str, int] = {}
    ambiguous: set[str] = set()
    for position, source in enumerate(truth["source"]):
        for key in _path_keys(source, root):
            if key in index and index[key] != position:
                ambiguous.add(key)
            index.setdefault(key, position)
    positions, unmatched = [], []
    for path in predictions.table["path"]:
        keys = [k for k in _path_keys(path, root) if k not in ambiguous]
        found = next((index[k] for k in keys if k in index), None)
        positions.append(found)
        if found is None:
            unmatched.append(path)
    matched = predictions.table.assign(_row=positions).dropna(subset=["_row"])
    joined = truth.iloc[matched["_row"].astype(int)].reset_index(drop=True)
    joined = pd.concat([joined, matched.drop(columns=["_row", "path"]).reset_index(drop=True)], axis=1)
    note = {"estimator": predictions.name, "prediction_rows": len(predictions.table) + predictions.duplicates,
            "matched": len(joined), "unmatched_rows": len(unmatched),
            "unmatched_examples": [p if len(p) <= SHOWN_CHARACTERS else shown(p) for p in unmatched[:UNMATCHED_EXAMPLES]],
            "skipped": predictions.skipped,
            "truth_without_prediction": len(truth) - len(joined), "duplicate_rows_dropped": predictions.duplicates}
    if "pred_race" in joined and predictions.race_taxonomy:
        joined, note["race_mapping"] = _align_races(joined, predictions.race_taxonomy, truth_taxonomy)
    joined.loc[~joined["face_found"], [c for c in ("pred_gender", "pred_race", "pred_age_bin") if c in joined]] = NO_FACE
    if "pred_age_years" in joined:  # an age said for a photo without a face (DeepFace's whole-image answer) is none
        joined.loc[~joined["face_found"], "pred_age_years"] = np.nan
    return joined, note


def _align_races(table: pd.DataFrame, tool: str, truth: str) -> tuple[pd.DataFrame, dict]:
    """Bring truth and predicted races into one taxonomy: the truth's, where the tool's labels map onto
    it (FairFace-7 or DeepFace predictions against UTKFace truth), else the tool's (map_truth_races)."""
    if tool == truth:
        return table, {"tool": tool, "truth": truth, "compared_in": truth}
    if (tool, truth) in labels.RACE_MAPPINGS:
        mapped = map_race_labels(table["pred_race"], tool, truth)
        lost = table["pred_race"].notna() & mapped.isna()
        note = {"tool": tool, "truth": truth, "compared_in": truth,
                "mapping": {label: labels.map_race(label, tool, truth) for label in sorted(table["pred_race"].dropna().unique())},
                "predictions_without_counterpart": int(lost.sum())}
        table = map_race_probabilities(table, tool, truth)
        # A predicted race with no counterpart in the truth's taxonomy can never be right: keep it wrong.
        return table.assign(pred_race=mapped.where(~lost, "(" + table["pred_race"].astype(str) + ")")), note
    if (truth, tool) in labels.RACE_MAPPINGS:
        mapped, note = map_truth_races(table, truth, tool)
        return mapped.reset_index(drop=True), {"tool": tool, "truth": truth, "compared_in": tool, **note}
    raise ValueError(f"no mapping between the tool's {tool} races and the truth's {truth}")


def audit(prediction_files: list[tuple[str, str | Path, ColumnMap]], data: str | Path, split: str = "all",
          seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1,
          min_group_size: int = MIN_GROUP_SIZE, n_boot: int = N_BOOT, output: str | Path = "reports/audit",
          dataset_format: str | None = None, model: str | Path | None = None,
          training_splits: str | Path | None = None) -> tuple[list, dict, Path]:
    """Audit one or several tools' predictions against a data set's labels; writes the report folder.
    Several tools are compared on the photos every one of them has a row for. Predictions made by a
    facescope model (a `model` column) are scored only on photos that model did not train on
    (`model`: its bundle, where it is not installed; `training_splits`: the run's split manifest).
    Returns (runs, context, folder); context["warnings"] says what was left out and why."""
    from facescope.data import load_dataset
    from facescope.evaluation.report import Run, write_runs_report
    from facescope.evaluation.run import select_records, truth_table

    try:  # before any work: a report folder that cannot be made is a one-line error, not a lost audit
        Path(output).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--output {output}: cannot be a report folder ({error.strerror or error})") from None
    dataset = load_dataset(data, dataset_format)
    records, how = select_records(dataset, split, seed, val_fraction, test_fraction)
    loaded = [load_predictions(path, columns, name) for name, path, columns in prediction_files]
    records, warnings = leave_out_training_photos(loaded, records, dataset.records, split, model, training_splits)
    truth = truth_table(records)
    joined, notes = [], []
    for predictions in loaded:
        table, note = join_truth(predictions, truth, dataset.taxonomy, Path(dataset.root))
        joined.append(table)
        notes.append(note)
    common = set.intersection(*(set(table["source"]) for table in joined))
    if not common:
        raise ValueError("no photo is both in the ground truth and in every predictions file; see the paths")
    runs = []
    for table, note in zip(joined, notes):
        note["not_in_every_file"] = int((~table["source"].isin(common)).sum())
        table = table[table["source"].isin(common)].sort_values("source").reset_index(drop=True)
        result = evaluate(table, min_group_size, n_boot=n_boot, seed=seed)
        runs.append(Run(note["estimator"], result, table))
    context = {
        "estimators": ", ".join(run.name for run in runs), "ground_truth": str(data), "dataset": Path(data).name,
        "format": dataset.format, "data_taxonomy": dataset.taxonomy, "split": split, "split_made_by": how,
        "faces": len(common),
        "command": rerun_command(prediction_files, write_column_maps(prediction_files, Path(output) / "columns"),
                                 data, split, seed, val_fraction, test_fraction, min_group_size, n_boot, output,
                                 model, training_splits),
        "joins": notes, "warnings": warnings,
    }
    folder = write_runs_report(runs, Path(output), context)
    (Path(output) / "joins.json").write_text(json.dumps(notes, indent=2, default=str))
    return runs, context, folder


def leave_out_training_photos(loaded: list[Predictions], records: list, all_records: list, split: str,
                              model: str | Path | None, training_splits: str | Path | None) -> tuple[list, list[str]]:
    """`records` without the photos that the facescope model behind any predictions file trained or
    validated on, and a warning for each file that had some. A split chosen on purpose (train, val)
    that holds such photos is refused: its figures would measure memory, not the model."""
    from facescope.evaluation.training_photos import TrainingSplits, find_model

    splits = TrainingSplits(all_records, training_splits)
    warnings = []
    for predictions in loaded:
        if predictions.model is None:
            continue
        info = find_model(predictions.model, model)
        seen = splits.seen_sources(info)
        hit = sum(r.source in seen for r in records)
        if not hit:
            continue
        if split in ("train", "val"):
            raise ValueError(f"{predictions.name}: model {info.name!r} trained on {hit} of the {len(records)} photos "
                             f"of the {split} split; audit photos it has not seen (--split test)")
        records = [r for r in records if r.source not in seen]
        warnings.append(f"{predictions.name}: made by facescope model {info.name!r}, which trained on {hit} of these "
                        f"photos: they are left out, and {len(records)} photos it never saw are audited")
    return records, warnings


def write_column_maps(prediction_files: list[tuple[str, str | Path, ColumnMap]], folder: Path) -> list[Path]:
    """Each file's column map (options and YAML merged) as <folder>/<n>.yaml, in the files' order: the
    report keeps them, so that its rerun command loses no option."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (_, _, columns) in enumerate(prediction_files, start=1):
        values = {f.name: getattr(columns, f.name) for f in fields(columns) if getattr(columns, f.name)}
        path = folder / f"{number}.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False) if values else "{}\n")
        paths.append(path)
    return paths


def rerun_command(prediction_files: list[tuple[str, str | Path, ColumnMap]], column_maps: list[Path],
                  data: str | Path, split: str, seed: int, val_fraction: float, test_fraction: float,
                  min_group_size: int, n_boot: int, output: str | Path, model: str | Path | None,
                  training_splits: str | Path | None) -> str:
    """The `facescope audit` command that reruns an audit exactly, each file's columns named by its
    column map (write_column_maps' files)."""
    from facescope.evaluation.run import command_line

    return command_line("facescope audit", [
        ("--predictions", [path for _, path, _ in prediction_files]), ("--name", [name for name, _, _ in prediction_files]),
        ("--columns", column_maps), ("--data", data), ("--split", split), ("--seed", seed),
        ("--val-fraction", val_fraction), ("--test-fraction", test_fraction), ("--min-group-size", min_group_size),
        ("--n-boot", n_boot), ("--output", output), ("--model", model), ("--training-splits", training_splits)])
