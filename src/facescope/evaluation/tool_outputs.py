"""Predictions files as tools write them, brought to one row a photo in facescope's column names.

`audit` reads a CSV with one row a photo directly (columns mapped by a ColumnMap); the outputs of face
analysis tools are nested, one record per photo or per face, and are flattened here first:

- facescope's own `predict` output (JSON lines, `--format json`, or CSV): `path`, `model` and `faces`,
  the largest face first; the labels are the most likely of each head's probabilities (an answer
  withheld as "uncertain" is still scored on what the model estimated), with the probabilities.
- DeepFace's `analyze` results (a list of dicts per photo, in JSON or JSON lines, each with
  `dominant_gender`, `gender` {Woman, Man} scores in percent, `dominant_race`, `race` scores, `age`,
  `region`, and the photo under `img_path` or `path`): the largest face of each photo.
- insightface-style faces (`gender` 1 for male and 0 for female, or `sex` M/F; `age`; `bbox` or
  `det_score`): the largest face of each photo.

Every flattened table has `path`, `face_found`, `pred_gender`, `pred_race`, `pred_age_years`,
`pred_age_bin` and `p_<head>_<label>` columns where the tool gives them, which ColumnMap.guessed reads.
"""

from __future__ import annotations

import pandas as pd

PATH_KEYS = ("path", "img_path", "image", "file", "filename", "source")
INSIGHTFACE_KEYS = ("det_score", "kps", "bbox", "embedding", "landmark_2d_106")
INSIGHTFACE_GENDER = {1: "Male", 0: "Female"}  # insightface's Face.gender (its `sex` is "M" where 1)


def json_objects(values: list, skipped: dict[str, int]) -> list[dict]:
    """The JSON objects among a file's values (its lines, or the items of its one document), lists
    flattened (DeepFace writes a list per photo); a value holding anything else (a number, text) is
    counted once in `skipped` as "not a JSON object" and its objects kept; empty lines (None) pass."""
    flat = []
    for value in values:
        pending, stray = [value], False
        while pending:  # depth first, in file order, without recursion
            item = pending.pop()
            if isinstance(item, list):
                pending.extend(reversed(item))
            elif isinstance(item, dict):
                flat.append(item)
            elif item is not None:
                stray = True
        if stray:
            skipped["not a JSON object"] = skipped.get("not a JSON object", 0) + 1
    return flat


def tool_of(records: list[dict]) -> str:
    """"facescope", "deepface", "insightface" or "table" (flat rows, read as they are)."""
    keys = set().union(*(record.keys() for record in records)) if records else set()
    if "faces" in keys and "path" in keys:
        return "facescope"
    if keys & {"dominant_gender", "dominant_race"}:
        return "deepface"
    if keys & set(INSIGHTFACE_KEYS) and keys & {"gender", "sex", "age"}:
        return "insightface"
    return "table"


def flatten(records: list[dict]) -> tuple[pd.DataFrame, str]:
    """(one row a photo in facescope's prediction columns, the tool that wrote them)."""
    tool = tool_of(records)
    if tool == "table":
        return pd.DataFrame(records), tool
    rows = [FLATTEN[tool](record) for record in records]
    table = pd.DataFrame(rows)
    if tool != "facescope":  # one record a face: keep each photo's largest
        table = (table.sort_values("_area", ascending=False, kind="stable").drop_duplicates("path")
                 .sort_index())
    return table.drop(columns=["_area"], errors="ignore").reset_index(drop=True), tool


def _path(record: dict) -> str:
    path = next((record[k] for k in PATH_KEYS if record.get(k) not in (None, "")), None)
    if path is None:
        raise ValueError(f"a record has no photo path (looked for {', '.join(PATH_KEYS)}): {sorted(record)[:8]}")
    return str(path)


def _top(probs: dict[str, float]) -> str:
    return max(probs, key=probs.get)


def _facescope(record: dict) -> dict:
    row = {"path": record["path"], "model": record.get("model"), "face_found": bool(record.get("faces"))}
    if not record.get("faces"):
        return row
    face = record["faces"][0]
    for name, value in face.items():
        if not isinstance(value, dict):
            continue
        if "bin_probs" in value:  # an age
            row["pred_age_years"] = value.get("years")
            row["pred_age_bin"] = _top(value["bin_probs"])
            row.update({f"p_age_bin_{b}": p for b, p in value["bin_probs"].items()})
        elif "probs" in value:  # a label head
            row[f"pred_{name}"] = _top(value["probs"])
            row.update({f"p_{name}_{label}": p for label, p in value["probs"].items()})
    return row


def _percent(scores: dict) -> dict[str, float]:
    """DeepFace's scores (percent) as probabilities."""
    values = {label: float(score) for label, score in scores.items()}
    scale = 100.0 if sum(values.values()) > 1.5 else 1.0
    return {label: value / scale for label, value in values.items()}


def _deepface(record: dict) -> dict:
    region = record.get("region") or {}
    row = {"path": _path(record), "_area": float(region.get("w", 0) or 0) * float(region.get("h", 0) or 0),
           # DeepFace without enforce_detection answers for the whole image with face_confidence 0
           "face_found": record.get("face_confidence", 1) not in (0, 0.0)}
    if record.get("dominant_gender") is not None:
        row["pred_gender"] = record["dominant_gender"]
    if isinstance(record.get("gender"), dict):
        row.update({f"p_gender_{label}": p for label, p in _percent(record["gender"]).items()})
    if record.get("dominant_race") is not None:
        row["pred_race"] = record["dominant_race"]
    if isinstance(record.get("race"), dict):
        row.update({f"p_race_{label}": p for label, p in _percent(record["race"]).items()})
    if record.get("age") is not None:
        row["pred_age_years"] = float(record["age"])
    return row


def _insightface(record: dict) -> dict:
    box = record.get("bbox") or [0, 0, 0, 0]
    row = {"path": _path(record), "_area": abs(float(box[2]) - float(box[0])) * abs(float(box[3]) - float(box[1])),
           "face_found": True}
    gender = record.get("gender")
    if gender is not None and not isinstance(gender, str):
        if int(gender) not in INSIGHTFACE_GENDER:
            raise ValueError(f"insightface gender {gender!r} is neither 0 (female) nor 1 (male)")
        row["pred_gender"] = INSIGHTFACE_GENDER[int(gender)]
    elif record.get("sex") is not None:
        row["pred_gender"] = record["sex"]
    if record.get("age") is not None:
        row["pred_age_years"] = float(record["age"])
    return row


FLATTEN = {"facescope": _facescope, "deepface": _deepface, "insightface": _insightface}

