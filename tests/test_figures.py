"""Figures as every report shows them: shares as percentages (differences in points), years to 2
decimals, calibration errors to 3, counts whole."""

from __future__ import annotations

from facescope.figures import show, show_difference, show_interval


def test_each_kind_of_figure_keeps_its_decimals_everywhere():
    assert (show("gender_accuracy", 0.12345), show_difference("gender_accuracy", 0.0234),
            show_interval("gender_accuracy", 0.1, 0.2), show_interval("gender_accuracy", -0.0004, 0.0234, True)) == (
        "12.3%", "2.3 points", "10.0% – 20.0%", "0.0 to 2.3")
    assert (show("age_mae", 4.567), show_difference("age_mae", 1.234), show_interval("age_mae", 1.0, 2.0, True)) == (
        "4.57", "1.23 years", "1.00 to 2.00")
    assert (show("race_ece", 0.0456), show_difference("race_ece", 0.01), show_interval("race_ece", 0.01, 0.02)) == (
        "0.046", "0.010", "0.010 – 0.020")
    assert show("n", 1234.0) == "1,234"
    assert show("age_mae", None) == show_difference("age_mae", float("nan")) == show_interval("age_mae", None, 1) == "–"
