"""Bootstrap intervals for every figure of an evaluation, per group and for the gaps between groups.

The definition is fairlearn's MetricFrame bootstrap (`n_boot`, `ci_quantiles`): resample the evaluated
faces with replacement (or whole people, where the table has a `person` column, so that one person's
photos go in or out together), recompute each figure per group on every resample, and report the 2.5th
and 97.5th percentiles. MetricFrame's bootstrap reruns every sklearn metric on every resample, which for
5 groupings x 4 tasks x 1,000 resamples takes minutes; here a resample is a row of counts (how often each
face was drawn) and every figure is a weighted sum, so all resamples of a group are a few matrix
products. tests/test_evaluation.py checks these figures against sklearn's on the unresampled table and
the intervals against a hand computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

N_BOOT = 1000
# An age head's columns in a predictions table (run.prediction_columns): `<head>_bin`, its age group, and
# `<head>_years`, its age in years, each with its prediction beside it (`pred_<column>`).
AGE_GROUP_SUFFIX, AGE_YEARS_SUFFIX = "_bin", "_years"
CI_QUANTILES = (0.025, 0.975)
NO_FACE = "no face found"  # the prediction of a tool that found no face: wrong on every label


def resampling_unit(table: pd.DataFrame) -> str:
    """"person" where every row names its person (the bootstrap then resamples people), else "face"."""
    return "person" if "person" in table and table["person"].notna().all() else "face"


def resample_weights(table: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, rows) draw counts: row i of resample b is in it weights[b, i] times. Whole people are
    drawn where the table has them (resampling_unit)."""
    if resampling_unit(table) == "person":
        clusters, people = pd.factorize(table["person"])
        units = len(people)
    else:
        clusters, units = np.arange(len(table)), len(table)
    counts = np.random.default_rng(seed).multinomial(units, np.full(units, 1.0 / units), size=n_boot)
    return counts.astype(np.float32)[:, clusters]


def _codes(values: pd.Series, order: list[str]) -> np.ndarray:
    """Label -> index in `order`; anything else (a missed face, an unknown label) -> len(order)."""
    rank = {label: i for i, label in enumerate(order)}
    return np.array([rank.get(v, len(order)) for v in values], dtype=np.int64)


