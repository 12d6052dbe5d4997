"""Figures by what the model answered, for the answers it gives a user: per group of estimates (a user
knows the estimate, never the truth) and per confidence threshold (how many answers each group keeps).

`estimated_group_figures` measures each head's figure for the test faces *estimated* in each group of
ESTIMATED_GROUPINGS, from the most specific (estimated age group x gender x race) to the whole set,
with its face count and 95% bootstrap interval: the bundle keeps them, and every estimate is paired
with the figure of the most specific group that has enough faces (facescope.inference.error_figures).
The figures are uncertainty.WeightedFigures' (the definitions of every other figure), taken with unit
weights for the value and with the bootstrap's resamples for the interval.

`coverage_table` is the cost of abstaining: per head, threshold and true group, the share of faces
still answered (top probability at least the threshold) and the accuracy of those answers.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from facescope import heads as head_names
from facescope.evaluation.uncertainty import AGE_GROUP_SUFFIX, NO_FACE, Bootstrap, percentile_interval

# Most specific first: a face's figure comes from the first of these whose group has enough faces.
ESTIMATED_GROUPINGS: dict[str, tuple[str, ...]] = {
    "estimated age group x gender x race": ("age_bin", "gender", "race"),
    "estimated age group x gender": ("age_bin", "gender"),
    "estimated age group": ("age_bin",),
    "estimated race": ("race",),
    "estimated gender": ("gender",),
}
OVERALL_GROUPING, OVERALL_GROUP = "overall", "all"
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
COVERAGE_GROUPINGS = ("race", "gender", "age_bin")  # true groups: who loses answers as the bar rises
COVERAGE_COLUMNS = ["head", "threshold", "grouping", "group", "faces", "answered", "coverage",
                    "answered_accuracy", "accuracy"]


def threshold_head(column: str) -> str:
    """The head whose confidence threshold applies to a scored label column: an age head's (`age`) to its
    age group (`age_bin`), a label head's to its own."""
    return column.removesuffix(AGE_GROUP_SUFFIX)


def estimated_keys(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """Each row's estimated group ("0-2 / Female"), None where an estimate is missing or no face was found."""
    predicted = table[[f"pred_{c}" for c in columns]].astype(object)
    usable = predicted.notna().all(axis=1) & ~predicted.isin([NO_FACE]).any(axis=1)
    return predicted.fillna("").astype(str).agg(" / ".join, axis=1).where(usable)


def estimated_group_figures(table: pd.DataFrame, bootstrap: Bootstrap, race_taxonomy: str | None,
                            min_faces: int) -> dict:
    """{race_taxonomy, min_faces, groupings: {name: columns}, figures: {grouping: {group: {figure:
    {value, faces, interval}}}}} for every grouping of ESTIMATED_GROUPINGS the table has estimates for,
    and the whole table (grouping "overall", group "all"), from the evaluation's `bootstrap`."""
    engine, n_boot = bootstrap.engine, bootstrap.n_boot
    unit = np.ones((1, len(table)), dtype=np.float32)
    weights = np.vstack([unit, bootstrap.weights]) if n_boot else unit
    groupings = {name: columns for name, columns in ESTIMATED_GROUPINGS.items()
                 if all(f"pred_{c}" in table for c in columns)}

    def figures(mask: np.ndarray) -> dict:
        values, faces = engine.figures(mask, weights), engine.faces(mask)
        out = {}
        for figure in faces:  # the figure beside each answer: how often a label is right, how far an age is off
            if figure in values and np.isfinite(values[figure][0]):
                low, high = percentile_interval(values[figure][1:]) if n_boot else (np.nan, np.nan)
                out[figure] = {"value": round(float(values[figure][0]), 4), "faces": faces[figure],
                               "interval": [round(low, 4), round(high, 4)] if np.isfinite(low) else None}
        return out

    found = {OVERALL_GROUPING: {OVERALL_GROUP: figures(np.ones(len(table), dtype=bool))}}
    for name, columns in groupings.items():
        keys = estimated_keys(table, columns).to_numpy(dtype=object)
        found[name] = {group: figures(keys == group) for group in pd.unique(keys[pd.notna(keys)])}
    return {"race_taxonomy": race_taxonomy, "min_faces": min_faces,
            "groupings": {name: list(columns) for name, columns in groupings.items()}, "figures": found}


def coverage_table(table: pd.DataFrame, head_labels: dict[str, list[str]],
                   thresholds: tuple[float, ...] = THRESHOLDS) -> pd.DataFrame:
    """Per head with probabilities, threshold and group (COVERAGE_GROUPINGS, and "overall"): faces,
    answered (top probability >= threshold), coverage (answered / faces), answered_accuracy (right among
    the answered) and accuracy (right among all, as if every face were answered)."""
    rows = []
    for head, order in head_labels.items():
        probabilities = [f"p_{head}_{label}" for label in order]
        if not all(c in table for c in probabilities):
            continue
        scored = table[table[head].notna()]
        confidence = scored[probabilities].max(axis=1).fillna(0.0).to_numpy()
        correct = (scored[head] == scored[f"pred_{head}"]).to_numpy()
        groups = [(OVERALL_GROUPING, pd.Series(OVERALL_GROUP, index=scored.index))]
        groups += [(g, scored[g]) for g in COVERAGE_GROUPINGS if g in scored and scored[g].notna().any()]
        for threshold in thresholds:
            answered = confidence >= threshold
            for grouping, keys in groups:
                for group in pd.unique(keys.dropna()):
                    member = (keys == group).to_numpy()
                    n, kept = int(member.sum()), int((member & answered).sum())
                    rows.append({"head": threshold_head(head), "threshold": threshold, "grouping": grouping,
                                 "group": group, "faces": n, "answered": kept, "coverage": kept / n,
                                 "answered_accuracy": (correct[member & answered].mean() if kept else np.nan),
                                 "accuracy": correct[member].mean()})
    return pd.DataFrame(rows, columns=COVERAGE_COLUMNS)


def threshold_cost(coverage: pd.DataFrame, thresholds: dict[str, float] | None = None) -> list[dict]:
    """What the default thresholds (heads.DEFAULT_THRESHOLDS) cost each group: per head, the row of
    `coverage` at the highest measured threshold not above the head's default, lowest coverage first."""
    thresholds = head_names.DEFAULT_THRESHOLDS if thresholds is None else thresholds
    rows = []
    for head, part in coverage.groupby("head", sort=False):
        measured = part["threshold"][part["threshold"] <= thresholds.get(head, 0.0) + 1e-9]
        if measured.empty:
            continue
        at = part[part["threshold"] == measured.max()].sort_values(["coverage", "grouping"], kind="stable")
        rows += json.loads(at.round(4).to_json(orient="records"))  # NaN (nothing answered) as null
    return rows
