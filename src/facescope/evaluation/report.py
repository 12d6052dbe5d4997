"""The report folder of an evaluation: report.md, metrics.json, predictions.csv and the figures (PNG).

Figures are drawn on matplotlib Figures with the Agg canvas directly, never through pyplot, so writing
a report changes no global matplotlib state (backend, open figures) of the program that calls it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from facescope.evaluation.metrics import CALIBRATION_BINS, HEADS, EvaluationResult, metric_columns

ACCURACIES = ["gender_accuracy", "race_accuracy", "age_bin_accuracy"]
LOWER_IS_BETTER = ("_ece", "_mae")  # figure name endings where a smaller value is the better one


def write_report(result: EvaluationResult, table: pd.DataFrame, folder: Path, context: dict) -> Path:
    """Write the report folder for `result` (computed from the predictions `table`); `context` says what
    was evaluated (model, data, split) and heads report.md and metrics.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = _write_figures(result, table, folder)
    metrics = {"context": context, **result.to_dict()}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
    table.to_csv(folder / "predictions.csv", index=False)
    (folder / "report.md").write_text(_markdown(result, context, figures))
    return folder


def summary_lines(result: EvaluationResult) -> list[str]:
    """A few lines for the terminal: the overall figures, and the worst and best race for gender accuracy."""
    overall = result.overall
    shown = [("gender accuracy", "gender_accuracy"), ("race accuracy", "race_accuracy"),
             ("age-bin accuracy", "age_bin_accuracy"), ("age MAE (years)", "age_mae")]
    figures = ", ".join(f"{name} {overall[key]:.3f}" for name, key in shown if key in overall)
    lines = [f"{overall['n']} faces: {figures}"]
    by_race = result.by_group[result.by_group["grouping"] == "race"].set_index("group")
    compared = by_race[by_race["n"] >= result.min_group_size]["gender_accuracy"].dropna()
    if len(compared) >= 2:
        worst, best = compared.idxmin(), compared.idxmax()
        lines.append(f"gender accuracy by race: worst {worst} {compared[worst]:.3f} (n={by_race.loc[worst, 'n']}), "
                     f"best {best} {compared[best]:.3f} (n={by_race.loc[best, 'n']}), "
                     f"gap {compared[best] - compared[worst]:.3f}")
    else:
        lines.append("gender accuracy by race: fewer than two races with at least "
                     f"{result.min_group_size} faces to compare")
    if result.equalized_odds["difference"] is not None:
        lines.append("equalized-odds difference of the gender head across races: "
                     f"{result.equalized_odds['difference']:.3f}")
    return lines


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> str:
    figure.savefig(path, dpi=110)
    return path.name


def _plot_confusion(matrix: pd.DataFrame, head: str, path: Path) -> str:
    figure = _new_figure(1.6 + 0.7 * len(matrix.columns), 1.4 + 0.6 * len(matrix.index))
    axes = figure.add_subplot()
    image = axes.imshow(matrix.to_numpy(), vmin=0, vmax=1, cmap="Blues")
    axes.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    axes.set_yticks(range(len(matrix.index)), matrix.index)
    for (row, column), value in np.ndenumerate(matrix.to_numpy()):
        axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                  color="white" if value > 0.5 else "black")
    axes.set(xlabel="predicted", ylabel="true", title=f"{head}: confusion, share of each true class")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return _save(figure, path)