def _one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    hot = np.zeros((len(codes), width), dtype=np.float32)
    hot[np.arange(len(codes)), codes] = 1.0
    return hot


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _nanmean(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Mean over the columns where `present`, per row; NaN where none is."""
    count = present.sum(axis=1)
    return _ratio(np.where(present, values, 0).sum(axis=1), count)


class WeightedFigures:
    """Every figure of metrics._metric_frames as weighted sums over a table's rows, for any weights:
    `figures(mask, weights)` gives each figure of the rows in `mask` under each row of `weights`."""

    def __init__(self, table: pd.DataFrame, head_labels: dict[str, list[str]], age_heads: list[str],
                 calibration_bins: int, within_years: float):
        self.heads = {}
        for head, order in head_labels.items():
            valid = table[head].notna().to_numpy()
            truth = _codes(table[head], order)
            predicted = _codes(table[f"pred_{head}"], order)
            head_data = {"valid": valid, "truth": truth, "predicted": predicted, "width": len(order) + 1,
                         "correct": (truth == predicted).astype(np.float32)}
            probabilities = [f"p_{head}_{label}" for label in order]
            if all(column in table for column in probabilities):
                confidence = table[probabilities].max(axis=1).fillna(0.0).to_numpy(dtype=np.float32)
                edges = np.linspace(0.0, 1.0, calibration_bins + 1)
                head_data["bin"] = np.digitize(confidence, edges[1:-1], right=True)
                head_data["gap"] = head_data["correct"] - confidence  # accuracy minus confidence, per row
                head_data["bins"] = calibration_bins
            if head.endswith(AGE_GROUP_SUFFIX):  # age groups are ordered: the next one is nearly right
                distance = np.abs(truth - predicted)
                head_data["one_off"] = ((distance <= 1) & (predicted < len(order))).astype(np.float32)
            self.heads[head] = head_data
        self.ages = {}  # age head -> (rows with both ages, absolute error, within `within_years`)
        for head in age_heads:
            years = f"{head}{AGE_YEARS_SUFFIX}"
            error = np.abs(table[years].astype(float).to_numpy() - table[f"pred_{years}"].astype(float).to_numpy())
            absolute = np.nan_to_num(error).astype(np.float32)
            self.ages[head] = (np.isfinite(error), absolute, (absolute <= within_years).astype(np.float32))
        self.within_name = f"within_{within_years:g}"
        self.missed = (table["face_found"] == False).to_numpy(np.float32) if "face_found" in table else None  # noqa: E712

    def figures(self, mask: np.ndarray, weights: np.ndarray, skip: set[str] = frozenset()) -> dict[str, np.ndarray]:
        """{task_metric: (resamples,) values} over the rows in `mask`; metrics named in `skip` left out."""
        out = {}
        for head, data in self.heads.items():
            rows = mask & data["valid"]
            if not rows.any():
                continue
            w = weights[:, rows]
            total = w.sum(axis=1)
            correct = data["correct"][rows]
            out[f"{head}_accuracy"] = _ratio(w @ correct, total)
            truth = _one_hot(data["truth"][rows], data["width"])
            predicted = _one_hot(data["predicted"][rows], data["width"])
            if f"{head}_balanced_accuracy" not in skip:
                per_class = w @ truth
                out[f"{head}_balanced_accuracy"] = _nanmean(_ratio(w @ (truth * correct[:, None]), per_class),
                                                            per_class > 0)
            if f"{head}_macro_f1" not in skip:
                true_positive = w @ (truth * predicted)
                denominator = w @ truth + w @ predicted
                out[f"{head}_macro_f1"] = _nanmean(_ratio(2 * true_positive, denominator), denominator > 0)
            if "bin" in data:
                bins = _one_hot(data["bin"][rows], data["bins"])
                out[f"{head}_ece"] = _ratio(np.abs(w @ (bins * data["gap"][rows][:, None])).sum(axis=1), total)
            if "one_off" in data:
                out[f"{head}_one_off_accuracy"] = _ratio(w @ data["one_off"][rows], total)
        for head, (valid, error, within) in self.ages.items():
            rows = mask & valid
            if rows.any():
                w = weights[:, rows]
                total = w.sum(axis=1)
                out[f"{head}_mae"] = _ratio(w @ error[rows], total)
                out[f"{head}_{self.within_name}"] = _ratio(w @ within[rows], total)
        if self.missed is not None and mask.any():
            w = weights[:, mask]
            out["detection_missed_rate"] = _ratio(w @ self.missed[mask], w.sum(axis=1))
        return out


    def faces(self, mask: np.ndarray) -> dict[str, int]:
        """How many rows of `mask` each accuracy and age figure is taken over (those with its truth)."""
        counts = {f"{head}_accuracy": int((mask & data["valid"]).sum()) for head, data in self.heads.items()}
        counts.update({f"{head}_mae": int((mask & valid).sum()) for head, (valid, _, _) in self.ages.items()})
        return counts


@dataclass(frozen=True)
class Bootstrap:
    """One table's figures engine and its resamples, made once per evaluation: the figures by group and
    the figures by estimated group are taken with the same ones, so their intervals are paired."""

    engine: WeightedFigures
    weights: np.ndarray  # (n_boot, rows): resample_weights' draw counts
    head_labels: dict[str, list[str]]  # each scored label head's labels in the model's order, as the engine has them

    @classmethod
    def of(cls, table: pd.DataFrame, head_labels: dict[str, list[str]], age_heads: list[str], n_boot: int,
           seed: int, calibration_bins: int, within_years: float) -> "Bootstrap":
        return cls(WeightedFigures(table, head_labels, age_heads, calibration_bins, within_years),
                   resample_weights(table, n_boot, seed), head_labels)

    @property
    def n_boot(self) -> int:
        return len(self.weights)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The bootstrap's 95% percentile interval (NaN where fewer than half the resamples have a value)."""
    finite = replicates[np.isfinite(replicates)]
    if len(finite) < max(2, len(replicates) // 2):
        return (np.nan, np.nan)
    low, high = np.quantile(finite, CI_QUANTILES)
    return float(low), float(high)

