"""The report of an evaluation or an audit: report.html (one self-contained file, plots inline),
report.md with the same content (plots as PNG files beside it), metrics.json and predictions.csv.

The report leads with its story: a one-page summary (headline figures with 95% intervals, the largest
gaps between groups in plain sentences, what to conclude and what not), then the details. Several
estimators audited on the same photos share one report, side by side, with intervals on their
differences.

Figures are drawn on matplotlib Figures with the Agg canvas directly, never through pyplot, so writing
a report changes no global matplotlib state (backend, open figures) of the program that calls it.
matplotlib keeps a font cache in its config folder (~/.cache/matplotlib or ~/.config/matplotlib);
unless MPLCONFIGDIR says where, a report gives it a temporary folder of its own, removed at exit, so
writing a report writes nothing outside the report's folder.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

if "MPLCONFIGDIR" not in os.environ:
    os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="facescope-matplotlib-")
    atexit.register(shutil.rmtree, os.environ["MPLCONFIGDIR"], ignore_errors=True)
    logging.getLogger("matplotlib.font_manager").setLevel(logging.WARNING)  # "generated new fontManager", each run

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from facescope.document import Document, Image, Section, Table, format_number, spreadsheet_cell  # noqa: E402
from facescope.heads import describe_thresholds  # noqa: E402
from facescope.evaluation.metrics import (
    CALIBRATION_BINS, OVERALL, POSITIVE_GENDER, WITHIN_YEARS, EvaluationResult, metric_columns,
    standardised_figure,
)
from facescope.evaluation.uncertainty import percentile_interval
from facescope.figures import (
    GROUPING_NAMES, HEAD_NAMES, LOWER_IS_BETTER, is_share, metric_name, show, show_difference, show_interval,
)

HEADLINE = ["gender_accuracy", "race_accuracy", "age_bin_accuracy", "age_bin_one_off_accuracy", "age_mae",
            f"age_within_{WITHIN_YEARS}", "gender_ece", "race_ece", "age_bin_ece", "detection_missed_rate"]
# The figures whose largest gaps the summary states, and the groupings it looks across.
STORY_METRICS = ["gender_accuracy", "race_accuracy", "age_bin_accuracy", "age_mae", "detection_missed_rate"]
STORY_GROUPINGS = ["race", "gender", "race x gender"]
AGE_MIX_GROUPINGS = ("race", "race x gender")  # gaps whose share explained by age mix the summary states
CHARTS = [  # (file stem, grouping, figures, axis label)
    ("accuracy_by_race", "race", ["gender_accuracy", "race_accuracy", "age_bin_accuracy"], "accuracy"),
    ("accuracy_by_race_x_gender", "race x gender", ["gender_accuracy", "race_accuracy", "age_bin_accuracy"],
     "accuracy"),
    ("accuracy_by_age_bin", "age_bin", ["gender_accuracy", "race_accuracy", "age_bin_accuracy"], "accuracy"),
    ("age_mae_by_race", "race", ["age_mae"], "years"),
    ("age_mae_by_age_bin", "age_bin", ["age_mae"], "years"),
    ("missed_by_race_x_gender", "race x gender", ["detection_missed_rate"], "share of photos"),
]
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


@dataclass
class Run:
    """One estimator's evaluation: its name, figures and predictions table."""

    name: str
    result: EvaluationResult
    table: pd.DataFrame


def write_report(result: EvaluationResult, table: pd.DataFrame, folder: Path, context: dict) -> Path:
    """Write the report folder for `result` (computed from the predictions `table`); `context` says what
    was evaluated (model, data, split)."""
    return write_runs_report([Run(context.get("model", "model"), result, table)], folder, context)


def write_runs_report(runs: list[Run], folder: Path, context: dict) -> Path:
    """Write report.html, report.md, metrics.json, predictions.csv and the PNGs for one or several
    estimators evaluated on the same faces."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    document = build_document(runs, context)
    for image in document.images():
        (folder / image.name).write_bytes(image.png)
    (folder / "report.md").write_text(document.to_markdown())
    (folder / "report.html").write_text(document.to_html())
    if len(runs) == 1:
        metrics = {"context": context, **runs[0].result.to_dict()}
        _spreadsheet_safe(runs[0].table).to_csv(folder / "predictions.csv", index=False)
    else:
        metrics = {"context": context, "estimators": {run.name: run.result.to_dict() for run in runs},
                   "differences": _records(estimator_differences(runs))}
        _spreadsheet_safe(pd.concat([run.table.assign(estimator=run.name) for run in runs])).to_csv(
            folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False, default=_plain))
    return folder


def _spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells (paths, labels, estimator names: they come from the files audited) that a spreadsheet
    would run as a formula get a leading `'`."""
    text = table.select_dtypes(include=["object", "string"]).columns
    return table.assign(**{column: table[column].map(spreadsheet_cell) for column in text})