def _plot_reliability(bins: pd.DataFrame, head: str, ece: float, path: Path) -> str:
    figure = _new_figure(4.5, 4.2)
    axes = figure.add_subplot()
    filled = bins[bins["n"] > 0]
    axes.bar(filled["lower"], filled["accuracy"], width=filled["upper"] - filled["lower"], align="edge",
             edgecolor="black", alpha=0.7, label="accuracy")
    axes.plot(filled["mean_confidence"], filled["accuracy"], "o", color="black",
              label="accuracy at the bin's mean confidence")
    axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="top-label confidence", ylabel="accuracy",
             title=f"{head}: reliability (ECE {ece:.3f})")
    axes.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def _plot_groups(groups: pd.DataFrame, metrics: list[str], title: str, ylabel: str, min_group_size: int,
                 path: Path) -> str:
    """Grouped bars, one group a slot; groups too small to be compared are pale and hatched."""
    figure = _new_figure(max(5.0, 0.55 * len(groups) * len(metrics) + 1.5), 4.2)
    axes = figure.add_subplot()
    width = 0.8 / len(metrics)
    small = (groups["n"] < min_group_size).to_numpy()
    for i, metric in enumerate(metrics):
        bars = axes.bar(np.arange(len(groups)) + i * width, groups[metric], width, label=metric)
        for bar, is_small in zip(bars, small):
            if is_small:
                bar.set(alpha=0.35, hatch="//")
    axes.set_xticks(np.arange(len(groups)) + width * (len(metrics) - 1) / 2,
                    [f"{g}\nn={n}" for g, n in zip(groups["group"], groups["n"])], rotation=45, ha="right", fontsize=8)
    axes.set(ylabel=ylabel, title=f"{title} (hatched: n < {min_group_size}, not compared)")
    if len(metrics) > 1:
        axes.legend(fontsize=8)
    return _save(figure, path)


def _plot_age_errors(table: pd.DataFrame, path: Path) -> str:
    rows = table.dropna(subset=["age_years", "pred_age_years"])
    figure = _new_figure(9, 4)
    scatter, histogram = figure.subplots(1, 2)
    scatter.scatter(rows["age_years"], rows["pred_age_years"], s=6, alpha=0.4)
    top = max(rows["age_years"].max(), rows["pred_age_years"].max())
    scatter.plot([0, top], [0, top], "--", color="grey")
    scatter.set(xlabel="true age (years)", ylabel="estimated age (years)", title="estimated vs true age")
    histogram.hist(rows["pred_age_years"] - rows["age_years"], bins=40)
    histogram.set(xlabel="estimated - true age (years)", ylabel="faces", title="age errors")
    return _save(figure, path)


def _write_figures(result: EvaluationResult, table: pd.DataFrame, folder: Path) -> dict[str, str]:
    """Every PNG of the report: a name for the report's sections -> its file name."""
    figures = {}
    for head, matrix in result.confusion.items():
        figures[f"confusion_{head}"] = _plot_confusion(matrix, head, folder / f"confusion_{head}.png")
    for head, bins in result.calibration.groupby("head", sort=False):
        figures[f"reliability_{head}"] = _plot_reliability(bins, head, result.overall[f"{head}_ece"],
                                                           folder / f"reliability_{head}.png")
    by_group = {grouping: rows for grouping, rows in result.by_group.groupby("grouping", sort=False)}
    accuracies = [m for m in ACCURACIES if m in result.by_group]
    for grouping in ("race", "race x gender"):
        name = f"accuracy_by_{grouping.replace(' ', '_')}"
        figures[name] = _plot_groups(by_group[grouping], accuracies, f"accuracy by {grouping}", "accuracy",
                                     result.min_group_size, folder / f"{name}.png")
    if "age_mae" in result.by_group:
        for grouping in ("race", "age_bin"):
            name = f"age_mae_by_{grouping}"
            figures[name] = _plot_groups(by_group[grouping], ["age_mae"], f"age MAE by {grouping}", "years",
                                         result.min_group_size, folder / f"{name}.png")
        figures["age_errors"] = _plot_age_errors(table, folder / "age_errors.png")
    return figures


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return "–" if value is None else str(value)


