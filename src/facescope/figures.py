"""Every figure's name, unit and direction, defined once: the evaluation report, the model card, the
audit and the web page's card show figures through these functions, so a figure reads the same
everywhere and a new head's figures need no entry of their own (`<head>_<metric>` is named from its
parts). No pandas, no scikit-learn: the server imports this through the model card.

Keys are the evaluation's (facescope.evaluation.metrics): `<head>_<metric>` (gender_accuracy,
race_ece, age_bin_one_off_accuracy, ...), age_mae, age_within_<years>, detection_missed_rate, n.
"""

from __future__ import annotations

import math

WITHIN_YEARS = 5  # "ages within N years": the share of age estimates at most this far off
LOWER_IS_BETTER = ("_ece", "_mae", "_missed_rate")  # figure name endings where a smaller value is the better one
HEAD_NAMES = {"gender": "gender", "race": "race", "age_bin": "age group"}
METRIC_NAMES = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
    "ece": "calibration error (ECE)", "one_off_accuracy": "right or next group",
}
SPECIAL_NAMES = {"n": "faces", "age_mae": "age error (years, mean absolute)",
                 f"age_within_{WITHIN_YEARS}": f"ages within {WITHIN_YEARS} years",
                 "detection_missed_rate": "missed-face rate"}

# The groupings' names, in the order reports show them (facescope.evaluation.metrics.GROUPINGS' keys).
GROUPING_NAMES = {"race": "race", "gender": "gender", "age_bin": "age group", "race x gender": "race × gender",
                  "race x age_bin": "race × age group", "age_bin x gender": "age group × gender"}


def metric_name(metric: str) -> str:
    """A figure's readable name: gender_accuracy -> "gender accuracy"."""
    if metric in SPECIAL_NAMES:
        return SPECIAL_NAMES[metric]
    for head, head_name in HEAD_NAMES.items():
        if metric.startswith(head + "_") and metric.removeprefix(head + "_") in METRIC_NAMES:
            return f"{head_name} {METRIC_NAMES[metric.removeprefix(head + '_')]}"
    return metric.replace("_", " ")


def is_share(metric: str) -> bool:
    """Figures shown as percentages (their differences in percentage points)."""
    return metric != "n" and not metric.endswith(("_ece", "_mae"))


def _digits(metric: str) -> int:
    """Decimals a figure is shown to: shares to 0.1 percentage point, years to 2, calibration errors to 3."""
    return 1 if is_share(metric) else (2 if metric.endswith("_mae") else 3)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def show(metric: str, value: float | None) -> str:
    """A figure as text: shares as percentages, years to 2 decimals, calibration errors to 3, counts whole."""
    if _missing(value):
        return "–"
    if isinstance(value, str):  # a figure the evaluation recorded as text
        return value
    if metric == "n":
        return f"{int(value):,}"
    if is_share(metric):
        return f"{100 * value:.{_digits(metric)}f}%"
    return f"{value:.{_digits(metric)}f}"


def show_difference(metric: str, value: float | None) -> str:
    """A difference between two groups' figures: percentage points, years, or a plain number."""
    if _missing(value):
        return "–"
    if is_share(metric):
        return f"{100 * value:.{_digits(metric)}f} points"
    return f"{value:.{_digits(metric)}f}" + (" years" if metric.endswith("_mae") else "")


def _fixed(value: float, digits: int) -> str:
    """A number to `digits` decimals, never "-0.0"."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def show_interval(metric: str, low: float | None, high: float | None, difference: bool = False) -> str:
    """A 95% interval: "81.2% – 85.0%" for a figure; "1.2 to 4.5" (points, years) for a difference."""
    if _missing(low) or _missing(high):
        return "–"
    if difference:
        scale = 100 if is_share(metric) else 1
        return f"{_fixed(scale * low, _digits(metric))} to {_fixed(scale * high, _digits(metric))}"
    return f"{show(metric, low)} – {show(metric, high)}"