def _plain(value):
    """json.dumps' fallback: numpy scalars as Python numbers."""
    return value.item() if hasattr(value, "item") else str(value)


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def summary_lines(result: EvaluationResult) -> list[str]:
    """A few lines for the terminal: the overall figures with intervals, and the largest race gap."""
    overall = result.overall
    shown = [("gender accuracy", "gender_accuracy"), ("race accuracy", "race_accuracy"),
             ("age-bin accuracy", "age_bin_accuracy"), ("age MAE (years)", "age_mae")]

    def figure(key: str) -> str:
        low, high = result.interval(key)
        return f"{overall[key]:.3f}" + ("" if math.isnan(low) else f" [{low:.3f}, {high:.3f}]")

    lines = [f"{overall['n']} faces: " + ", ".join(f"{name} {figure(key)}" for name, key in shown if key in overall)]
    by_race = result.by_group[result.by_group["grouping"] == "race"].set_index("group")
    if "gender_accuracy" not in by_race:
        return lines
    compared = by_race[by_race["n"] >= result.min_group_size]["gender_accuracy"].dropna()
    if len(compared) >= 2:
        worst, best = compared.idxmin(), compared.idxmax()
        gap = result.gaps[(result.gaps["grouping"] == "race") & (result.gaps["metric"] == "gender_accuracy")]
        interval = "" if gap.empty or math.isnan(gap.iloc[0]["difference_low"]) else (
            f" [{gap.iloc[0]['difference_low']:.3f}, {gap.iloc[0]['difference_high']:.3f}]")
        lines.append(f"gender accuracy by race: worst {worst} {compared[worst]:.3f} (n={by_race.loc[worst, 'n']}), "
                     f"best {best} {compared[best]:.3f} (n={by_race.loc[best, 'n']}), "
                     f"gap {compared[best] - compared[worst]:.3f}{interval}")
    else:
        lines.append("gender accuracy by race: fewer than two races with at least "
                     f"{result.min_group_size} faces to compare")
    if result.equalized_odds["difference"] is not None:
        lines.append("equalized-odds difference of the gender head across races: "
                     f"{result.equalized_odds['difference']:.3f}")
    return lines


# ---------------------------------------------------------------------------------------------- figures

def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure, name: str, alt: str) -> Image:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return Image(name=name, png=buffer.getvalue(), alt=alt)


def _head_name(head: str) -> str:
    """A scored head as the report names it: the three outputs by figures.HEAD_NAMES, any further output
    by its own name."""
    return HEAD_NAMES.get(head, head)


def _plot_confusion(matrix: pd.DataFrame, head: str, name: str) -> Image:
    figure = _new_figure(max(5.5, 2.2 + 0.85 * len(matrix.columns)), max(3.2, 1.8 + 0.55 * len(matrix.index)))
    axes = figure.add_subplot()
    image = axes.imshow(matrix.to_numpy(), vmin=0, vmax=1, cmap="Blues", aspect="auto")
    long_labels = max(len(str(c)) for c in matrix.columns) > 8
    axes.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=30 if long_labels else 0,
                    ha="right" if long_labels else "center", fontsize=10)
    axes.set_yticks(range(len(matrix.index)), matrix.index, fontsize=10)
    for (row, column), value in np.ndenumerate(matrix.to_numpy()):
        axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=10,
                  color="white" if value > 0.5 else "black")
    axes.set_xlabel("predicted", fontsize=11)
    axes.set_ylabel("true", fontsize=11)
    figure.suptitle(f"{_head_name(head).capitalize()}: how each true class is predicted", fontsize=12)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    return _png(figure, name, f"Confusion matrix of the {_head_name(head)} estimate")


def _plot_reliability_panels(result: EvaluationResult, head: str, name: str) -> Image:
    """Reliability diagrams of one head: all faces, then each race and gender (small multiples)."""
    panels = [("all faces", result.calibration[result.calibration["head"] == head], result.overall.get(f"{head}_ece"))]
    groups = result.calibration_groups
    if len(groups):
        for (grouping, group), bins in groups[groups["head"] == head].groupby(["grouping", "group"], sort=False):
            n = int(bins["n"].sum())
            panels.append((f"{group} (n={n:,})", bins, None if n == 0 else _ece(bins)))
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = _new_figure(3.1 * columns, 3.0 * rows + 0.4)
    for index, (title, bins, ece) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        filled = bins[bins["n"] > 0]
        small = filled["n"].sum() < result.min_group_size
        axes.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        axes.plot(filled["mean_confidence"], filled["accuracy"], "o-", color="#bbbbbb" if small else COLOURS[0],
                  markersize=4)
        axes.set(xlim=(0, 1), ylim=(0, 1.02))
        axes.set_title(f"{title}\nECE {ece:.3f}" if ece is not None else title, fontsize=10,
                       color="#888888" if small else "black")
        axes.tick_params(labelsize=9)
        if index % columns == 0:
            axes.set_ylabel("accuracy", fontsize=10)
        if index >= len(panels) - columns:
            axes.set_xlabel("confidence", fontsize=10)
    figure.suptitle(f"{_head_name(head).capitalize()}: reliability (dots on the dashed line = calibrated)",
                    fontsize=12)
    return _png(figure, name, f"Reliability diagrams of the {_head_name(head)} estimate, overall and per group")


