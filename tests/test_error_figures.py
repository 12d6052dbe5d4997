"""Figures beside each estimate from the most specific group of estimates with enough test faces, answers
withheld below a confidence threshold (and what that costs each group), audits of what tools write
(facescope's own output, DeepFace, insightface) against the hand-mapped table, facescope's own
predictions on photos its model trained on, and report commands that rerun to the same figures."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from facescope import labels
from facescope.bundles import BundleInfo, ModelOutput
from facescope.evaluation.estimated import coverage_table
from facescope.evaluation.metrics import evaluate
from facescope.heads import UNCERTAIN, Head, parse_thresholds
from facescope.inference.error_figures import ErrorFigures, withhold_uncertain
from facescope.inference.results import AgeEstimate, Estimates, LabelEstimate

UTK_RACES = labels.UTKFACE5.labels
HEADS = (Head("gender", "label", "gender"), Head("race", "label", "utkface5"), Head("age", "age_years"))


def _row(age: int, gender: str, race: str, pred_age: int, pred_gender: str, pred_race: str,
         gender_p: float = 0.9) -> dict:
    pred_bin = labels.age_to_bin(pred_age)
    other = "Male" if pred_gender == "Female" else "Female"
    return {
        "source": f"{len(race)}-{age}", "age_years": float(age), "age_bin": labels.age_to_bin(age), "gender": gender,
        "race": race, "pred_age_years": float(pred_age), "pred_age_bin": pred_bin, "pred_gender": pred_gender,
        "pred_race": pred_race, f"p_gender_{pred_gender}": gender_p, f"p_gender_{other}": 1 - gender_p,
        **{f"p_race_{r}": (0.8 if r == pred_race else 0.05) for r in UTK_RACES},
        **{f"p_age_bin_{b}": (0.6 if b == pred_bin else 0.05) for b in labels.AGE_BIN_LABELS},
    }


def _table() -> pd.DataFrame:
    """40 faces estimated 0-2 (all estimated White, 20 each gender), gender right on 24 of them;
    200 adults estimated 30-39 White, gender right on 190; 10 faces estimated 70+ White, all right."""
    rows = []
    for i in range(40):
        truth = "Female" if i % 2 else "Male"
        guess = ("Female" if i < 20 else "Male")
        rows.append(_row(1, truth, "White", 1, guess, "White", gender_p=0.52))
    right = sum(r["gender"] == r["pred_gender"] for r in rows)
    for i in range(200):
        truth = "Female" if i % 2 else "Male"
        wrong = i < 10
        rows.append(_row(34, truth, "White", 35, ("Male" if truth == "Female" else "Female") if wrong else truth, "White"))
    for i in range(10):
        rows.append(_row(75, "Male", "White", 78, "Male", "White"))
    table = pd.DataFrame(rows).fillna(0.0)
    table["source"] = [f"photo-{i}.jpg" for i in range(len(table))]
    assert right == 20  # the crafted babies: the hand count below relies on it
    return table


def _info(evaluation: dict) -> BundleInfo:
    return BundleInfo(name="toy", backbone="toy", licence="test", evaluation=evaluation,
                      outputs=tuple(ModelOutput(h.name, h) for h in HEADS))


def _estimates(age_bin: str, years: float, gender: str, gender_p: float, race: str = "White") -> Estimates:
    return Estimates(
        age=AgeEstimate(years=years, bin=age_bin, bin_probs={b: (0.6 if b == age_bin else 0.05) for b in labels.AGE_BIN_LABELS}),
        gender=LabelEstimate(label=gender, probs={gender: gender_p, ("Male" if gender == "Female" else "Female"): 1 - gender_p}),
        race=LabelEstimate(label=race, probs={r: (0.8 if r == race else 0.05) for r in UTK_RACES}))


@pytest.fixture(scope="module")
def figures() -> ErrorFigures:
    result = evaluate(_table(), min_group_size=30, n_boot=200, seed=0)
    # Through model.json and back, as a bundle carries them.
    return ErrorFigures(BundleInfo.from_json(_info({"by_estimated_group": result.by_estimate}).to_json()))


def test_a_babys_gender_figure_comes_from_its_age_group_not_its_race(figures):
    baby = figures.attach(_estimates("0-2", 1.2, "Female", 0.52))
    measured = baby.gender.measured
    # 0-2 / Female / White and 0-2 / Female have 20 faces each (< 30): the age group 0-2 has 40.
    assert (measured.grouping, measured.group, measured.faces) == ("estimated age group", "0-2", 40)
    babies = _table().iloc[:40]
    assert measured.value == pytest.approx((babies["gender"] == babies["pred_gender"]).mean())  # 20 of 40
    white = _table()
    assert measured.value < (white["gender"] == white["pred_gender"]).mean() - 0.3  # White's figure: 220 of 250
    assert measured.text.startswith("gender right 50% for faces estimated 0-2")
    low, high = measured.interval
    assert low < measured.value < high
    adult = figures.attach(_estimates("30-39", 35.0, "Female", 0.9))
    # 100 women estimated 30-39 and White: the most specific group has enough faces.
    assert adult.gender.measured.grouping == "estimated age group x gender x race"
    assert adult.gender.measured.group == "30-39 / Female / White"


def test_an_age_group_with_too_few_faces_falls_back_to_a_named_coarser_group(figures):
    old = figures.attach(_estimates("70+", 78.0, "Male", 0.9))
    # 10 faces estimated 70+: too few at every age grouping, so the figure is White's (250 faces).
    assert (old.age.measured.grouping, old.age.measured.group, old.age.measured.faces) == ("estimated race", "White", 250)
    table = _table()
    assert old.age.measured.value == pytest.approx((table["age_years"] - table["pred_age_years"]).abs().mean(), abs=1e-4)
    assert old.age.measured.text.startswith("age off by")
    assert "faces estimated White" in old.age.measured.text
    # A model with no figures by estimated group pairs nothing.
    assert ErrorFigures(_info({})).attach(_estimates("70+", 78.0, "Male", 0.9)).age.measured is None


def test_the_threshold_leaves_uncertain_answers_and_the_coverage_table_sums_by_hand():
    estimate = withhold_uncertain(_estimates("0-2", 1.2, "Female", 0.52), parse_thresholds(None))
    assert estimate.gender.label == UNCERTAIN and estimate.gender.probs["Female"] == 0.52  # probabilities kept
    assert estimate.race.label == "White" and estimate.age.bin == "0-2"  # sure enough under the defaults
    strict = withhold_uncertain(_estimates("0-2", 1.2, "Female", 0.9), parse_thresholds(["age=0.7", "race=0.9"]))
    assert (strict.age.bin, strict.race.label, strict.gender.label) == (UNCERTAIN, UNCERTAIN, "Female")
    assert parse_thresholds("none") == {}
    with pytest.raises(ValueError, match="no head 'mood'"):
        parse_thresholds(["mood=0.5"], HEADS)
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_thresholds(["gender=2"], HEADS)

    table = _table()
    coverage = coverage_table(table, {"gender": list(labels.GENDERS), "race": list(UTK_RACES),
                                      "age_bin": list(labels.AGE_BIN_LABELS)})
    at = coverage[(coverage["head"] == "gender") & (coverage["threshold"] == 0.6)].set_index(["grouping", "group"])
    # The babies' 0.52 answers are withheld; every adult's 0.9 answer stays.
    assert at.loc[("age_bin", "0-2"), "answered"] == 0 and at.loc[("age_bin", "0-2"), "faces"] == 40
    assert at.loc[("age_bin", "30-39"), "coverage"] == 1.0
    assert at.loc[("overall", "all"), "answered"] == 210 == at.xs("age_bin")["answered"].sum()
    assert at.xs("gender")["answered"].sum() == at.xs("race")["answered"].sum() == 210
    assert at.loc[("overall", "all"), "answered_accuracy"] == pytest.approx(200 / 210)
    assert at.loc[("overall", "all"), "accuracy"] == pytest.approx(220 / 250)
    everything = coverage[(coverage["head"] == "gender") & (coverage["threshold"] == 0.0)]
    assert (everything["coverage"] == 1.0).all()


# --- audits of what tools write -------------------------------------------------------------------

# UTKFace names: AGE_GENDER(0 male, 1 female)_RACE(0 White, 1 Black, 2 Asian, 3 Indian, 4 Others)_DATE
TRUTH = ["25_1_0", "30_1_0", "40_0_0", "50_0_0", "22_1_1", "35_1_1", "45_0_1", "60_0_1", "8_0_2", "2_1_3"]
# Each photo's answer: gender, race (UTKFace spelling), age, gender probability; None: no face found.
ANSWERS = [("Female", "White", 27, 0.9), ("Male", "White", 33, 0.7), ("Male", "Asian", 35, 0.8), None,
           ("Female", "Black", 20, 0.95), ("Female", "Black", 45, 0.55), ("Male", "Others", 44, 0.9),
           ("Female", "Black", 61, 0.6), ("Male", "Asian", 10, 0.9), ("Male", "Indian", 3, 0.51)]
DEEPFACE_RACE = {"White": "white", "Black": "black", "Asian": "asian", "Indian": "indian", "Others": "middle eastern"}


@pytest.fixture()
def utk(tmp_path):
    folder = tmp_path / "utk"
    folder.mkdir()
    names = [f"{stem}_2017010100000{i:04d}.jpg" for i, stem in enumerate(TRUTH)]
    for name in names:
        (folder / name).write_bytes(b"")  # the audit reads labels from names, never the pixels
    return folder, names


def _facescope_record(name: str, answer, model: str | None = None) -> dict:
    record = {"path": f"photos/{name}", "width": 200, "height": 200, "faces": [], "faces_found": 0, "error": None}
    if model:
        record["model"] = model
    if answer:
        gender, race, age, p = answer
        other = "Male" if gender == "Female" else "Female"
        age_bin = labels.age_to_bin(age)
        record["faces"] = [{
            "age": {"years": float(age), "bin": age_bin, "bin_probs": {b: (0.6 if b == age_bin else 0.05) for b in labels.AGE_BIN_LABELS}},
            # a withheld answer is still scored on what the model estimated
            "gender": {"label": gender if p >= 0.6 else UNCERTAIN, "probs": {gender: p, other: round(1 - p, 5)}},
            "race": {"label": race, "probs": {r: (0.8 if r == race else 0.05) for r in UTK_RACES}},
            "box": [0, 0, 200, 200], "score": 1.0, "landmarks": [], "by_model": {}}]
        record["faces_found"] = 1
    return record


def _hand_csv(path, names, race_spelling=None, with_race=True, answers=ANSWERS) -> None:
    rows = []
    for name, answer in zip(names, answers, strict=True):
        gender, race, age, _ = answer or ("", "", "", 0)
        row = {"file": name, "g": gender, "years": age, "found": bool(answer)}
        if with_race:
            row["r"] = race_spelling[race] if (race_spelling and answer) else race
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)


def _figures(run, columns=("gender_accuracy", "race_accuracy", "age_mae", "age_bin_accuracy")) -> pd.DataFrame:
    by_group = run.result.by_group.set_index(["grouping", "group"])
    return by_group[[c for c in columns if c in by_group]].round(6)


def test_audit_of_facescope_deepface_and_insightface_output_equals_the_hand_mapped_csv(utk, tmp_path):
    from facescope.evaluation.audit import ColumnMap, audit

    data, names = utk
    hand = ColumnMap(path="file", gender="g", race="r", age_years="years", face_found="found")

    def audited(path, columns=None, taxonomy=None):
        columns = columns or ColumnMap(race_taxonomy=taxonomy)
        runs, _, _ = audit([("tool", path, columns)], data, min_group_size=1, n_boot=0, output=tmp_path / path.stem)
        return runs[0]

    own = tmp_path / "own.jsonl"
    own.write_text("".join(json.dumps(_facescope_record(n, a)) + "\n" for n, a in zip(names, ANSWERS)))
    hand_csv = tmp_path / "hand.csv"
    _hand_csv(hand_csv, names)
    expected = audited(hand_csv, hand)
    assert expected.result.overall["gender_accuracy"] == pytest.approx(6 / 10)  # by hand: photos 1,3,5,8,9 + 7
    pd.testing.assert_frame_equal(_figures(audited(own)), _figures(expected))
    as_json = tmp_path / "own.json"  # predict --format json: one document
    as_json.write_text(json.dumps([_facescope_record(n, a) for n, a in zip(names, ANSWERS)], indent=2))
    pd.testing.assert_frame_equal(_figures(audited(as_json)), _figures(expected))

    # DeepFace: a list of faces per photo (the largest one counts), percent scores, its six races.
    deepface = tmp_path / "deepface.json"
    records = []
    for name, answer in zip(names, ANSWERS):
        if answer is None:
            records.append([{"img_path": f"x/{name}", "face_confidence": 0, "dominant_gender": "Man", "gender": {"Woman": 40.0, "Man": 60.0},
                             "dominant_race": "white", "race": {r: 100 / 6 for r in labels.DEEPFACE6.labels}, "age": 30,
                             "region": {"x": 0, "y": 0, "w": 200, "h": 200}}])
            continue
        gender, race, age, p = answer
        face = {"img_path": f"x/{name}", "dominant_gender": "Woman" if gender == "Female" else "Man",
                "gender": {"Woman": 100 * (p if gender == "Female" else 1 - p), "Man": 100 * (1 - p if gender == "Female" else p)},
                "dominant_race": DEEPFACE_RACE[race],
                "race": {r: (75.0 if r == DEEPFACE_RACE[race] else 5.0) for r in labels.DEEPFACE6.labels},
                "age": age, "region": {"x": 0, "y": 0, "w": 100, "h": 100}, "face_confidence": 0.9}
        small = dict(face, dominant_gender="Man" if gender == "Female" else "Woman", region={"x": 0, "y": 0, "w": 20, "h": 20})
        records.append([small, face])
    deepface.write_text(json.dumps(records))
    deepface_csv = tmp_path / "deepface-hand.csv"
    _hand_csv(deepface_csv, names, DEEPFACE_RACE)
    expected = audited(deepface_csv, ColumnMap(path="file", gender="g", race="r", age_years="years", face_found="found",
                                               race_taxonomy="deepface6"))
    pd.testing.assert_frame_equal(_figures(audited(deepface)), _figures(expected))

    # insightface: gender 1 = male, 0 = female; no race.
    insight = tmp_path / "insight.jsonl"
    lines = [json.dumps({"img_path": f"x/{n}", "bbox": [0, 0, 90, 90], "det_score": 0.8, "gender": int(a[0] == "Male"),
                         "age": a[2]}) for n, a in zip(names, ANSWERS) if a]
    insight.write_text("\n".join(lines) + "\n")
    insight_csv = tmp_path / "insight-hand.csv"
    found = [(n, a) for n, a in zip(names, ANSWERS) if a]
    _hand_csv(insight_csv, [n for n, _ in found], with_race=False, answers=[a for _, a in found])
    expected = audited(insight_csv, ColumnMap(path="file", gender="g", age_years="years", face_found="found"))
    got = audited(insight)
    assert got.result.overall["gender_accuracy"] == pytest.approx(6 / 9)
    pd.testing.assert_frame_equal(_figures(got), _figures(expected))


def _adult_utkface_folder(tmp_path, count):
    """A UTKFace-named folder of `count` empty files, ages 20 upwards, genders and races alternating: the
    audit reads labels from the names and the predictions, never the pixels."""
    data = tmp_path / "utk"
    data.mkdir()
    names = [f"{20 + i}_{i % 2}_{i % 4}_2017010100{i:07d}.jpg" for i in range(count)]
    for name in names:
        (data / name).write_bytes(b"")
    return data, names


def _toy_bundle(tmp_path, data, name="toy", counts=None):
    """A bundle folder (model.json only: the audit reads what it trained on, never runs it) of a model
    trained on UTKFace split as training splits it (seed 0, 10% / 10%)."""
    from facescope.data import load_dataset
    from facescope.data.splits import assign_splits

    splits = assign_splits(load_dataset(data).records, 0.1, 0.1, 0)
    counts = counts or {s: splits.count(s) for s in ("train", "val", "test")}
    folder = tmp_path / name
    folder.mkdir()
    info = _info({})
    info.name = name
    info.training_data = {"datasets": [{"name": "utkface", "title": "UTKFace", "licence": "research", "splits": counts}]}
    (folder / "model.json").write_text(info.to_json())
    return folder, splits


def test_facescope_predictions_on_its_training_photos_are_caught(tmp_path):
    from facescope.data import load_dataset
    from facescope.evaluation.audit import ColumnMap, audit
    from facescope.evaluation.training_photos import TrainingPhotosUnknown

    data = tmp_path / "utk"
    data.mkdir()
    rng = np.random.default_rng(0)
    names = [f"{rng.integers(1, 80)}_{i % 2}_{i % 4}_2017010100{i:07d}.jpg" for i in range(60)]
    for name in names:
        (data / name).write_bytes(b"")
    bundle, splits = _toy_bundle(tmp_path, data)
    predictions = tmp_path / "own.jsonl"
    predictions.write_text("".join(json.dumps(_facescope_record(n, ("Female", "White", 30, 0.9), model="toy")) + "\n"
                                   for n in names))
    runs, context, _ = audit([("own", predictions, ColumnMap())], data, n_boot=0, output=tmp_path / "r", model=bundle)
    test_photos = sorted(r.source for r, s in zip(load_dataset(data).records, splits) if s == "test")
    assert sorted(runs[0].table["source"]) == test_photos  # only photos the model never saw
    assert context["faces"] == len(test_photos) < 60
    assert "trained on" in context["warnings"][0] and str(60 - len(test_photos)) in context["warnings"][0]
    with pytest.raises(ValueError, match="trained on"):
        audit([("own", predictions, ColumnMap())], data, split="train", n_boot=0, output=tmp_path / "r2", model=bundle)
    # Another copy of the data (here: sizes that do not match) cannot be told apart: refused.
    other, _ = _toy_bundle(tmp_path, data, name="other", counts={"train": 1, "val": 1, "test": 58})
    with pytest.raises(TrainingPhotosUnknown, match="cannot be told apart"):
        audit([("own", predictions, ColumnMap())], data, n_boot=0, output=tmp_path / "r3", model=other)
    # A model that is neither installed nor given: refused, not audited on every photo.
    with pytest.raises(TrainingPhotosUnknown, match="not installed"):
        audit([("own", predictions, ColumnMap())], data, n_boot=0, output=tmp_path / "r4")


def test_an_audit_of_several_files_of_one_model_splits_the_data_once(tmp_path, monkeypatch):
    """Two files of the same model's predictions (as JSON lines and as CSV): the data set is split once,
    and both are scored on the same photos, those the model never saw."""
    from facescope.data import load_dataset
    from facescope.evaluation import training_photos
    from facescope.evaluation.audit import ColumnMap, audit

    data, names = _adult_utkface_folder(tmp_path, 60)
    bundle, splits = _toy_bundle(tmp_path, data)
    lines = tmp_path / "own.jsonl"
    lines.write_text("".join(json.dumps(_facescope_record(n, ("Female", "White", 30, 0.9), model="toy")) + "\n"
                             for n in names))
    table = tmp_path / "own.csv"
    pd.DataFrame({"path": names, "gender": "Male", "model": "toy"}).to_csv(table, index=False)
    made = []
    original = training_photos.assign_splits
    monkeypatch.setattr(training_photos, "assign_splits", lambda *args: made.append(args) or original(*args))
    runs, context, _ = audit([("jsonl", lines, ColumnMap()), ("csv", table, ColumnMap())], data, n_boot=0,
                             output=tmp_path / "r", model=bundle)
    assert len(made) == 1
    test_photos = sorted(r.source for r, s in zip(load_dataset(data).records, splits) if s == "test")
    assert [sorted(run.table["source"]) for run in runs] == [test_photos, test_photos]
    assert len(context["warnings"]) == 1 and "8 photos it never saw" in context["warnings"][0]

def test_an_audit_reports_command_reruns_to_the_same_figures(utk, tmp_path, monkeypatch):
    from facescope.cli import app

    data, names = utk
    predictions = tmp_path / "tool.csv"
    _hand_csv(predictions, names)
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(app, [
        "audit", "-p", str(predictions), "--data", str(data), "--path-column", "file", "--gender-column", "g",
        "--race-column", "r", "--age-column", "years", "--min-group-size", "2", "--n-boot", "50", "--seed", "3",
        "--output", "first"])
    assert first.exit_code == 0, first.output
    metrics = json.loads((tmp_path / "first" / "metrics.json").read_text())
    command = shlex.split(metrics["context"]["command"])
    assert command[:2] == ["facescope", "audit"] and "--columns" in command and "--min-group-size" in command
    command[command.index("--output") + 1] = "second"
    again = CliRunner().invoke(app, command[1:])
    assert again.exit_code == 0, again.output
    rerun = json.loads((tmp_path / "second" / "metrics.json").read_text())
    for key in ("overall", "by_group", "intervals", "gaps", "coverage"):
        assert rerun[key] == metrics[key], key
    assert metrics["overall"]["gender_accuracy"] == pytest.approx(6 / 10)  # the options were applied


def test_evaluate_records_every_option_in_its_command():
    from facescope.evaluation.run import command_line

    command = command_line("facescope evaluate", [("--model", "my bundle"), ("--data", "d"), ("--limit", None),
                                                  ("--update-bundle", False), ("--n-boot", 0), ("--name", ["a", "b"])])
    assert shlex.split(command) == ["facescope", "evaluate", "--model", "my bundle", "--data", "d", "--n-boot", "0",
                                    "--name", "a", "--name", "b"]


def test_a_training_runs_split_manifest_leaves_out_its_photos_under_a_relative_data_path(tmp_path, monkeypatch):
    """The run's splits.csv (absolute paths, data sets in different race taxonomies) against an audit whose
    --data is a relative path: the photos the model trained on are still found and left out."""
    from facescope.data import FaceRecord, load_dataset
    from facescope.data.splits import write_split_manifest
    from facescope.evaluation.audit import ColumnMap, audit

    data, names = _adult_utkface_folder(tmp_path, 40)
    bundle, splits = _toy_bundle(tmp_path, data)
    other = tmp_path / "fairface.jpg"
    other.write_bytes(b"")
    records = load_dataset(data).records
    manifest = write_split_manifest(
        [*records, FaceRecord(str(other), None, "20-29", "Male", "East Asian", "fairface7", other.name,
                              dataset="fairface")], [*splits, "train"], tmp_path / "splits.csv")
    predictions = tmp_path / "own.jsonl"
    predictions.write_text("".join(json.dumps(_facescope_record(n, ("Female", "White", 30, 0.9), model="toy")) + "\n"
                                   for n in names))
    monkeypatch.chdir(tmp_path)
    runs, context, _ = audit([("own", predictions, ColumnMap())], Path("utk"), n_boot=0, output=tmp_path / "r",
                             model=bundle, training_splits=manifest)
    test_photos = sorted(Path(r.source).name for r, s in zip(records, splits) if s == "test")
    assert sorted(Path(s).name for s in runs[0].table["source"]) == test_photos
    assert context["warnings"] and "trained on" in context["warnings"][0]
