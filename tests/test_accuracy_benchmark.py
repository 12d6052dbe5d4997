"""benchmarks/accuracy.py's bootstrap intervals, on crafted predictions with hand-computed figures."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"


@pytest.fixture(scope="module")
def accuracy():
    spec = importlib.util.spec_from_file_location("accuracy_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gap_between_groups_is_highest_minus_lowest_rate(accuracy):
    correct = np.array([1, 1, 0, 1, 0, 0, 1, 1], dtype=float)
    group = np.array([0, 0, 0, 1, 1, 1, 3, 3], dtype=float)  # group 2 absent: not a group with rate 0
    assert accuracy.gap_between_groups(correct, group) == pytest.approx(1.0 - 1 / 3)


def test_intervals_bracket_the_figures(accuracy):
    n = 400
    races = np.array(["White", "Black"] * (n // 2))
    gender = np.array(["Female"] * n)
    pred_gender = gender.copy()
    pred_gender[:40:2] = "Male"  # 20 White faces wrong: White 0.9, Black 1.0, overall 0.95
    predictions = pd.DataFrame({
        "gender": gender, "pred_gender": pred_gender, "race": races, "pred_race": races,
        "age_years": np.full(n, 30.0), "pred_age_years": np.full(n, 32.5),
    })
    spans = accuracy.intervals(predictions)
    low, high = spans["gender_accuracy"]
    assert low < 0.95 < high and high - low < 0.06
    assert spans["race_accuracy"] == pytest.approx((1.0, 1.0))
    assert spans["age_mae"] == pytest.approx((2.5, 2.5))
    low, high = spans["gender_accuracy_gap_between_races"]
    assert low < 0.1 < high
