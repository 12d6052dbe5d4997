"""Evaluation: hand-computed figures on a crafted predictions table, and `facescope evaluate` end to end
on real UTKFace crops."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import equalized_odds_difference

from facescope import labels
from facescope.evaluation.metrics import evaluate, expected_calibration_error, map_truth_races

# 12 faces: White (4 Female, 2 Male) and Black (3 Female, 3 Male). The age error depends only on the
# age (2 years in 20-29, 8 years in 60-69) while White faces are mostly young and Black faces mostly old,
# so the raw age-MAE gap between races is entirely an age-mix effect.
#        race     gender    pred_gender pred_race  age  pred_age  pred_age_bin
ROWS = [
    ("White", "Female", "Female", "White", 25, 27, "20-29"),
    ("White", "Female", "Female", "White", 22, 20, "20-29"),
    ("White", "Female", "Female", "White", 28, 30, "30-39"),
    ("White", "Female", "Male", "Asian", 65, 57, "50-59"),
    ("White", "Male", "Male", "White", 24, 26, "20-29"),
    ("White", "Male", "Male", "Black", 21, 23, "20-29"),
    ("Black", "Female", "Female", "Black", 26, 24, "20-29"),
    ("Black", "Female", "Male", "Black", 61, 69, "60-69"),
    ("Black", "Female", "Male", "White", 63, 55, "40-49"),  # the bin head is separate: two bins off
    ("Black", "Male", "Male", "Black", 66, 58, "50-59"),
    ("Black", "Male", "Male", "Black", 68, 76, "70+"),
    ("Black", "Male", "Male", "Black", 60, 68, "60-69"),
]
# Top-label confidences: gender 0.9, race 0.7, age bin 0.5, the rest spread evenly.
GENDER_CONFIDENCE, RACE_CONFIDENCE, AGE_BIN_CONFIDENCE = 0.9, 0.7, 0.5


def _probabilities(head: str, predicted: str, choices: tuple[str, ...], confidence: float) -> dict[str, float]:
    rest = (1 - confidence) / (len(choices) - 1)
    return {f"p_{head}_{label}": confidence if label == predicted else rest for label in choices}


def crafted_table() -> pd.DataFrame:
    rows = []
    for race, gender, pred_gender, pred_race, age, pred_age, pred_age_bin in ROWS:
        rows.append({
            "gender": gender, "race": race, "age_years": float(age), "age_bin": labels.age_to_bin(age),
            "pred_gender": pred_gender, "pred_race": pred_race, "pred_age_years": float(pred_age),
            "pred_age_bin": pred_age_bin,
            **_probabilities("gender", pred_gender, labels.GENDERS, GENDER_CONFIDENCE),
            **_probabilities("race", pred_race, labels.UTKFACE5.labels, RACE_CONFIDENCE),
            **_probabilities("age_bin", pred_age_bin, labels.AGE_BIN_LABELS, AGE_BIN_CONFIDENCE),
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def result():
    # Groups of 3 or more are compared: White x Male (2 faces) is listed but left out of gaps.
    return evaluate(crafted_table(), min_group_size=3)


def _figure(result, grouping: str, group: str, metric: str) -> float:
    rows = result.by_group[(result.by_group["grouping"] == grouping) & (result.by_group["group"] == group)]
    assert len(rows) == 1
    return rows.iloc[0][metric]


def _gap(result, grouping: str, metric: str) -> pd.Series:
    rows = result.gaps[(result.gaps["grouping"] == grouping) & (result.gaps["metric"] == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_gender_head_overall_figures(result):
    # Truth Female 7 (4 predicted Female), Male 5 (all predicted Male): 9 of 12 right.
    assert result.overall["n"] == 12
    assert result.overall["gender_accuracy"] == pytest.approx(9 / 12)
    assert result.overall["gender_balanced_accuracy"] == pytest.approx((4 / 7 + 5 / 5) / 2)
    # F1(Female) = 2*4 / (2*4 + 0 FP + 3 FN) = 8/11; F1(Male) = 2*5 / (2*5 + 3 FP + 0 FN) = 10/13.
    assert result.overall["gender_macro_f1"] == pytest.approx((8 / 11 + 10 / 13) / 2)
    confusion = result.confusion["gender"]
    assert list(confusion.index) == ["Female", "Male"] and list(confusion.columns) == ["Female", "Male"]
    assert confusion.loc["Female", "Female"] == pytest.approx(4 / 7)
    assert confusion.loc["Female", "Male"] == pytest.approx(3 / 7)
    assert confusion.loc["Male", "Female"] == 0 and confusion.loc["Male", "Male"] == 1


def test_race_head_counts_a_label_only_ever_predicted(result):
    # White: 4 of 6 right (one called Asian, one Black); Black: 5 of 6 (one called White).
    assert result.overall["race_accuracy"] == pytest.approx(9 / 12)
    assert result.overall["race_balanced_accuracy"] == pytest.approx((4 / 6 + 5 / 6) / 2)
    # Macro-F1 over White, Black and the never-true Asian: (8/11 + 10/12 + 0) / 3.
    assert result.overall["race_macro_f1"] == pytest.approx((8 / 11 + 10 / 12 + 0) / 3)
    confusion = result.confusion["race"]
    assert list(confusion.index) == ["White", "Black"]  # true classes present, in the model's order
    assert list(confusion.columns) == list(labels.UTKFACE5.labels)
    assert confusion.loc["White"].tolist() == pytest.approx([4 / 6, 1 / 6, 1 / 6, 0, 0])
    assert confusion.loc["Black", "White"] == pytest.approx(1 / 6)


def test_age_figures(result):
    # Six errors of 2 years, six of 8.
    assert result.overall["age_mae"] == pytest.approx(5.0)
    assert result.overall["age_within_5"] == pytest.approx(0.5)
    # Bins right in rows 0, 1, 4, 5, 6, 7, 11; every bin within one except row 8's 40-49 for 60-69.
    assert result.overall["age_bin_accuracy"] == pytest.approx(7 / 12)
    assert result.overall["age_bin_one_off_accuracy"] == pytest.approx(11 / 12)


def test_expected_calibration_error_uses_15_equal_bins():
    # 0.72 and 0.68 share the bin (2/3, 11/15]: accuracy 1/2 vs mean confidence 0.70 -> 0.2, weight 1/2;
    # 0.9 and 0.9 are in (13/15, 14/15]: accuracy 1 vs 0.9 -> 0.1, weight 1/2. With 10 bins it would be 0.29.
    truth = ["a", "a", "a", "a"]
    predicted = ["a", "a", "a", "b"]
    assert expected_calibration_error(truth, predicted, [0.9, 0.9, 0.72, 0.68]) == pytest.approx(0.15)


def test_calibration_of_the_heads(result):
    # Every row has the same confidence, so ECE = |accuracy - confidence|.
    assert result.overall["gender_ece"] == pytest.approx(abs(9 / 12 - GENDER_CONFIDENCE))
    assert result.overall["race_ece"] == pytest.approx(abs(9 / 12 - RACE_CONFIDENCE))
    assert result.overall["age_bin_ece"] == pytest.approx(abs(7 / 12 - AGE_BIN_CONFIDENCE))
    gender_bins = result.calibration[(result.calibration["head"] == "gender") & (result.calibration["n"] > 0)]
    assert len(gender_bins) == 1 and gender_bins.iloc[0]["n"] == 12
    assert gender_bins.iloc[0]["accuracy"] == pytest.approx(9 / 12)
    assert (result.calibration.groupby("head").size() == 15).all()


def test_per_group_accuracy_and_gaps(result):
    assert _figure(result, "race", "White", "gender_accuracy") == pytest.approx(5 / 6)
    assert _figure(result, "race", "Black", "gender_accuracy") == pytest.approx(4 / 6)
    assert _figure(result, "race", "White", "n") == 6
    gap = _gap(result, "race", "gender_accuracy")
    assert gap["difference"] == pytest.approx(1 / 6)
    assert gap["ratio"] == pytest.approx((4 / 6) / (5 / 6))
    assert (gap["lowest_group"], gap["highest_group"]) == ("Black", "White")
    assert _figure(result, "race", "Black", "age_mae") == pytest.approx(7.0)


def test_small_groups_are_listed_but_left_out_of_gaps(result):
    assert _figure(result, "race x gender", "White / Male", "n") == 2
    assert _figure(result, "race x gender", "White / Male", "gender_accuracy") == 1.0
    gap = _gap(result, "race x gender", "gender_accuracy")
    # Compared: White/Female 3/4, Black/Female 1/3, Black/Male 1 (White/Male, also 1, is too small).
    assert gap["groups"] == 3
    assert (gap["lowest_group"], gap["highest_group"]) == ("Black / Female", "Black / Male")
    assert gap["difference"] == pytest.approx(2 / 3)
    assert gap["ratio"] == pytest.approx(1 / 3)


def test_groups_follow_the_label_order(result):
    age_groups = result.by_group.loc[result.by_group["grouping"] == "age_bin", "group"].tolist()
    assert age_groups == ["20-29", "60-69"]
    assert result.by_group.loc[result.by_group["grouping"] == "race x gender", "group"].tolist() == [
        "White / Female", "White / Male", "Black / Female", "Black / Male"]


def test_equalized_odds_of_the_gender_head_across_races(result):
    # Female positive. True-positive rate: White 3/4, Black 1/3; no Male is called Female anywhere.
    odds = result.equalized_odds
    assert odds["difference"] == pytest.approx(3 / 4 - 1 / 3)
    table = crafted_table()
    assert odds["difference"] == pytest.approx(equalized_odds_difference(
        table["gender"] == "Female", table["pred_gender"] == "Female", sensitive_features=table["race"]))
    rates = {row["race"]: row["true_positive_rate"] for row in odds["by_race"]}
    assert rates == pytest.approx({"White": 3 / 4, "Black": 1 / 3})


def test_age_standardisation_removes_a_gap_that_is_only_age_mix(result):
    standardised = result.age_standardised
    assert standardised.reference.to_dict() == pytest.approx({"20-29": 0.5, "60-69": 0.5})
    mae = standardised.by_race[standardised.by_race["metric"] == "age_mae"].set_index("race")
    # Raw: White (5 young, 1 old) 3 years, Black (1 young, 5 old) 7 years; both 0.5*2 + 0.5*8 = 5 standardised.
    assert mae.loc["White", "raw"] == pytest.approx(3.0) and mae.loc["Black", "raw"] == pytest.approx(7.0)
    assert mae["standardised"].tolist() == pytest.approx([5.0, 5.0])
    gaps = standardised.gaps.set_index("metric")
    assert gaps.loc["age_mae", "raw_gap"] == pytest.approx(4.0)
    assert gaps.loc["age_mae", "standardised_gap"] == pytest.approx(0.0, abs=1e-12)
    assert "age mixes account for 100% of it, and 0.00 years remains" in gaps.loc["age_mae", "reading"]
    # Gender accuracy by bin: White young 5/5, old 0/1 -> 0.5; Black young 1/1, old 3/5 -> 0.8.
    accuracy = standardised.by_race[standardised.by_race["metric"] == "gender_accuracy"].set_index("race")
    assert accuracy["standardised"].to_dict() == pytest.approx({"White": 0.5, "Black": 0.8})
    assert "standardising widens it" in gaps.loc["gender_accuracy", "reading"]


def test_result_is_json_able(result):
    as_json = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert as_json["overall"]["gender_accuracy"] == pytest.approx(0.75)
    assert as_json["confusion"]["gender"]["Female"]["Male"] == pytest.approx(3 / 7)
    assert {row["grouping"] for row in as_json["by_group"]} == {
        "race", "gender", "age_bin", "race x gender", "race x age_bin", "age_bin x gender"}


def test_fairface7_truth_maps_onto_a_utkface5_model():
    table = crafted_table().iloc[:4].assign(race=["Latino_Hispanic", "East Asian", "Middle Eastern", "Southeast Asian"])
    mapped, note = map_truth_races(table, "fairface7", "utkface5")
    assert mapped["race"].tolist() == ["Others", "Asian", "Others", "Asian"]
    assert note["rows_dropped"] == 0
    mapped, note = map_truth_races(table, "fairface7", "fairface4")
    assert mapped["race"].tolist() == ["Asian", "Asian"] and list(mapped.index) == [1, 3]
    assert note["dropped_by_race"] == {"Latino_Hispanic": 1, "Middle Eastern": 1}


def test_report_of_bin_only_fairface7_truth_on_a_utkface5_model(tmp_path):
    from facescope.evaluation.report import write_report

    # FairFace has age bins only; its Latino_Hispanic faces are UTKFace's Others.
    fairface = crafted_table().assign(race=["White"] * 3 + ["Latino_Hispanic"] * 3 + ["Black"] * 6,
                                      age_years=np.nan, pred_age_years=np.nan)
    table, note = map_truth_races(fairface, "fairface7", "utkface5")
    result = evaluate(table, min_group_size=3, cross_taxonomy=note)
    assert "age_mae" not in result.overall and result.overall["age_bin_accuracy"] == pytest.approx(7 / 12)
    assert _figure(result, "race", "Others", "n") == 3
    folder = write_report(result, table, tmp_path / "report", {"model": "crafted"})
    assert (folder / "confusion_race.png").exists() and not (folder / "age_errors.png").exists()
    assert "mapped from fairface7 to the model's utkface5" in (folder / "report.md").read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["cross_taxonomy"]["mapping"]["Latino_Hispanic"] == "Others"


def test_unmapped_truth_races_are_refused():
    table = crafted_table().assign(race="East Asian")
    with pytest.raises(ValueError, match="map_truth_races"):
        evaluate(table)


def test_evaluate_command_writes_the_report_and_the_bundle_section(utkface_dir, bundle_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from facescope.cli import app

    bundle = shutil.copytree(bundle_dir, tmp_path / "bundle")  # --update-bundle rewrites its model.json
    monkeypatch.setenv("FACESCOPE_CACHE", str(tmp_path / "cache"))
    report = tmp_path / "report"
    outcome = CliRunner().invoke(app, [
        "evaluate", "--model", str(bundle), "--data", str(utkface_dir), "--split", "test", "--limit", "40",
        "--min-group-size", "5", "--output", str(report), "--update-bundle",
    ])
    assert outcome.exit_code == 0, outcome.output
    assert "40 faces: gender accuracy" in outcome.output
    assert "gender accuracy by race: worst" in outcome.output

    for name in ["report.md", "metrics.json", "predictions.csv", "confusion_gender.png", "confusion_race.png",
                 "confusion_age_bin.png", "reliability_gender.png", "reliability_race.png",
                 "reliability_age_bin.png", "accuracy_by_race.png", "accuracy_by_race_x_gender.png",
                 "age_mae_by_race.png", "age_mae_by_age_bin.png", "age_errors.png"]:
        assert (report / name).stat().st_size > 0, name
    assert (report / "confusion_gender.png").read_bytes().startswith(b"\x89PNG")
    assert "## Reading the gaps" in (report / "report.md").read_text()

    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["context"]["faces"] == metrics["overall"]["n"] == 40
    assert 0 <= metrics["overall"]["gender_accuracy"] <= 1 and metrics["overall"]["age_mae"] >= 0
    by_race = [row for row in metrics["by_group"] if row["grouping"] == "race"]
    assert sum(row["n"] for row in by_race) == 40
    predictions = pd.read_csv(report / "predictions.csv")
    assert len(predictions) == 40 and set(predictions["race"]) <= set(labels.UTKFACE5.labels)
    # The test split as training makes it: every evaluated face is in assign_splits' test share.
    from facescope.data import load_dataset
    from facescope.data.splits import assign_splits

    dataset = load_dataset(utkface_dir)
    test_sources = {r.source for r, s in zip(dataset.records, assign_splits(dataset.records)) if s == "test"}
    assert set(predictions["source"]) <= test_sources

    section = json.loads((bundle / "model.json").read_text())["evaluation"]
    assert section["faces"] == 40 and section["split"] == "test" and section["dataset"] == utkface_dir.name
    assert section["overall"]["gender_accuracy"] == pytest.approx(metrics["overall"]["gender_accuracy"], abs=1e-4)
    assert set(section["by_race"]) == {row["group"] for row in by_race}
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "## It must not be used for" in card and "### By race x gender" in card
    low, high = section["intervals"]["overall"]["gender_accuracy"]
    assert (f"| gender accuracy | {100 * section['overall']['gender_accuracy']:.1f}% "
            f"({100 * low:.1f}% – {100 * high:.1f}%) |") in card
    assert all("/" in group for group in section["by_race_gender"])


def test_faces_without_a_race_label_count_overall_but_in_no_race_group():
    # A split of several data sets: UTKFace faces have races, LFW faces only a gender.
    with_race = crafted_table()
    without_race = with_race.head(4).assign(race=None, pred_race="White", age_years=np.nan, age_bin=None)
    result = evaluate(pd.concat([with_race, without_race], ignore_index=True), min_group_size=3, n_boot=50)
    assert result.overall["n"] == 16
    race_groups = result.by_group[result.by_group["grouping"] == "race"]
    assert set(race_groups["group"]) == {"White", "Black"} and race_groups["n"].sum() == 12
    assert {"White", "Black"} <= set(result.intervals[result.intervals["grouping"] == "race"]["group"])


def test_outputs_are_scored_by_their_kind_so_a_fourth_and_a_second_age_head_need_no_code():
    """A fourth label output (truth, prediction and probabilities under its own name) gets every label
    figure, and a second age head (`<head>_bin`, `<head>_years`) the age groups' one-off accuracy and its
    age error: overall, by group, with intervals, by estimated group and in the coverage table. The three
    outputs' figures stay as they were."""
    table = crafted_table()
    three = evaluate(table, min_group_size=3, n_boot=50)
    moods = ["calm", "tense"]
    truth = table["gender"].map(dict(zip(labels.GENDERS, moods)))
    predicted = table["pred_gender"].map(dict(zip(labels.GENDERS, moods)))
    probabilities = pd.DataFrame([_probabilities("mood", mood, moods, 0.8) for mood in predicted], index=table.index)
    five = evaluate(pd.concat([table.assign(
        mood=truth, pred_mood=predicted,
        apparent_age_years=table["age_years"], pred_apparent_age_years=table["pred_age_years"] + 1.0,
        apparent_age_bin=table["age_bin"], pred_apparent_age_bin=table["pred_age_bin"],
    ), probabilities], axis=1), min_group_size=3, n_boot=50)
    assert {figure: five.overall[figure] for figure in three.overall} == three.overall
    assert five.overall["mood_accuracy"] == pytest.approx(three.overall["gender_accuracy"])
    assert {"mood_macro_f1", "mood_ece"} <= set(five.overall)
    assert five.overall["apparent_age_bin_one_off_accuracy"] == three.overall["age_bin_one_off_accuracy"]
    errors = (table["age_years"] - table["pred_age_years"] - 1.0).abs()
    assert five.overall["apparent_age_mae"] == pytest.approx(errors.mean())
    assert "mood_accuracy" in five.by_group and "apparent_age_mae" in five.by_group
    assert {"mood_accuracy", "apparent_age_mae"} <= set(five.intervals["metric"])
    assert {"mood_accuracy", "apparent_age_mae"} <= set(five.by_estimate["figures"]["overall"]["all"])
    assert "mood" in set(five.coverage["head"]) and "mood" in five.confusion