def _ece(bins: pd.DataFrame) -> float:
    filled = bins[bins["n"] > 0]
    return float((filled["n"] * (filled["accuracy"] - filled["mean_confidence"]).abs()).sum() / filled["n"].sum())


def _group_rows(runs: list[Run], grouping: str) -> pd.DataFrame:
    """The by-group rows of a grouping with each figure's interval (columns <metric>_low / _high)."""
    parts = []
    for run in runs:
        groups = run.result.by_group[run.result.by_group["grouping"] == grouping].copy()
        intervals = run.result.intervals[run.result.intervals["grouping"] == grouping]
        for metric, values in intervals.groupby("metric"):
            bounds = values.set_index("group")
            groups[f"{metric}_low"] = groups["group"].map(bounds["low"])
            groups[f"{metric}_high"] = groups["group"].map(bounds["high"])
        parts.append(groups.assign(estimator=run.name))
    return pd.concat(parts, ignore_index=True)


def _plot_dots(runs: list[Run], grouping: str, metrics: list[str], axis_label: str, name: str) -> Image | None:
    """Dot-and-whisker chart: one panel a figure, groups down the side, one colour an estimator; groups
    below the minimum size grey and hollow."""
    rows = _group_rows(runs, grouping)
    metrics = [m for m in metrics if m in rows and rows[m].notna().any()]
    if not metrics:
        return None
    groups = list(dict.fromkeys(rows["group"]))
    minimum = runs[0].result.min_group_size
    figure = _new_figure(max(6.0, 3.4 * len(metrics) + 1.6), 1.2 + 0.36 * len(groups) * max(1, len(runs) * 0.7))
    axes_list = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    offsets = np.linspace(-0.2, 0.2, len(runs)) if len(runs) > 1 else [0.0]
    for axes, metric in zip(axes_list, metrics):
        for offset, colour, run in zip(offsets, COLOURS, runs):
            mine = rows[rows["estimator"] == run.name].set_index("group").reindex(groups)
            y = np.arange(len(groups)) + offset
            small = (mine["n"] < minimum).to_numpy()
            value = mine[metric].to_numpy(dtype=float)
            low = mine.get(f"{metric}_low", pd.Series(np.nan, index=mine.index)).to_numpy(dtype=float)
            high = mine.get(f"{metric}_high", pd.Series(np.nan, index=mine.index)).to_numpy(dtype=float)
            for is_small in (False, True):
                keep = (small == is_small) & np.isfinite(value)
                colour_now = "#b0b0b0" if is_small else colour
                axes.errorbar(value[keep], y[keep],
                              xerr=np.clip(np.nan_to_num([value[keep] - low[keep], high[keep] - value[keep]]), 0, None),
                              fmt="o", color=colour_now, ecolor=colour_now, capsize=3, markersize=6,
                              markerfacecolor="white" if is_small else colour_now,
                              label=run.name if not is_small and len(runs) > 1 else None)
        axes.set_title(metric_name(metric), fontsize=11)
        axes.set_xlabel(axis_label, fontsize=10)
        axes.grid(axis="x", color="#e5e5e5")
        axes.tick_params(labelsize=10)
        if is_share(metric):
            axes.xaxis.set_major_formatter(lambda value, _: f"{100 * value:.0f}%")
    sizes = rows.drop_duplicates("group").set_index("group")["n"]
    axes_list[0].set_yticks(range(len(groups)), [f"{g}  (n={int(sizes[g]):,})" for g in groups])
    axes_list[0].invert_yaxis()
    if len(runs) > 1:
        axes_list[-1].legend(fontsize=9, loc="best")
    figure.suptitle(f"By {GROUPING_NAMES[grouping]}: estimate and 95% interval\n"
                    f"(grey, hollow: fewer than {minimum} faces, not compared)", fontsize=11)
    return _png(figure, name, f"{', '.join(metric_name(m) for m in metrics)} by {GROUPING_NAMES[grouping]}, "
                              "with 95% intervals")


