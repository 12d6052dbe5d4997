"""Audit figures from one predictions table: per task, per group, calibration, gaps, age-standardised.

The table has one row a face: truth (`gender`, `race`, `age_years`, `age_bin`; missing where the data
lacks it), predictions (`pred_gender`, `pred_race`, `pred_age_years`, NaN for a bins-only model, and
`pred_age_bin`) and probabilities (`p_gender_<label>`, `p_race_<label>`, `p_age_bin_<label>`, in the
model's label order; optional: a tool that gives no probabilities has no calibration figures). An
audit of another tool adds `face_found` (False where it found no face: its labels are then NO_FACE,
wrong on every head) and may add `person` (the bootstrap then resamples people). Per-group figures come
from fairlearn's MetricFrame, one per task, so every figure has one definition whether it is taken
overall or by group; their bootstrap intervals come from uncertainty.py.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, equalized_odds_difference, false_positive_rate, true_positive_rate
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, mean_absolute_error

from facescope import labels
from facescope.figures import WITHIN_YEARS
from facescope.evaluation.estimated import coverage_table, estimated_group_figures
from facescope.evaluation.uncertainty import (
    AGE_GROUP_SUFFIX, AGE_YEARS_SUFFIX, N_BOOT, NO_FACE, Bootstrap, percentile_interval, resampling_unit,
)

GROUPINGS: dict[str, tuple[str, ...]] = {
    "race": ("race",),
    "gender": ("gender",),
    "age_bin": ("age_bin",),
    "race x gender": ("race", "gender"),
    "race x age_bin": ("race", "age_bin"),
    # Women and men at each age: where a gender head fails older women, or children, this shows it.
    "age_bin x gender": ("age_bin", "gender"),
}
CALIBRATION_BINS = 15
MIN_GROUP_SIZE = 30
POSITIVE_GENDER = "Female"  # the positive label of the gender head's equalized odds
GROUP_COLUMNS = ("grouping", "group", "race", "gender", "age_bin", "n")  # the labels and size of a group
GAP_COLUMNS = ["grouping", "metric", "groups", "lowest_group", "lowest", "highest_group", "highest",
               "difference", "ratio", "difference_low", "difference_high"]
INTERVAL_COLUMNS = ["grouping", "group", "metric", "low", "high"]
OVERALL = ("overall", "all")  # the (grouping, group) key of the whole table


def head_labels(table: pd.DataFrame, head: str) -> list[str]:
    """A head's labels in the model's order, read from its probability columns; for a tool that gives
    no probabilities, the first of the schema's label sets (the race taxonomies, the genders, the age
    groups) that holds every label its truth and answers use, whatever the head is named."""
    prefix = f"p_{head}_"
    found = [column.removeprefix(prefix) for column in table.columns if column.startswith(prefix)]
    if found:
        return found
    truth = set(table[head].dropna())
    predicted = set(table[f"pred_{head}"].dropna()) - {NO_FACE} if f"pred_{head}" in table else set()
    answers = [*labels.TAXONOMIES.values(), labels.GENDER, labels.Taxonomy("age groups", labels.AGE_BIN_LABELS)]
    for seen in (truth | predicted, truth):  # a predicted label outside the truth's taxonomy is just wrong
        for taxonomy in answers:
            if seen <= set(taxonomy.labels):
                return list(taxonomy.labels)
    return sorted(truth)


def evaluated_heads(table: pd.DataFrame) -> list[str]:
    """The answers scored as labels, by truth column: every column with truth and a `pred_<column>` beside
    it (a tool may predict only some outputs, a model more than three), ages in years aside (age_heads)."""
    return [column for column in table.columns if f"pred_{column}" in table
            and not column.endswith(AGE_YEARS_SUFFIX) and table[column].notna().any()]


def age_heads(table: pd.DataFrame) -> list[str]:
    """The age heads scored in years (their `<head>_years` truth and prediction columns), by head name."""
    return [column.removesuffix(AGE_YEARS_SUFFIX) for column in table.columns
            if column.endswith(AGE_YEARS_SUFFIX) and f"pred_{column}" in table]


def has_probabilities(table: pd.DataFrame, head: str) -> bool:
    return any(column.startswith(f"p_{head}_") for column in table.columns)


def missed_rate(y_true, y_pred) -> float:
    """Share of photos on which the tool found no face (y_true: True where it found none)."""
    return float(np.mean(np.asarray(y_true, dtype=bool)))


def degenerate_metrics(columns: tuple[str, ...]) -> set[str]:
    """Figures not computed within the groups of a grouping: a head whose truth the grouping fixes has a
    single true class in each group, so its balanced accuracy is its accuracy and its macro-F1 is
    meaningless (race macro-F1 within one race)."""
    return {f"{head}_{metric}" for head in columns for metric in ("balanced_accuracy", "macro_f1")}


def top_confidence(table: pd.DataFrame, head: str) -> pd.Series:
    """The probability of each row's most likely label (top-label confidence; 0 for a missed face)."""
    return table[[f"p_{head}_{label}" for label in head_labels(table, head)]].max(axis=1).fillna(0.0)


