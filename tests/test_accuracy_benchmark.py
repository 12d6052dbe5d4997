"""benchmarks/accuracy.py's bootstrap intervals, on crafted predictions with hand-computed figures."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def accuracy():
    return load_benchmark("accuracy")


def test_gap_between_groups_is_highest_minus_lowest_rate(accuracy):
    correct = np.array([1, 1, 0, 1, 0, 0, 1, 1], dtype=float)
    group = np.array([0, 0, 0, 1, 1, 1, 3, 3], dtype=float)  # group 2 absent: not a group with rate 0
    assert accuracy.gap_between_groups(correct, group) == pytest.approx(1.0 - 1 / 3)


def test_intervals_bracket_the_figures_and_targets_are_judged(accuracy):
    n = 400
    races = np.array(["White", "Black"] * (n // 2))
    gender = np.array(["Female", "Female", "Male", "Male"] * (n // 4))
    pred_gender = gender.copy()
    pred_gender[:80:4] = "Male"  # 20 White women wrong: White 0.9, Black 1.0, overall 0.95; women 0.9, men 1.0
    predictions = pd.DataFrame({
        "gender": gender, "pred_gender": pred_gender, "race": races, "pred_race": races,
        "age_years": np.full(n, 30.0), "pred_age_years": np.full(n, 32.5),
    })
    summary = accuracy.summarise(predictions, "utkface")
    figures = summary["figures"]
    low, high = figures["gender_accuracy"]["interval_95"]
    assert figures["gender_accuracy"]["value"] == 0.95 and low < 0.95 < high and high - low < 0.06
    assert figures["gender_accuracy"]["met"] is True  # target 0.950
    assert figures["gender_balanced_accuracy"]["value"] == pytest.approx((0.9 + 1.0) / 2)
    assert figures["race_accuracy"]["interval_95"] == pytest.approx([1.0, 1.0])
    assert figures["age_mae"]["interval_95"] == pytest.approx([2.5, 2.5]) and figures["age_mae"]["met"] is True
    gap = figures["gender_accuracy_gap_between_races"]
    assert gap["value"] == pytest.approx(0.1) and gap["interval_95"][0] < 0.1 < gap["interval_95"][1]
    assert gap["met"] is False  # target at most 0.03
    assert summary["by_race"]["White"] == {"n": 200, "gender_accuracy": 0.9, "race_accuracy": 1.0, "age_mae": 2.5}
    # A data set without races or ages (LFW) gets only the figures its labels allow.
    lfw = accuracy.summarise(predictions.assign(race=None, age_years=np.nan), "lfw")
    assert set(lfw["figures"]) == {"gender_accuracy", "gender_balanced_accuracy"}
    assert lfw["figures"]["gender_balanced_accuracy"]["met"] is False  # target 0.985
