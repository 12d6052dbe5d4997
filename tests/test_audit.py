"""`facescope audit`: a crafted predictions file against a crafted UTKFace folder gives the hand-computed
per-group figures; label spellings and race taxonomies are mapped; unmatched rows are reported; the
HTML report is self-contained (no external URL)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from facescope import labels
from facescope.evaluation.audit import (
    ColumnMap, guess_race_taxonomy, map_race_labels, normalise_gender, normalise_race,
)

# file name (UTKFace: AGE_GENDER_RACE_DATE, gender 0 = Male, race 0 = White, 1 = Black) -> the tool's answer:
# gender in its spelling, race in FairFace-7 spellings, age; None: the tool found no face.
PHOTOS = {
    "25_1_0_20170101000000001.jpg": ("woman", "White", 27),
    "30_1_0_20170101000000002.jpg": ("man", "white", 33),
    "40_0_0_20170101000000003.jpg": ("man", "East Asian", 35),  # maps to Asian: wrong
    "50_0_0_20170101000000004.jpg": None,
    "22_1_1_20170101000000005.jpg": ("Woman", "Black", 20),
    "35_1_1_20170101000000006.jpg": ("woman", "black", 45),
    "45_0_1_20170101000000007.jpg": ("MAN", "Middle_Eastern", 44),  # maps to Others: wrong
    "60_0_1_20170101000000008.jpg": ("woman", "Black", 61),
}


@pytest.fixture()
def crafted(tmp_path):
    data = tmp_path / "utk"
    data.mkdir()
    rows = []
    for name, answer in PHOTOS.items():
        (data / name).write_bytes(b"")  # the audit reads labels from names, never the pixels
        sex, race, age = answer or ("", "", "")
        rows.append({"image": f"some/where/{name}", "sex": sex, "ethnicity": race, "age_estimate": age})
    rows.append({"image": "ghost.jpg", "sex": "man", "ethnicity": "White", "age_estimate": 30})
    predictions = tmp_path / "tool.csv"
    pd.DataFrame(rows).to_csv(predictions, index=False)
    columns = tmp_path / "columns.yaml"
    columns.write_text("path: image\ngender: sex\nrace: ethnicity\nage_years: age_estimate\n")
    return data, predictions, columns


def test_audit_of_a_crafted_file_gives_the_hand_computed_figures(crafted, tmp_path):
    from facescope.evaluation.audit import audit

    data, predictions, columns = crafted
    runs, context, folder = audit([("tool", predictions, ColumnMap.from_yaml(columns))], data, min_group_size=1,
                                  n_boot=100, output=tmp_path / "report")
    result = runs[0].result
    by_race = result.by_group[result.by_group["grouping"] == "race"].set_index("group")
    # White: genders right on photos 1 and 3, photo 2 wrong, photo 4 missed (wrong); Black: 3 of 4.
    assert by_race.loc["White", "gender_accuracy"] == pytest.approx(2 / 4)
    assert by_race.loc["Black", "gender_accuracy"] == pytest.approx(3 / 4)
    # Races: White 1, 2 right, 3 East Asian -> Asian, 4 missed; Black 5, 6, 8 right, 7 Middle Eastern -> Others.
    assert by_race.loc["White", "race_accuracy"] == pytest.approx(2 / 4)
    assert by_race.loc["Black", "race_accuracy"] == pytest.approx(3 / 4)
    assert by_race.loc["White", "detection_missed_rate"] == pytest.approx(1 / 4)
    assert by_race.loc["Black", "detection_missed_rate"] == 0
    # Age error over the photos with a face: White |27-25|, |33-30|, |35-40|; Black 2, 10, 1, 1.
    assert by_race.loc["White", "age_mae"] == pytest.approx(10 / 3)
    assert by_race.loc["Black", "age_mae"] == pytest.approx(14 / 4)
    assert result.overall["gender_accuracy"] == pytest.approx(5 / 8)
    assert result.overall["detection_missed_rate"] == pytest.approx(1 / 8)

    join = context["joins"][0]
    assert (join["prediction_rows"], join["matched"], join["unmatched_rows"]) == (9, 8, 1)
    assert join["unmatched_examples"] == ["ghost.jpg"]
    assert join["race_mapping"]["compared_in"] == "utkface5"
    assert join["race_mapping"]["mapping"]["East Asian"] == "Asian"
    assert join["race_mapping"]["mapping"]["Middle Eastern"] == "Others"
    markdown = (folder / "report.md").read_text()
    assert "ghost.jpg" in markdown and "missed-face rate" in markdown
    assert json.loads((folder / "metrics.json").read_text())["overall"]["n"] == 8

    # The HTML opens offline: charts inline, no external URL, stylesheet or script.
    html = (folder / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 3
    without_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", without_images, re.IGNORECASE)
    assert not re.search(r'(?:src|href)\s*=\s*"(?!data:)', html)
    assert "url(" not in without_images and "@import" not in without_images


def test_two_estimators_side_by_side_with_paired_differences(crafted, tmp_path):
    from facescope.evaluation.audit import audit
    from facescope.evaluation.report import estimator_differences

    data, predictions, columns = crafted
    # A second tool: the same answers, but it finds every face and calls every face a woman.
    rows = pd.read_csv(predictions).fillna({"sex": "", "ethnicity": "White", "age_estimate": 50})
    rows["sex"] = "female"
    second = tmp_path / "second.jsonl"
    rows.to_json(second, orient="records", lines=True)
    mapping = ColumnMap.from_yaml(columns)
    runs, context, folder = audit([("tool", predictions, mapping), ("all-women", second, mapping)], data,
                                  min_group_size=1, n_boot=200, output=tmp_path / "both")
    differences = estimator_differences(runs)
    overall = differences[(differences["grouping"] == "overall") & (differences["metric"] == "gender_accuracy")]
    # tool: 5 of 8 right; all-women: the 4 women right -> 4/8; difference -1/8.
    assert overall.iloc[0]["difference"] == pytest.approx(4 / 8 - 5 / 8)
    assert overall.iloc[0]["low"] <= overall.iloc[0]["difference"] <= overall.iloc[0]["high"]
    html = (folder / "report.html").read_text()
    assert "all-women − tool" in html and "Estimators compared" in html


@pytest.mark.parametrize("taxonomy", list(labels.TAXONOMIES))
def test_each_declared_taxonomys_labels_are_guessed_as_a_taxonomy_holding_them(taxonomy):
    """A tool answering every label of a taxonomy is read in it, or in a coarser one holding all its labels
    (FairFace-4's labels are UTKFace's too: read as UTKFace's, which finer truths map onto)."""
    answers = pd.Series([label.lower().replace("_", " ") for label in labels.TAXONOMIES[taxonomy].labels])
    guessed = guess_race_taxonomy(answers)
    assert guessed == {"fairface4": "utkface5"}.get(taxonomy, taxonomy)
    assert set(labels.TAXONOMIES[taxonomy].labels) <= set(labels.TAXONOMIES[guessed].labels)


def test_a_newly_declared_taxonomy_is_guessed_without_another_edit(monkeypatch):
    toy = labels.Taxonomy("toy3", ("Blue", "Green", "Red"))
    monkeypatch.setattr(labels, "TAXONOMIES", {**labels.TAXONOMIES, toy.name: toy})
    assert guess_race_taxonomy(pd.Series(["blue", "Red", None])) == "toy3"
    assert guess_race_taxonomy(pd.Series(["White", "Black"])) == "utkface5"

def test_spellings_and_taxonomies_map_onto_the_schema():
    assert [normalise_gender(v) for v in ["man", "Woman", "F", "male", "FEMALE"]] == [
        "Male", "Female", "Female", "Male", "Female"]
    with pytest.raises(ValueError, match="as a gender"):
        normalise_gender("unknown")
    assert normalise_race("latino hispanic", "fairface7") == "Latino_Hispanic"
    assert normalise_race("East_Asian", "fairface7") == "East Asian"
    assert guess_race_taxonomy(pd.Series(["white", "middle eastern", "latino hispanic", "asian"])) == "deepface6"
    deepface = pd.Series(["asian", "latino hispanic", "middle eastern", "white"])
    assert map_race_labels(deepface, "deepface6", "utkface5").tolist() == ["Asian", "Others", "Others", "White"]
    assert map_race_labels(deepface, "deepface6", "fairface4").isna().tolist() == [False, True, True, False]
    fairface = pd.Series(["Southeast Asian", "Latino_Hispanic", "Indian"])
    assert map_race_labels(fairface, "fairface7", "utkface5").tolist() == ["Asian", "Others", "Indian"]


def test_unknown_columns_and_labels_are_clear_errors(crafted, tmp_path):
    from facescope.evaluation.audit import audit

    data, predictions, _ = crafted
    bad = tmp_path / "bad.yaml"
    bad.write_text("path: image\nsexe: sex\n")
    with pytest.raises(ValueError, match="unknown keys"):
        ColumnMap.from_yaml(bad)
    with pytest.raises(ValueError, match="no column 'nope'"):
        audit([("tool", predictions, ColumnMap(path="image", gender="nope"))], data, output=tmp_path / "x")


def test_broken_column_yaml_is_one_line_error(crafted, tmp_path):
    for text, words in [("- path\n- gender\n", "is a mapping"), ("path: [a, b]\n", "path is a column name"),
                        ("path: image\nprobabilities: 3\n", "probabilities is a mapping"),
                        ("path: [unclosed\n", "not valid YAML"), ("{{{{:", "not valid YAML")]:
        columns = tmp_path / "bad.yaml"
        columns.write_text(text)
        with pytest.raises(ValueError, match=re.escape(words)) as error:
            ColumnMap.from_yaml(columns)
        assert "\n" not in str(error.value)


def test_hostile_predictions_rows_are_counted_and_skipped(crafted, tmp_path, monkeypatch):
    """A symlink loop as a path, probabilities outside [0, 1], and a line over the bound (never echoed)."""
    from facescope.evaluation import audit as audit_module

    data, _, _ = crafted
    (tmp_path / "loop-a.jpg").symlink_to(tmp_path / "loop-b.jpg")
    (tmp_path / "loop-b.jpg").symlink_to(tmp_path / "loop-a.jpg")
    lines = [json.dumps({"path": str(tmp_path / "loop-a.jpg"), "gender": "man", "p_gender_Male": 0.9,
                         "p_gender_Female": 0.1})]
    for index, name in enumerate(PHOTOS):
        male = 4.1 if index == 0 else -0.5 if index == 1 else 0.8  # two rows: probabilities that are not
        lines.append(json.dumps({"path": name, "gender": "man", "p_gender_Male": male, "p_gender_Female": 1 - male}))
    secret = "=SECRET" + "x" * 5000
    lines.insert(3, json.dumps({"path": secret, "gender": "man"}))
    lines.insert(4, "[1, 2, 3]")
    predictions = tmp_path / "tool.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(audit_module, "MAX_LINE_BYTES", 1000)
    runs, context, folder = audit_module.audit([("=tool", predictions, ColumnMap()), ("@other", predictions, ColumnMap())],
                                               data, min_group_size=1, n_boot=10, output=tmp_path / "report")
    join = context["joins"][0]
    assert join["skipped"] == {"line too long": 1, "not a JSON object": 1, "probability outside [0, 1]": 2}
    assert join["matched"] == len(PHOTOS) and join["unmatched_rows"] == 1  # the loop: unmatched, no crash
    table = runs[0].table
    assert table["p_gender_Male"].isna().sum() == 2 and table["p_gender_Male"].dropna().between(0, 1).all()
    assert runs[0].result.overall["gender_ece"] <= 1
    for written in [p for p in folder.rglob("*") if p.is_file()]:  # the report and its column maps
        assert "SECRET" not in written.read_text(errors="replace"), written.name
    cells = pd.read_csv(folder / "predictions.csv", dtype=str)
    assert set(cells["estimator"]) == {"'=tool", "'@other"}  # a spreadsheet shows them as text


def test_audit_writes_nothing_outside_its_output_folder(crafted, tmp_path):
    import os
    import subprocess
    import sys

    data, predictions, columns = crafted
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("MPLCONFIGDIR", None)
    outcome = subprocess.run([sys.executable, "-m", "facescope", "audit", "-p", str(predictions), "--columns",
                              str(columns), "--data", str(data), "--n-boot", "10", "--min-group-size", "1",
                              "--output", str(tmp_path / "out")], env=env, capture_output=True, text=True)
    assert outcome.returncode == 0, outcome.stderr
    assert (tmp_path / "out" / "report.html").is_file()
    assert [p for p in home.rglob("*")] == []


def test_a_predictions_file_over_the_size_bound_is_refused(crafted, tmp_path, monkeypatch):
    from facescope.evaluation import audit as audit_module

    _, predictions, _ = crafted
    monkeypatch.setattr(audit_module, "MAX_PREDICTIONS_BYTES", 100)
    with pytest.raises(ValueError, match="over the limit"):
        audit_module.read_predictions(predictions)


def test_a_json_document_on_one_long_line_is_read_whole_and_nothing_is_skipped(tmp_path, monkeypatch):
    """DeepFace's analyze results as one JSON document: a single line longer than the line bound is
    the document itself, read whole, not a line passed over."""
    from facescope.evaluation import audit as audit_module

    monkeypatch.setattr(audit_module, "MAX_LINE_BYTES", 1000)
    document = tmp_path / "deepface.json"
    document.write_text(json.dumps([{"img_path": f"photo{i}.jpg", "dominant_gender": "Woman", "age": 30,
                                     "region": {"w": 10, "h": 10}} for i in range(50)]))
    skipped = {}
    table = audit_module.read_predictions(document, skipped)
    assert len(table) == 50 and skipped == {}