def _plot_age_errors(table: pd.DataFrame, name: str) -> Image:
    rows = table.dropna(subset=["age_years", "pred_age_years"])
    figure = _new_figure(10, 4.2)
    scatter, histogram = figure.subplots(1, 2)
    scatter.scatter(rows["age_years"], rows["pred_age_years"], s=6, alpha=0.4)
    top = max(rows["age_years"].max(), rows["pred_age_years"].max())
    scatter.plot([0, top], [0, top], "--", color="grey")
    scatter.set_xlabel("true age (years)", fontsize=10)
    scatter.set_ylabel("estimated age (years)", fontsize=10)
    scatter.set_title("Estimated against true age", fontsize=11)
    histogram.hist(rows["pred_age_years"] - rows["age_years"], bins=40)
    histogram.set_xlabel("estimated minus true age (years)", fontsize=10)
    histogram.set_ylabel("faces", fontsize=10)
    histogram.set_title("Age errors", fontsize=11)
    return _png(figure, name, "Estimated against true age, and the distribution of age errors")


# ------------------------------------------------------------------------------------------- the story

def _gap_sentence(run: Run, gap: pd.Series) -> str:
    """One plain sentence about a gap, with both groups' figures and intervals, whether the interval of
    the difference excludes zero, and (for race gaps) how much of it the races' age mix explains."""
    result, metric, grouping = run.result, gap["metric"], gap["grouping"]
    worse_first = metric.endswith(LOWER_IS_BETTER)
    worse, better = (("highest", "lowest") if worse_first else ("lowest", "highest"))
    sizes = result.by_group[result.by_group["grouping"] == grouping].set_index("group")["n"]

    def group_text(which: str) -> str:
        group = gap[f"{which}_group"]
        low, high = result.interval(metric, grouping, group)
        return (f"{group} ({show(metric, gap[which])}, 95% CI {show_interval(metric, low, high)}, "
                f"n={int(sizes[group]):,})")

    direction = "higher" if worse_first else "lower"
    sentence = (f"**{metric_name(metric).capitalize()}** is {show_difference(metric, gap['difference'])} {direction} "
                f"for {group_text(worse)} than for {group_text(better)}")
    if not math.isnan(gap["difference_low"]):
        sentence += f"; 95% CI of the difference {show_interval(metric, gap['difference_low'], gap['difference_high'], True)}"
        sentence += (": unlikely to be chance alone." if gap["difference_low"] > 0
                     else ": the interval includes zero, so this gap may be chance.")
    else:
        sentence += "."
    explained = _age_mix_share(run, gap)
    if explained is not None:
        sentence += " " + explained
    return sentence


def _age_mix_share(run: Run, gap: pd.Series) -> str | None:
    """For a gap between races (or races x genders): the same gap with both groups given the whole set's
    age mix (direct age standardisation), and how much of the raw gap that removes."""
    if gap["grouping"] not in AGE_MIX_GROUPINGS:
        return None
    standardised = (standardised_figure(run.table, gap["grouping"], gap["highest_group"], gap["metric"])
                    - standardised_figure(run.table, gap["grouping"], gap["lowest_group"], gap["metric"]))
    if math.isnan(standardised):
        return None
    metric, raw = gap["metric"], gap["difference"]
    if raw <= 0:
        return None
    if standardised <= 0:
        return (f"At the same age mix the order reverses or vanishes ({show_difference(metric, standardised)}): "
                "the races' different ages account for all of it.")
    share = 1 - standardised / raw
    if share >= 0.1:
        return (f"With both groups given the same age mix the gap is {show_difference(metric, standardised)}: "
                f"about {share:.0%} of it is explained by age mix.")
    if share <= -0.1:
        return (f"With both groups given the same age mix the gap is wider, {show_difference(metric, standardised)}: "
                "age mix hides part of it.")
    return f"Age mix explains little of it (same-age-mix gap {show_difference(metric, standardised)})."


def story_gaps(result: EvaluationResult, limit: int = 6) -> pd.DataFrame:
    """The gaps the summary states: per STORY_METRICS figure, the largest across STORY_GROUPINGS."""
    gaps = result.gaps[result.gaps["metric"].isin(STORY_METRICS) & result.gaps["grouping"].isin(STORY_GROUPINGS)]
    if gaps.empty:
        return gaps
    gaps = gaps[gaps["difference"] > 0]
    if gaps.empty:
        return gaps
    largest = gaps.loc[gaps.groupby("metric", sort=False)["difference"].idxmax()]
    order = {metric: i for i, metric in enumerate(STORY_METRICS)}
    return largest.sort_values("metric", key=lambda m: m.map(order)).head(limit)


