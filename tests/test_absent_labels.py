"""Data sets that lack a label (LFW: race and age; All-Age-Faces: race) say so: `data stats` names the
absent labels and draws no empty table or chart for them; `data to-48x48`, which needs all three, refuses
in one line and writes nothing, as it does when no face is found."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from facescope.cli import app
from facescope.data import load_dataset
from facescope.faces.crops import write_utk48_csv
from facescope.paths import data_root


def shared(name: str):
    folder = data_root() / name
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"{folder} not found (set FACESCOPE_DATA to ../shared/data)")
    return folder


@pytest.mark.parametrize(("name", "absent", "charts"), [
    ("lfw", ["race", "age_bin"], {"gender.png"}),
    ("aaf", ["race"], {"gender.png", "age_bin.png", "age_histogram.png"}),
])
def test_stats_name_the_absent_labels_and_draw_nothing_for_them(name, absent, charts, tmp_path):
    outcome = CliRunner().invoke(app, ["data", "stats", str(shared(name)), "-o", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["absent"] == absent
    assert stats["dataset"]["taxonomy"] is None
    assert set(stats["counts"]) == {"race", "gender", "age_bin"} - set(absent)
    assert all(row["count"] > 0 for rows in stats["counts"].values() for row in rows)
    assert {p.name for p in tmp_path.glob("*.png")} == charts  # no chart of an absent label
    assert stats["race_x_gender"] == {} and stats["balance"]["race_x_gender"] == {}
    report = (tmp_path / "report.md").read_text()
    assert "This data set has no race" in report and "By race" not in report
    assert "no race labels" in " ".join(outcome.output.split())


def test_to_48x48_refuses_a_data_set_without_race_labels_and_writes_nothing(tmp_path):
    target = tmp_path / "utk48.csv"
    target.write_text("kept\n")
    outcome = CliRunner().invoke(app, ["data", "to-48x48", str(shared("aaf")), "-o", str(target)])
    assert outcome.exit_code != 0
    assert "no record has a label for UTKFace race" in str(outcome.exception)
    assert target.read_text() == "kept\n"


def test_to_48x48_with_no_face_found_is_an_error_and_keeps_the_file(tmp_path):
    folder = tmp_path / "utk"
    folder.mkdir()
    for name in ("25_1_0_20170101000000001.jpg", "40_0_2_20170101000000002.jpg"):
        Image.new("RGB", (200, 200), (128, 128, 128)).save(folder / name)  # labelled, but no face
    target = tmp_path / "utk48.csv"
    target.write_text("kept\n")
    with pytest.raises(ValueError, match="no face found in any of the 2 photos"):
        write_utk48_csv(load_dataset(folder).records, target, cache_dir=tmp_path / "cache")
    assert target.read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "utk", "utk48.csv"]  # no partial file left