def reliability_bins(y_true, y_pred, confidence, n_bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Reliability-diagram data: per equal-width confidence bin (lower, upper], its row count, mean
    top-label confidence and accuracy (NaN for an empty bin)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    rows = pd.DataFrame({
        "bin": np.digitize(np.asarray(confidence, dtype=float), edges[1:-1], right=True),
        "confidence": np.asarray(confidence, dtype=float),
        "correct": np.asarray(y_true) == np.asarray(y_pred),
    })
    stats = rows.groupby("bin").agg(n=("correct", "size"), mean_confidence=("confidence", "mean"),
                                    accuracy=("correct", "mean")).reindex(range(n_bins))
    stats["n"] = stats["n"].fillna(0).astype(int)
    return stats.assign(lower=edges[:-1], upper=edges[1:])[["lower", "upper", "n", "mean_confidence", "accuracy"]]


def expected_calibration_error(y_true, y_pred, confidence, n_bins: int = CALIBRATION_BINS) -> float:
    """Top-label ECE: the row-weighted mean |accuracy - mean confidence| over equal-width bins."""
    bins = reliability_bins(y_true, y_pred, confidence, n_bins)
    filled = bins[bins["n"] > 0]
    return float((filled["n"] * (filled["accuracy"] - filled["mean_confidence"]).abs()).sum() / filled["n"].sum())


def one_off_accuracy(y_true, y_pred) -> float:
    """Share of predicted age bins equal to the true bin or next to it (a missed face is neither)."""
    rank = {label: i for i, label in enumerate(labels.AGE_BIN_LABELS)}
    far = len(rank) + 1  # NO_FACE: further than one bin from every true bin
    distance = np.abs(np.array([rank[b] for b in y_true]) - np.array([rank.get(b, far + rank[t])
                                                                      for t, b in zip(y_true, y_pred)]))
    return float(np.mean(distance <= 1))


def within_years(y_true, y_pred, years: float = WITHIN_YEARS) -> float:
    """Share of age estimates at most `years` from the truth."""
    return float(np.mean(np.abs(np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)) <= years))


def _metric_frames(table: pd.DataFrame, features: pd.Series | pd.DataFrame,
                   skip: set[str] = frozenset()) -> dict[str, MetricFrame]:
    """One MetricFrame per task ("gender", "race", "age_bin", "age", and "detection" in an audit), over
    the rows that have its truth; figures named in `skip` (degenerate_metrics) left out."""
    frames = {}
    for head in evaluated_heads(table):
        rows = table[table[head].notna()]
        if rows.empty:
            continue
        metrics = {
            "accuracy": accuracy_score,
            "balanced_accuracy": balanced_accuracy_score,
            # Macro over the labels seen in truth or prediction (sklearn's default): a label the model
            # predicts but the data never has still counts, with F1 0.
            "macro_f1": partial(f1_score, average="macro", zero_division=0.0),
            "ece": expected_calibration_error,
        }
        if head.endswith(AGE_GROUP_SUFFIX):
            metrics["one_off_accuracy"] = one_off_accuracy
        metrics = {name: metric for name, metric in metrics.items() if f"{head}_{name}" not in skip}
        calibrated = has_probabilities(rows, head)
        if not calibrated:
            del metrics["ece"]
        frames[head] = MetricFrame(
            metrics=metrics, y_true=rows[head], y_pred=rows[f"pred_{head}"],
            sensitive_features=features.loc[rows.index],
            sample_params={"ece": {"confidence": top_confidence(rows, head)}} if calibrated else None,
        )
    for head in age_heads(table):
        truth, predicted = f"{head}{AGE_YEARS_SUFFIX}", f"pred_{head}{AGE_YEARS_SUFFIX}"
        rows = table[table[truth].notna() & table[predicted].notna()]
        if len(rows):
            frames[head] = MetricFrame(
                metrics={"mae": mean_absolute_error, f"within_{WITHIN_YEARS}": within_years},
                y_true=rows[truth].astype(float), y_pred=rows[predicted].astype(float),
                sensitive_features=features.loc[rows.index],
            )
    if "face_found" in table:
        frames["detection"] = MetricFrame(metrics={"missed_rate": missed_rate}, y_true=~table["face_found"].astype(bool),
                                          y_pred=~table["face_found"].astype(bool), sensitive_features=features)
    return frames