def _table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _markdown(result: EvaluationResult, context: dict, figures: dict[str, str]) -> str:
    def image(name: str) -> str:
        return f"![{name}]({figures[name]})\n" if name in figures else ""

    parts = [f"# Evaluation of {context['model']}\n",
             "| | |\n|---|---|\n" + "".join(f"| {key} | {_cell(value)} |\n" for key, value in context.items()),
             "Estimates describe a face's appearance; the truth labels are the dataset's annotations. "
             "Neither is a fact about a person's identity.\n"]
    if result.cross_taxonomy:
        note = result.cross_taxonomy
        parts.append(f"Truth races were mapped from {note['source']} to the model's {note['target']}: "
                     f"{note['rows_kept']} faces kept, {note['rows_dropped']} dropped "
                     f"({note['dropped_by_race'] or 'none'}); mapping {note['mapping']}.\n")
    overall = pd.DataFrame(list(result.overall.items()), columns=["figure", "value"], dtype=object)
    parts += ["## Overall\n", _table(overall)]

    parts.append("## Confusion matrices\n\nRows: true class; each row sums to 1 over the predicted classes.\n")
    for head, matrix in result.confusion.items():
        parts += [f"### {head}\n", _table(matrix.reset_index(names="true \\ predicted")), image(f"confusion_{head}")]

    parts.append("## Calibration\n\nTop-label expected calibration error over "
                 f"{CALIBRATION_BINS} equal-width confidence bins.\n")
    for head in HEADS:
        bins = result.calibration[(result.calibration["head"] == head) & (result.calibration["n"] > 0)]
        if len(bins):
            parts += [f"### {head}: ECE {result.overall[f'{head}_ece']:.3f}\n", _table(bins.drop(columns="head")),
                      image(f"reliability_{head}")]

    parts.append(f"## By group\n\nGroups of fewer than {result.min_group_size} faces are listed but not compared "
                 "in the gaps.\n")
    for grouping, groups in result.by_group.groupby("grouping", sort=False):
        parts += [f"### by {grouping}\n", _table(groups[["group", "n", *metric_columns(groups)]])]
    parts += [image("accuracy_by_race"), image("accuracy_by_race_x_gender"), image("age_mae_by_race"),
              image("age_mae_by_age_bin"), image("age_errors")]

    parts += ["## Gaps across groups\n", _table(result.gaps)]
    odds = result.equalized_odds
    parts.append(f"## Equalized odds of the gender head across races\n\nPositive label {odds['positive_label']}; "
                 f"difference {_cell(odds['difference'])} (the larger of the between-race gaps in true- and "
                 f"false-positive rate, races of at least {odds['min_group_size']} faces).\n")
    if odds["by_race"]:
        parts.append(_table(pd.DataFrame(odds["by_race"])))

    standardised = result.age_standardised
    parts += ["## Age-standardised figures by race\n",
              "Each race's figure re-weighted to the whole evaluation set's age-bin mix:\n",
              _table(standardised.reference.rename_axis("age bin").reset_index()),
              _table(standardised.by_race), _table(standardised.gaps.drop(columns="reading"))]
    parts += ["## Reading the gaps\n", *_reading(result)]
    return "\n".join(parts)


def _reading(result: EvaluationResult) -> list[str]:
    """The short text under "Reading the gaps": what the numbers mean, then the largest gaps in words."""
    lines = [
        "The difference is the highest group's figure minus the lowest's; the ratio is lowest / highest, so 1 "
        "means parity. For error figures (ECE, MAE) the lower value is the better one. Only groups of at least "
        f"{result.min_group_size} faces are compared; smaller groups are listed above but their figures are too "
        "noisy to rank, and no figure here carries a confidence interval, so small gaps may be chance.",
        "Within a group that holds a single true class (the gender head by gender, the race head by race) the "
        "head's accuracy is that class's recall, and its macro-F1 and balanced accuracy are degenerate: read "
        "accuracy there.",
    ]
    for grouping in ("race", "race x gender"):
        for metric in ("gender_accuracy", "race_accuracy", "age_mae"):
            gap = result.gaps[(result.gaps["grouping"] == grouping) & (result.gaps["metric"] == metric)]
            if len(gap):
                row = gap.iloc[0]
                worst, best = (("highest", "lowest") if metric.endswith(LOWER_IS_BETTER) else ("lowest", "highest"))
                lines.append(f"- {metric} by {grouping}: worst {row[f'{worst}_group']} ({row[worst]:.3f}), best "
                             f"{row[f'{best}_group']} ({row[best]:.3f}); difference {row['difference']:.3f}, "
                             f"ratio {_cell(row['ratio'])}, over {row['groups']} groups.")
    if result.equalized_odds["difference"] is not None:
        lines.append(f"- The gender head's equalized-odds difference across races is "
                     f"{result.equalized_odds['difference']:.3f}: the largest between-race gap in how often women "
                     "are called women (true-positive rate) or men are called women (false-positive rate).")
    lines += [f"- {reading}" for reading in result.age_standardised.gaps["reading"]]
    return [line + "\n" for line in lines]
