"""benchmarks/accuracy.py's figures and intervals (facescope.evaluation.metrics' own), on crafted predictions
with hand-computed figures."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def accuracy():
    return load_benchmark("accuracy")


def test_intervals_bracket_the_figures_and_targets_are_judged(accuracy):
    n = 400
    races = np.array(["White", "Black"] * (n // 2))
    gender = np.array(["Female", "Female", "Male", "Male"] * (n // 4))
    pred_gender = gender.copy()
    pred_gender[:80:4] = "Male"  # 20 White women wrong: White 0.9, Black 1.0, overall 0.95; women 0.9, men 1.0
    predictions = pd.DataFrame({
        "gender": gender, "pred_gender": pred_gender, "race": races, "pred_race": races,
        "age_years": np.full(n, 30.0), "pred_age_years": np.full(n, 32.5), "age_bin": "30-39", "pred_age_bin": "30-39",
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
    assert "target" not in gap  # a figure without a target for UTKFace is reported, not judged
    assert summary["by_race"]["White"] == {"n": 200, "gender_accuracy": 0.9, "race_accuracy": 1.0, "age_bin_accuracy": 1.0,
                                           "age_mae": 2.5}
    lowest = figures["lowest_race_gender_accuracy"]
    assert (lowest["value"], lowest["group"]) == (0.9, "White") and lowest["interval_95"][0] < 0.9 < lowest["interval_95"][1]
    adults = accuracy.summarise(predictions, "fairface")["figures"]["adult_gender_gap_between_women_and_men"]
    assert (adults["value"], adults["lowest_group"], adults["highest_group"]) == (pytest.approx(0.1), "Female", "Male")
    assert adults["met"] is False and adults["interval_95"][0] < 0.1 < adults["interval_95"][1]
    # A data set without races or ages (LFW) gets only the figures its labels allow.
    lfw = accuracy.summarise(predictions.assign(race=None, age_years=np.nan, age_bin=None), "lfw")
    assert set(lfw["figures"]) == {"gender_accuracy", "gender_balanced_accuracy"}
    assert lfw["figures"]["gender_balanced_accuracy"]["met"] is False  # target 0.985


def test_the_adult_gap_is_what_an_evaluation_of_the_adults_alone_gives(accuracy, monkeypatch):
    """The adult women/men gap comes from the one table's adult rows (metrics.gaps_within), not from a
    second evaluation, and is exactly what `evaluate` of those rows gives: the figure and its interval.
    Children, whose gender is worse told for boys here, are left out of it."""
    from facescope.evaluation.metrics import evaluate

    rng = np.random.default_rng(3)
    n = 600
    gender = rng.choice(["Female", "Male"], n)
    age_bin = rng.choice(["3-9", "20-29", "50-59"], n)
    wrong = rng.random(n) < np.where(age_bin == "3-9", np.where(gender == "Male", 0.4, 0.05),
                                     np.where(gender == "Male", 0.08, 0.03))
    predictions = pd.DataFrame({
        "gender": gender, "pred_gender": np.where(wrong, np.where(gender == "Male", "Female", "Male"), gender),
        "race": "White", "pred_race": "White", "age_years": np.nan, "age_bin": age_bin, "pred_age_bin": age_bin,
    })
    evaluated = []

    def counted(table, **options):
        evaluated.append(len(table))
        return evaluate(table, **options)

    monkeypatch.setattr(accuracy, "evaluate", counted)
    figure = accuracy.summarise(predictions, "fairface")["figures"]["adult_gender_gap_between_women_and_men"]
    assert evaluated == [n]  # one evaluation, of every face
    adults = predictions[predictions["age_bin"] != "3-9"]
    gap = evaluate(adults, n_boot=accuracy.RESAMPLES).gaps.set_index(["grouping", "metric"]).loc[
        ("gender", "gender_accuracy")]
    assert figure["value"] == round(gap["difference"], 4) > 0
    assert figure["interval_95"] == [round(gap["difference_low"], 4), round(gap["difference_high"], 4)]
    assert (figure["lowest_group"], figure["lowest"]) == ("Male", round(gap["lowest"], 4))
    women, men = (1 - wrong[(age_bin != "3-9") & (gender == g)].mean() for g in ("Female", "Male"))
    assert figure["value"] == pytest.approx(women - men, abs=5e-5)