def overall_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Every scalar figure over the whole table, with its row count `n`."""
    frames = _metric_frames(table, pd.Series("all", index=table.index, name="all"))
    figures = pd.concat([frame.overall.add_prefix(f"{task}_") for task, frame in frames.items()])
    return {"n": len(table), **{name: float(value) for name, value in figures.items()}}


def _label_rank(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Sort keys for group labels: the model's race order, GENDERS, the age bins' order."""
    return {"race": {label: i for i, label in enumerate(head_labels(table, "race"))},
            "gender": {label: i for i, label in enumerate(labels.GENDERS)},
            "age_bin": {label: i for i, label in enumerate(labels.AGE_BIN_LABELS)}}


def metrics_by_group(table: pd.DataFrame, groupings: dict[str, tuple[str, ...]] = GROUPINGS) -> pd.DataFrame:
    """Every scalar figure per group of each of `groupings` (observed groups only), tidy: grouping,
    group, race, gender, age_bin (the group's labels), n, then one column a figure."""
    rank = _label_rank(table)
    parts = []
    for grouping, columns in groupings.items():
        rows = table.dropna(subset=list(columns))
        if rows.empty:  # a data set without these labels (LFW has no race): no such grouping
            continue
        features = rows[list(columns)]
        frames = _metric_frames(rows, features, degenerate_metrics(columns))
        figures = pd.concat([frame.by_group.add_prefix(f"{task}_") for task, frame in frames.items()], axis=1)
        part = rows.groupby(list(columns)).size().rename("n").to_frame().join(figures).reset_index()
        part = part.sort_values(list(columns), key=lambda values: values.map(rank[values.name]), kind="stable")
        part.insert(0, "group", part[list(columns)].agg(" / ".join, axis=1))
        part.insert(0, "grouping", grouping)
        parts.append(part)
    tidy = pd.concat(parts, ignore_index=True)
    return tidy.reindex(columns=[*GROUP_COLUMNS, *metric_columns(tidy)])


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The figure columns of a by-group table (everything but the groups' labels and sizes)."""
    return [c for c in frame.columns if c not in GROUP_COLUMNS]


def group_gaps(by_group: pd.DataFrame, min_group_size: int = MIN_GROUP_SIZE,
               replicates: dict | None = None) -> pd.DataFrame:
    """Per grouping and figure, across the groups of at least `min_group_size` rows: the lowest and
    highest group, their difference (max - min) and ratio (min / max), and the 95% bootstrap interval of
    the difference between those two groups (from `replicates`, bootstrap_replicates' answer)."""
    gaps = []
    for grouping, groups in by_group.groupby("grouping", sort=False):
        compared = groups[groups["n"] >= min_group_size].set_index("group")
        for metric in metric_columns(by_group):
            values = compared[metric].dropna()
            if len(values) < 2:
                continue
            lowest, highest = values.min(), values.max()
            low_group, high_group = values.idxmin(), values.idxmax()
            difference = (replicates[(grouping, high_group)][metric] - replicates[(grouping, low_group)][metric]
                          if replicates else np.array([]))
            difference_low, difference_high = percentile_interval(difference) if len(difference) else (np.nan, np.nan)
            gaps.append({
                "grouping": grouping, "metric": metric, "groups": len(values),
                "lowest_group": low_group, "lowest": lowest, "highest_group": high_group, "highest": highest,
                "difference": highest - lowest, "ratio": lowest / highest if highest > 0 else np.nan,
                "difference_low": difference_low, "difference_high": difference_high,
            })
    return pd.DataFrame(gaps, columns=GAP_COLUMNS)


def gender_equalized_odds(table: pd.DataFrame, min_group_size: int = MIN_GROUP_SIZE) -> dict:
    """The gender head's equalized-odds difference across races (Female positive): the larger of the
    between-race gaps in true- and false-positive rate, over races of at least `min_group_size` rows."""
    rows = table.dropna(subset=["gender", "race"])
    sizes = rows["race"].value_counts()
    rows = rows[rows["race"].isin(sizes[sizes >= min_group_size].index)]
    result = {"positive_label": POSITIVE_GENDER, "min_group_size": min_group_size, "difference": None, "by_race": []}
    if rows["race"].nunique() < 2 or "gender" not in evaluated_heads(table):
        return result
    y_true = (rows["gender"] == POSITIVE_GENDER).astype(int)
    y_pred = (rows["pred_gender"] == POSITIVE_GENDER).astype(int)
    rates = MetricFrame(metrics={"true_positive_rate": true_positive_rate, "false_positive_rate": false_positive_rate},
                        y_true=y_true, y_pred=y_pred, sensitive_features=rows["race"])
    result["difference"] = float(equalized_odds_difference(y_true, y_pred, sensitive_features=rows["race"]))
    by_race = rates.by_group.reset_index().assign(n=lambda f: f["race"].map(sizes))
    result["by_race"] = _records(by_race.sort_values("race", key=lambda races: races.map(_label_rank(table)["race"])))
    return result


def _row_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per row, what the standardised figures average: 1/0 for a correct / wrong label, the absolute age
    error; NaN where the row lacks the truth."""
    scores = {f"{head}_accuracy": (table[head] == table[f"pred_{head}"]).astype(float).where(table[head].notna())
              for head in evaluated_heads(table)}
    for head in age_heads(table):
        years = f"{head}{AGE_YEARS_SUFFIX}"
        scores[f"{head}_mae"] = (table[years].astype(float) - table[f"pred_{years}"].astype(float)).abs()
    return pd.DataFrame(scores, index=table.index)


@dataclass
class AgeStandardised:
    """Per-race figures raw and with every race given the same age-bin mix (the reference)."""

    reference: pd.Series  # share of each age bin in the whole evaluation set
    by_race: pd.DataFrame  # race, metric, n, raw, standardised, reference_covered
    gaps: pd.DataFrame  # metric, races, raw_gap, standardised_gap, reading

    def to_dict(self) -> dict:
        return {"reference": _json(self.reference), "by_race": _records(self.by_race), "gaps": _records(self.gaps)}


def age_standardised(table: pd.DataFrame, min_group_size: int = MIN_GROUP_SIZE) -> AgeStandardised:
    """Direct age standardisation: each race's figure re-weighted so its rows' age-bin mix equals the
    whole set's, i.e. the reference-weighted mean of the race's per-bin figures. A race lacking some
    bins is standardised over the bins it has (`reference_covered` < 1 says how much of the mix that is).
    Gaps are taken across races of at least `min_group_size` rows."""
    rows = table.dropna(subset=["race", "age_bin"])
    reference = rows["age_bin"].value_counts(normalize=True)
    reference = reference.reindex([b for b in labels.AGE_BIN_LABELS if b in reference.index]).rename("share")
    scores = _row_scores(rows)
    present = set(rows["race"])
    figures = []
    for metric in scores.columns:
        for race in [r for r in _label_rank(table)["race"] if r in present]:
            values = scores.loc[rows["race"] == race, metric].dropna()
            if values.empty:
                continue
            by_bin = values.groupby(rows.loc[values.index, "age_bin"]).mean()
            weights = reference[by_bin.index]
            figures.append({"race": race, "metric": metric, "n": len(values), "raw": values.mean(),
                            "standardised": (by_bin * weights).sum() / weights.sum(),
                            "reference_covered": weights.sum()})
    by_race = pd.DataFrame(figures, columns=["race", "metric", "n", "raw", "standardised", "reference_covered"])
    gaps = []
    for metric, races in by_race[by_race["n"] >= min_group_size].groupby("metric", sort=False):
        if len(races) < 2:
            continue
        raw_gap = races["raw"].max() - races["raw"].min()
        standardised_gap = races["standardised"].max() - races["standardised"].min()
        gaps.append({"metric": metric, "races": len(races), "raw_gap": raw_gap, "standardised_gap": standardised_gap,
                     "reading": _standardised_reading(metric, raw_gap, standardised_gap)})
    return AgeStandardised(reference, by_race,
                           pd.DataFrame(gaps, columns=["metric", "races", "raw_gap", "standardised_gap", "reading"]))


def group_keys(table: pd.DataFrame, columns) -> pd.Series:
    """Each row's group name under a grouping's columns ("White / Female"); a missing label is empty
    (pandas keeps a missing value missing through astype(str), which a join cannot take)."""
    return table[list(columns)].astype(object).fillna("").astype(str).agg(" / ".join, axis=1)


def standardised_figure(table: pd.DataFrame, grouping: str, group: str, metric: str) -> float:
    """A group's figure with the whole set's age-bin mix (direct standardisation, as age_standardised
    does per race), for any group of GROUPINGS; NaN where the group has no such figure."""
    rows = table.dropna(subset=["race", "age_bin"])
    reference = rows["age_bin"].value_counts(normalize=True)
    columns = list(GROUPINGS[grouping])
    members = rows[group_keys(rows, columns) == group]
    scores = _row_scores(members)
    if metric not in scores:
        return np.nan
    values = scores[metric].dropna()
    if values.empty:
        return np.nan
    by_bin = values.groupby(members.loc[values.index, "age_bin"]).mean()
    weights = reference[by_bin.index]
    return float((by_bin * weights).sum() / weights.sum())


def _standardised_reading(metric: str, raw_gap: float, standardised_gap: float) -> str:
    """One sentence: how much of a between-race gap the races' different age mixes account for."""
    def amount(value: float) -> str:
        return f"{value:.2f} years" if metric == "age_mae" else f"{100 * value:.1f} points"

    opening = (f"{metric}: the gap between races is {amount(raw_gap)} raw and {amount(standardised_gap)} "
               "with every race given the same age mix")
    if standardised_gap > raw_gap:
        return (f"{opening}; standardising widens it (the races' age mixes were hiding part of it), and "
                f"{amount(standardised_gap)} remains between races at the same ages.")
    if raw_gap == 0:
        return f"{opening}: there is no gap either way."
    return (f"{opening}; the races' different age mixes account for {1 - standardised_gap / raw_gap:.0%} of it, "
            f"and {amount(standardised_gap)} remains between races at the same ages.")


def confusion_matrices(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per head, the confusion matrix normalised per true class: rows = truth (classes present),
    columns = prediction (all the head's labels)."""
    matrices = {}
    for head in evaluated_heads(table):
        rows = table[table[head].notna()]
        if rows.empty:
            continue
        head_order = head_labels(table, head)
        matrix = pd.crosstab(rows[head], rows[f"pred_{head}"], normalize="index")
        columns = head_order + ([NO_FACE] if NO_FACE in matrix.columns else [])
        matrices[head] = matrix.reindex(index=[label for label in head_order if label in matrix.index],
                                        columns=columns, fill_value=0.0)
    return matrices


CALIBRATION_COLUMNS = ["head", "lower", "upper", "n", "mean_confidence", "accuracy"]
CALIBRATION_GROUPINGS = ("race", "gender")  # the groupings whose groups get their own reliability data


def calibration_table(table: pd.DataFrame) -> pd.DataFrame:
    """Reliability-diagram data of every head with probabilities: head, lower, upper, n,
    mean_confidence, accuracy."""
    parts = []
    for head in evaluated_heads(table):
        rows = table[table[head].notna()]
        if not rows.empty and has_probabilities(rows, head):
            bins = reliability_bins(rows[head], rows[f"pred_{head}"], top_confidence(rows, head))
            parts.append(bins.assign(head=head))
    return (pd.concat(parts, ignore_index=True)[CALIBRATION_COLUMNS] if parts
            else pd.DataFrame(columns=CALIBRATION_COLUMNS))


def calibration_by_group(table: pd.DataFrame) -> pd.DataFrame:
    """calibration_table per group of CALIBRATION_GROUPINGS: grouping, group, then its columns."""
    parts = []
    for grouping in CALIBRATION_GROUPINGS:
        if grouping not in table:
            continue
        for group, rows in table.dropna(subset=[grouping]).groupby(grouping, sort=False):
            part = calibration_table(rows)
            if len(part):
                parts.append(part.assign(grouping=grouping, group=group))
    columns = ["grouping", "group", *CALIBRATION_COLUMNS]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def map_truth_races(table: pd.DataFrame, source: str, target: str) -> tuple[pd.DataFrame, dict]:
    """The table with its truth races mapped from taxonomy `source` to the model's `target`
    (labels.map_race), rows whose race has no counterpart dropped (the index is kept), and a note of
    what was mapped and dropped."""
    known = table["race"].notna()
    mapped = table["race"].map(lambda race: labels.map_race(race, source, target), na_action="ignore")
    dropped = known & mapped.isna()
    note = {
        "source": source, "target": target, "rows_kept": int((~dropped).sum()), "rows_dropped": int(dropped.sum()),
        "dropped_by_race": {k: int(v) for k, v in table.loc[dropped, "race"].value_counts().items()},
        "mapping": {race: labels.map_race(race, source, target) for race in sorted(table.loc[known, "race"].unique())},
    }
    return table.assign(race=mapped)[~dropped], note


def _check_labels(table: pd.DataFrame) -> None:
    for head in evaluated_heads(table):
        unknown = set(table[head].dropna()) - set(head_labels(table, head))
        if unknown:
            raise ValueError(f"truth {head} labels {sorted(unknown)} are not the model's; "
                             "map them first (map_truth_races for races from another taxonomy)")


def _json(value: pd.Series | pd.DataFrame, orient: str = "index"):
    """JSON-able plain values (NaN -> None) via pandas' own serialiser."""
    return json.loads(value.to_json(orient=orient))


def _records(frame: pd.DataFrame) -> list[dict]:
    return _json(frame, orient="records")


def table_bootstrap(table: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> Bootstrap:
    """The figures engine of every evaluated head of `table` and `n_boot` seeded resamples of its rows."""
    return Bootstrap.of(table, {head: head_labels(table, head) for head in evaluated_heads(table)}, age_heads(table),
                        n_boot, seed, CALIBRATION_BINS, WITHIN_YEARS)


def bootstrap_replicates(table: pd.DataFrame, bootstrap: Bootstrap,
                         groupings: dict[str, tuple[str, ...]] = GROUPINGS) -> dict:
    """{(grouping, group): {figure: (n_boot,) values over resamples}} for the whole table (OVERALL) and
    every group of `groupings`, from `bootstrap` (table_bootstrap's answer); the same resamples for every
    group, so differences between groups (and between tools audited on the same photos) are paired."""
    engine, weights = bootstrap.engine, bootstrap.weights
    replicates = {OVERALL: engine.figures(np.ones(len(table), dtype=bool), weights)}
    for grouping, columns in groupings.items():
        complete = table[list(columns)].notna().all(axis=1).to_numpy()
        if not complete.any():  # a data set without these labels (LFW has no race)
            continue
        keys = group_keys(table, columns).to_numpy()
        for group in pd.unique(keys[complete]):
            replicates[(grouping, group)] = engine.figures(complete & (keys == group), weights,
                                                           degenerate_metrics(columns))
    return replicates


def gaps_within(table: pd.DataFrame, groupings: tuple[str, ...], min_group_size: int = MIN_GROUP_SIZE,
                n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """group_gaps of some of GROUPINGS (by name) over the faces of `table` alone, with their bootstrap
    intervals, and nothing else of `evaluate`: the gaps among a part of an evaluated table's faces (women
    and men among the adults), exactly those `evaluate` of that part would give."""
    chosen = {name: GROUPINGS[name] for name in groupings}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # as in evaluate
        by_group = metrics_by_group(table, chosen)
        replicates = bootstrap_replicates(table, table_bootstrap(table, n_boot, seed), chosen) if n_boot else {}
    return group_gaps(by_group, min_group_size, replicates)


def interval_table(replicates: dict) -> pd.DataFrame:
    """The 95% percentile interval of every figure of every group: grouping, group, metric, low, high."""
    rows = [(grouping, group, metric, *percentile_interval(values))
            for (grouping, group), figures in replicates.items() for metric, values in figures.items()]
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


@dataclass
class EvaluationResult:
    overall: dict[str, float]
    by_group: pd.DataFrame
    gaps: pd.DataFrame
    calibration: pd.DataFrame
    confusion: dict[str, pd.DataFrame]
    age_standardised: AgeStandardised
    equalized_odds: dict
    min_group_size: int
    cross_taxonomy: dict | None = None
    intervals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INTERVAL_COLUMNS))
    n_boot: int = 0
    resampling: str = "face"
    replicates: dict = field(default_factory=dict, repr=False)  # bootstrap_replicates' answer; not serialised
    calibration_groups: pd.DataFrame = field(default_factory=pd.DataFrame)  # calibration_by_group's answer
    by_estimate: dict = field(default_factory=dict)  # estimated.estimated_group_figures' answer
    coverage: pd.DataFrame = field(default_factory=pd.DataFrame)  # estimated.coverage_table's answer

    def interval(self, metric: str, grouping: str = OVERALL[0], group: str = OVERALL[1]) -> tuple[float, float]:
        """The 95% interval of one figure ((NaN, NaN) without a bootstrap)."""
        rows = self.intervals[(self.intervals["grouping"] == grouping) & (self.intervals["group"] == group)
                              & (self.intervals["metric"] == metric)]
        return (float(rows.iloc[0]["low"]), float(rows.iloc[0]["high"])) if len(rows) else (np.nan, np.nan)

    def to_dict(self) -> dict:
        return {
            "overall": _json(pd.Series(self.overall)),
            "min_group_size": self.min_group_size,
            "by_group": _records(self.by_group),
            "gaps": _records(self.gaps),
            "equalized_odds": self.equalized_odds,
            "age_standardised": self.age_standardised.to_dict(),
            "calibration": _records(self.calibration),
            "confusion": {head: _json(matrix) for head, matrix in self.confusion.items()},
            "cross_taxonomy": self.cross_taxonomy,
            "bootstrap": {"resamples": self.n_boot, "unit": self.resampling, "quantiles": [0.025, 0.975]},
            "intervals": _records(self.intervals),
            "by_estimated_group": self.by_estimate,
            "coverage": _records(self.coverage),
        }


def race_taxonomy_of(table: pd.DataFrame) -> str | None:
    """The taxonomy the table's races are compared in (the one whose labels are the race head's)."""
    if "race" not in evaluated_heads(table):
        return None
    order = set(head_labels(table, "race"))
    return next((t.name for t in labels.TAXONOMIES.values() if set(t.labels) == order), None)


def evaluate(table: pd.DataFrame, min_group_size: int = MIN_GROUP_SIZE,
             cross_taxonomy: dict | None = None, n_boot: int = N_BOOT, seed: int = 0) -> EvaluationResult:
    """Every figure of the audit for one predictions table, with 95% bootstrap intervals from `n_boot`
    resamples (0: none). `cross_taxonomy` is map_truth_races' note, carried into the result where the
    truth races were mapped."""
    _check_labels(table)
    with warnings.catch_warnings():
        # A group holding one true class (every by-gender group, for the gender head) makes sklearn warn
        # on each call; its balanced accuracy is then that class's recall, which is what we want.
        warnings.simplefilter("ignore", UserWarning)
        by_group = metrics_by_group(table)
        bootstrap = table_bootstrap(table, n_boot, seed)
        replicates = bootstrap_replicates(table, bootstrap) if n_boot else {}
        return EvaluationResult(
            overall=overall_metrics(table),
            by_group=by_group,
            gaps=group_gaps(by_group, min_group_size, replicates),
            calibration=calibration_table(table),
            confusion=confusion_matrices(table),
            age_standardised=age_standardised(table, min_group_size),
            equalized_odds=gender_equalized_odds(table, min_group_size),
            min_group_size=min_group_size,
            cross_taxonomy=cross_taxonomy,
            intervals=interval_table(replicates) if replicates else pd.DataFrame(columns=INTERVAL_COLUMNS),
            n_boot=n_boot,
            resampling=resampling_unit(table),
            replicates=replicates,
            calibration_groups=calibration_by_group(table),
            by_estimate=estimated_group_figures(table, bootstrap, race_taxonomy_of(table), min_group_size),
            coverage=coverage_table(table, bootstrap.head_labels),
        )