def _headline_table(runs: list[Run]) -> Table:
    first = runs[0].result
    metrics = [m for m in HEADLINE if any(m in run.result.overall for run in runs)]
    if len(runs) == 1:
        rows = [[metric_name(m), show(m, first.overall.get(m, np.nan)), show_interval(m, *first.interval(m))]
                for m in metrics]
        return Table(["figure", "estimate", "95% interval"], rows,
                     caption=f"All {first.overall['n']:,} faces.")
    differences = estimator_differences(runs)
    overall = differences[differences["grouping"] == OVERALL[0]].set_index("metric")
    columns = ["figure", *[f"{run.name} (95% interval)" for run in runs]]
    columns += [f"{runs[i].name} − {runs[0].name} (95% interval)" for i in range(1, len(runs))]
    rows = []
    for m in metrics:
        row = [metric_name(m)]
        for run in runs:
            value = run.result.overall.get(m, np.nan)
            row.append(f"{show(m, value)} ({show_interval(m, *run.result.interval(m))})" if not _nan(value) else "–")
        for run in runs[1:]:
            key = overall[overall["estimator"] == run.name] if m in overall.index else None
            if key is None or len(key.loc[[m]]) == 0:
                row.append("–")
            else:
                d = key.loc[[m]].iloc[0]
                row.append(f"{show_difference(m, d['difference'])} ({show_interval(m, d['low'], d['high'], True)})")
        rows.append(row)
    return Table(columns, rows, caption=f"All {first.overall['n']:,} faces, the same photos for every estimator.")


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def estimator_differences(runs: list[Run]) -> pd.DataFrame:
    """Per estimator after the first, per group and figure: its figure minus the first estimator's and
    the 95% interval of that difference (paired: the same resamples of the same photos)."""
    rows = []
    base = runs[0].result
    for run in runs[1:]:
        for key, figures in run.result.replicates.items():
            for metric, values in figures.items():
                reference = base.replicates.get(key, {}).get(metric)
                if reference is None:
                    continue
                point = _point(run.result, key, metric) - _point(base, key, metric)
                low, high = percentile_interval(values - reference)
                rows.append({"estimator": run.name, "grouping": key[0], "group": key[1], "metric": metric,
                             "difference": point, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["estimator", "grouping", "group", "metric", "difference", "low", "high"])


def _point(result: EvaluationResult, key: tuple[str, str], metric: str) -> float:
    if key == OVERALL:
        return float(result.overall.get(metric, np.nan))
    rows = result.by_group[(result.by_group["grouping"] == key[0]) & (result.by_group["group"] == key[1])]
    return float(rows.iloc[0][metric]) if len(rows) and metric in rows else np.nan


def _conclusions(runs: list[Run], context: dict) -> Section:
    result = runs[0].result
    gaps = pd.concat([story_gaps(run.result) for run in runs])
    clear = int((gaps["difference_low"] > 0).sum()) if len(gaps) else 0
    small = sorted({g for run in runs for g in run.result.by_group.loc[
        run.result.by_group["n"] < result.min_group_size, "group"]})
    dataset = context.get("dataset", "the evaluation data")
    should = [
        f"The figures describe {'these estimators' if len(runs) > 1 else 'this model'} on the "
        f"{context.get('split', '')} photos of {dataset} and its labels; on other photos (other cameras, "
        "light, ages, people) they can differ.",
        f"Of the gaps stated above, {clear} of {len(gaps)} have a 95% interval that excludes zero: those are "
        "unlikely to be sampling noise in this set of photos.",
    ]
    if result.resampling == "person":
        should.append("Intervals resample whole people, so several photos of one person count once.")
    should_not = [
        "Do not rank groups whose intervals overlap widely: the order of close groups can flip on another "
        "sample of photos.",
        f"Do not read the figures of groups smaller than {result.min_group_size} faces (greyed in tables and "
        f"charts; {len(small)} such groups here) as findings; they are listed, never compared.",
        "A gap does not say why: age mix, photo quality, pose, light and label noise all differ between "
        "groups. The age-standardised figures separate out age; nothing here separates the rest.",
        "Race and gender are the data set's annotations of apparent race and a binary gender, not people's "
        "own identities; the estimates are statistical guesses about appearance.",
    ]
    return Section("What to conclude, and what not", [
        Section("You can conclude", [should]), Section("You should not conclude", [should_not])])


def _definitions(result: EvaluationResult) -> list[str]:
    return [
        "**accuracy**: share of faces whose label is right. Within a group defined by the same label (race "
        "accuracy within one race) it is that class's recall.",
        "**balanced accuracy** and **macro-F1**: the mean over classes of recall, and of F1 (classes seen in "
        "truth or prediction). Not computed within a group that holds a single true class, where they are "
        "degenerate.",
        f"**calibration error (ECE)**: top-label expected calibration error, the face-weighted mean of |accuracy "
        f"− mean confidence| over {CALIBRATION_BINS} equal-width confidence bins; 0 means the confidence can be "
        "read as a probability of being right.",
        "**age error**: mean absolute difference between estimated and true age, in years; "
        f"**ages within {WITHIN_YEARS} years**: share of estimates at most {WITHIN_YEARS} years off.",
        "**age group right or next group**: share of age-group estimates in the true group or next to it.",
        f"**equalized odds** (gender): the larger of the between-race gaps in true-positive rate (women called "
        f"women) and false-positive rate (men called women), with {POSITIVE_GENDER} as the positive class.",
        "**faces missed**: share of photos on which the estimator found no face; such a photo counts as wrong "
        "for every label.",
        f"**95% interval**: the 2.5th to 97.5th percentile over {result.n_boot:,} bootstrap resamples of the "
        f"{'people' if result.resampling == 'person' else 'faces'} (fairlearn's MetricFrame definition); a "
        "gap's interval is that of the difference between its two named groups.",
    ]


CONTEXT_NAMES = {
    "model": "model", "bundle": "model bundle", "data": "data", "dataset": "data set", "format": "data format",
    "data_taxonomy": "race labels of the data", "model_taxonomy": "race labels of the model",
    "age_mode": "age output", "split": "split", "split_made_by": "how the split was made", "seed": "seed",
    "faces": "faces evaluated", "unreadable_images": "unreadable images", "command": "command",
    "limit": "sample size", "estimators": "estimators", "ground_truth": "ground truth", "unmatched": "unmatched",
}


def _context_table(context: dict) -> Table:
    rows = [[CONTEXT_NAMES.get(key, key.replace("_", " ")), "–" if value is None else
             (f"`{value}`" if key == "command" else value)]
            for key, value in context.items() if key not in ("val_fraction", "test_fraction") and not isinstance(
                value, (dict, list))]
    rows = [[name, format_number(value) if isinstance(value, (int, float)) else value] for name, value in rows]
    return Table(["", ""], rows)


def _group_table(runs: list[Run], grouping: str) -> Table:
    rows_frame = _group_rows(runs, grouping)
    metrics = [m for m in metric_columns(runs[0].result.by_group) if m in rows_frame and rows_frame[m].notna().any()]
    minimum = runs[0].result.min_group_size
    columns = ["group", "faces"] + (["estimator"] if len(runs) > 1 else []) + [metric_name(m) for m in metrics]
    rows, muted = [], []
    for _, row in rows_frame.sort_index(kind="stable").iterrows():
        cells = [row["group"], int(row["n"])] + ([row["estimator"]] if len(runs) > 1 else [])
        for m in metrics:
            value = row[m]
            low, high = row.get(f"{m}_low", np.nan), row.get(f"{m}_high", np.nan)
            cells.append("–" if _nan(value) else show(m, value) + (
                "" if _nan(low) else f" ({show_interval(m, low, high)})"))
        rows.append(cells)
        muted.append(row["n"] < minimum)
    if len(runs) > 1:
        order = sorted(range(len(rows)), key=lambda i: (list(dict.fromkeys(rows_frame["group"])).index(rows[i][0]),))
        rows, muted = [rows[i] for i in order], [muted[i] for i in order]
    return Table(columns, rows, muted=muted,
                 caption=f"Estimate (95% interval). Greyed: fewer than {minimum} faces, listed but not compared.")


def _gaps_table(result: EvaluationResult) -> Table:
    rows = []
    for _, gap in result.gaps.sort_values(["grouping", "difference"], ascending=[True, False]).iterrows():
        metric = gap["metric"]
        rows.append([GROUPING_NAMES.get(gap["grouping"], gap["grouping"]), metric_name(metric),
                     f"{gap['lowest_group']} ({show(metric, gap['lowest'])})",
                     f"{gap['highest_group']} ({show(metric, gap['highest'])})",
                     show_difference(metric, gap["difference"]),
                     show_interval(metric, gap["difference_low"], gap["difference_high"], True),
                     int(gap["groups"])])
    return Table(["grouping", "figure", "lowest group", "highest group", "difference", "95% interval",
                  "groups compared"], rows)


def build_document(runs: list[Run], context: dict) -> Document:
    """The whole report as a Document: summary first, details after."""
    result = runs[0].result
    names = " and ".join(run.name for run in runs)
    title = f"Fairness report: {names} on {context.get('dataset', 'the data')}"
    faces = result.overall["n"]
    intro = [f"{faces:,} faces of the {context.get('split', '')} split of {context.get('dataset', 'the data')}; "
             f"95% intervals from {result.n_boot:,} bootstrap resamples of the "
             f"{'people' if result.resampling == 'person' else 'faces'}. Groups smaller than "
             f"{result.min_group_size} faces are greyed and kept out of the comparisons.",
             "Estimates describe a face's appearance; the truth labels are the data set's annotations. Neither "
             "is a fact about a person's identity."]
    if result.cross_taxonomy:
        note = result.cross_taxonomy
        mapping = ", ".join(f"{k} → {v or 'dropped'}" for k, v in note["mapping"].items())
        if note.get("mapped") == "predictions":
            intro.append(f"The model answers in {note['source']}; its race answers are scored in the data's "
                         f"{note['target']}, each class's probability the sum of its finer ones ({mapping}).")
        else:
            intro.append(f"Truth races were mapped from {note['source']} to the model's {note['target']} ({mapping}): "
                         f"{note['rows_kept']:,} faces kept, {note['rows_dropped']:,} dropped.")
    summary = Section("Summary", [_headline_table(runs)])
    gaps = Section("Reading the gaps", [
        "The largest gap between groups for each main figure (groups of at least "
        f"{result.min_group_size} faces, across race, gender and race × gender):"])
    for run in runs:
        sentences = [_gap_sentence(run, gap) for _, gap in story_gaps(run.result).iterrows()]
        if result.equalized_odds["difference"] is not None and run.result.equalized_odds["difference"] is not None:
            sentences.append(f"The gender estimate's equalized-odds difference across races is "
                             f"{run.result.equalized_odds['difference']:.3f} (the largest between-race gap in how "
                             f"often women are called women, or men are called women).")
        if len(runs) > 1:
            gaps.add(Section(run.name, [sentences or ["No two groups large enough to compare."]]))
        else:
            gaps.add(sentences or ["No two groups large enough to compare."])
    sections = [summary, gaps]
    if len(runs) > 1:
        sections.append(_comparison_section(runs))
    sections.append(_conclusions(runs, context))
    sections += _detail_sections(runs, context)
    return Document(title, sections, intro)


def _comparison_section(runs: list[Run]) -> Section:
    differences = estimator_differences(runs)
    section = Section("Estimators compared, group by group",
                      [f"Each estimator's figure minus {runs[0].name}'s on the same photos, with the 95% interval "
                       "of the difference (paired bootstrap). Bold: the interval excludes zero."])
    minimum = runs[0].result.min_group_size
    for grouping in ("race", "gender", "race x gender"):
        part = differences[(differences["grouping"] == grouping) & differences["metric"].isin(STORY_METRICS)]
        if part.empty:
            continue
        sizes = runs[0].result.by_group[runs[0].result.by_group["grouping"] == grouping].set_index("group")["n"]
        rows, muted = [], []
        for _, d in part.iterrows():
            clear = d["low"] > 0 or d["high"] < 0
            text = f"{show_difference(d['metric'], d['difference'])} ({show_interval(d['metric'], d['low'], d['high'], True)})"
            rows.append([d["group"], int(sizes.get(d["group"], 0)), d["estimator"], metric_name(d["metric"]),
                         f"**{text}**" if clear else text])
            muted.append(sizes.get(d["group"], 0) < minimum)
        section.add(Section(f"By {GROUPING_NAMES[grouping]}", [Table(
            ["group", "faces", "estimator", "figure", f"difference from {runs[0].name} (95% interval)"], rows,
            muted=muted)]))
    return section


def _detail_sections(runs: list[Run], context: dict) -> list[Section]:
    result = runs[0].result
    sections = [Section("About this evaluation", [_context_table(context), *_joins(context)]),
                Section("How each figure is defined", [_definitions(result)])]
    by_group = Section("Figures by group", [])
    charts = {}
    for stem, grouping, metrics, axis_label in CHARTS:
        image = _plot_dots(runs, grouping, metrics, axis_label, f"{stem}.png")
        if image is not None:
            charts.setdefault(grouping, []).append(image)
    for grouping in GROUPING_NAMES:
        if (result.by_group["grouping"] == grouping).any():
            by_group.add(Section(f"By {GROUPING_NAMES[grouping]}", [*charts.get(grouping, []),
                                                                    _group_table(runs, grouping)]))
    sections.append(by_group)
    for run in runs:
        prefix = "" if len(runs) == 1 else f"{_slug(run.name)}_"
        heading = "" if len(runs) == 1 else f" ({run.name})"
        sections.append(Section(f"Gaps between groups{heading}", [
            "For each grouping and figure: the lowest and highest of the groups large enough to compare, their "
            "difference and its 95% interval.", _gaps_table(run.result)]))
        sections.append(_calibration_section(run, prefix, heading))
        sections.append(_confusion_section(run, prefix, heading))
        sections.append(_age_section(run, prefix, heading))
        sections.append(_odds_section(run.result, heading))
        sections.append(_coverage_section(run.result, heading))
    return [s for s in sections if s.blocks]


def _coverage_section(result: EvaluationResult, heading: str) -> Section:
    """Per head, the share of each group's faces still answered at each confidence threshold, and how
    often those answers are right: which groups lose their answers first as the bar rises."""
    section = Section(f"Answers kept at each confidence threshold{heading}", [])
    coverage = result.coverage
    if coverage.empty:
        return section
    section.add("A head answers \"uncertain\" where its top probability is below the threshold. Each cell: the "
                "share of the group's faces still answered, then the accuracy of those answers (the default "
                "thresholds are " + describe_thresholds() + ").")
    for head, part in coverage.groupby("head", sort=False):
        thresholds = sorted(part["threshold"].unique())
        rows = []
        for (grouping, group), cells in part.groupby(["grouping", "group"], sort=False):
            by_threshold = cells.set_index("threshold")
            rows.append([group if grouping == "overall" else f"{GROUPING_NAMES.get(grouping, grouping)}: {group}",
                         int(by_threshold["faces"].iloc[0]),
                         *[_kept(by_threshold.loc[t]) for t in thresholds]])
        section.add(Section(_head_name(head).capitalize(), [Table(
            ["group", "faces", *[f"at {t:.0%}" for t in thresholds]], rows)]))
    return section


def _kept(cell: pd.Series) -> str:
    """A coverage cell: share answered (accuracy of the answers)."""
    return f"{cell['coverage']:.0%} ({show('gender_accuracy', cell['answered_accuracy'])})"


def _joins(context: dict) -> list:
    """How an audit's prediction files were joined to the ground truth: matched, unmatched, mapped."""
    if not context.get("joins"):
        return []
    rows, notes = [], []
    for note in context["joins"]:
        rows.append([note["estimator"], note["prediction_rows"], note["matched"], note["unmatched_rows"],
                     note["truth_without_prediction"], note["duplicate_rows_dropped"], note.get("not_in_every_file", 0)])
        if note["unmatched_examples"]:
            notes.append(f"{note['estimator']}: rows matching no ground-truth photo, e.g. "
                         + ", ".join(f"`{p}`" for p in note["unmatched_examples"]))
        mapping = note.get("race_mapping")
        if mapping and mapping.get("mapping"):
            pairs = ", ".join(f"{k} → {v or 'no counterpart (counted wrong)'}" for k, v in mapping["mapping"].items())
            notes.append(f"{note['estimator']}: races compared in {mapping['compared_in']} ({mapping['tool']} "
                         f"predictions, {mapping['truth']} truth): {pairs}.")
    return ["How each predictions file was joined to the ground truth (by photo path, relative path or file "
            "name). Only photos present in every file are compared.",
            Table(["estimator", "rows", "matched", "unmatched rows", "truth photos without a row",
                   "duplicate rows dropped", "left out (not in every file)"], rows), *([notes] if notes else [])]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def _calibration_section(run: Run, prefix: str, heading: str) -> Section:
    result = run.result
    section = Section(f"Calibration{heading}", [])
    heads = list(dict.fromkeys(result.calibration["head"])) if len(result.calibration) else []
    if not heads:
        return section
    section.add("Is the confidence an estimate gives a fair guide to how often it is right, in every group? "
                "Each panel plots accuracy against confidence in equal-width bins; grey panels are groups too "
                "small to read.")
    for head in heads:
        section.add(_plot_reliability_panels(result, head, f"{prefix}reliability_{head}.png"))
    return section


def _confusion_section(run: Run, prefix: str, heading: str) -> Section:
    section = Section(f"Confusion matrices{heading}", [])
    for head, matrix in run.result.confusion.items():
        rows = [[label, *[float(v) for v in values]] for label, values in zip(matrix.index, matrix.to_numpy())]
        section.add(Section(_head_name(head).capitalize(), [
            _plot_confusion(matrix, head, f"{prefix}confusion_{head}.png"),
            Table(["true \\ predicted", *map(str, matrix.columns)], [[r[0], *[round(v, 3) for v in r[1:]]]
                                                                      for r in rows],
                  caption="Rows: true class; each row sums to 1 over the predicted classes.")]))
    return section


def _age_section(run: Run, prefix: str, heading: str) -> Section:
    result, table = run.result, run.table
    section = Section(f"Age mix: raw and age-standardised figures by race{heading}", [])
    standardised = result.age_standardised
    if len(standardised.by_race):
        section.add("Each race's figure re-weighted to the whole set's age-group mix: what remains between "
                    "races is not an age effect.")
        rows = [[r["race"], metric_name(r["metric"]), int(r["n"]), show(r["metric"], r["raw"]),
                 show(r["metric"], r["standardised"]), f"{r['reference_covered']:.0%}"]
                for _, r in standardised.by_race.iterrows()]
        section.add(Table(["race", "figure", "faces", "raw", "age-standardised", "age mix covered"], rows))
        section.add([reading for reading in standardised.gaps["reading"]])
    if "pred_age_years" in table and table[["age_years", "pred_age_years"]].notna().all(axis=1).any():
        section.add(_plot_age_errors(table, f"{prefix}age_errors.png"))
    return section


def _odds_section(result: EvaluationResult, heading: str) -> Section:
    odds = result.equalized_odds
    section = Section(f"Gender estimate: equalized odds across races{heading}", [])
    if odds["difference"] is None:
        return section
    section.add(f"Positive class {odds['positive_label']}; equalized-odds difference {odds['difference']:.3f} "
                f"(races of at least {odds['min_group_size']} faces).")
    section.add(Table(["race", "faces", "true-positive rate (women called women)",
                       "false-positive rate (men called women)"],
                      [[r["race"], int(r["n"]), f"{100 * r['true_positive_rate']:.1f}%",
                        f"{100 * r['false_positive_rate']:.1f}%"] for r in odds["by_race"]]))
    return section
