"""A model with a fourth output, declared once (a `Head`), goes through every layer untouched: it loads,
predicts (the new output under its own name in the JSON), is drawn, written as CSV and Parquet, pooled
over a video track, described in the model card, evaluated, and served by the API."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from facescope import labels  # noqa: E402
from facescope.cli import app  # noqa: E402
from facescope.heads import DEFAULT_THRESHOLDS, standard_heads  # noqa: E402
from facescope.inference.predictor import Predictor  # noqa: E402
from facescope.inference.results import LabelEstimate, csv_columns  # noqa: E402
from tests.conftest import FOUR_OUTPUT_HEADS, compose_canvas  # noqa: E402

# The only declaration (tests.conftest): FairFace's 7 races beside the model's UTKFace 5, learning from the
# same records.
HEADS = FOUR_OUTPUT_HEADS
# The CSV columns of today's three outputs, in their order: they stay as they are (`model`: the model
# that made the row's estimates).
THREE_OUTPUT_COLUMNS = ["path", "model", "width", "height", "faces_found", "face", "x1", "y1", "x2", "y2", "score",
                        "age_years", "age_bin", "gender", "gender_prob", "race", "race_prob", "error"]


@pytest.fixture(scope="module")
def photo(tmp_path_factory, utkface_files):
    canvas, _ = compose_canvas(utkface_files[:2])
    path = tmp_path_factory.mktemp("photo") / "two.png"
    Image.fromarray(canvas).save(path)
    return path


def test_the_three_outputs_keep_their_csv_columns():
    assert csv_columns(standard_heads("utkface5")) == THREE_OUTPUT_COLUMNS
    assert csv_columns(standard_heads("fairface7", "age_bins")) == THREE_OUTPUT_COLUMNS
    assert csv_columns(HEADS) == THREE_OUTPUT_COLUMNS[:-1] + ["race_fairface", "race_fairface_prob", "error"]


def test_a_fourth_output_loads_predicts_and_is_written_drawn_and_pooled(four_output_bundle, photo, tmp_path):
    predictor = Predictor(four_output_bundle)
    assert predictor.info.heads == HEADS

    # Predicted: under its own name, next to the usual three.
    outcome = CliRunner().invoke(app, ["predict", str(photo), "--model", str(four_output_bundle)])
    assert outcome.exit_code == 0, outcome.output
    record = json.loads(outcome.stdout)
    assert len(record["faces"]) == 2
    for face in record["faces"]:
        assert set(labels.UTKFACE5.labels) == set(face["race"]["probs"])
        extra = face["race_fairface"]
        assert list(extra["probs"]) == list(labels.FAIRFACE7.labels)
        assert extra["label"] == max(extra["probs"], key=extra["probs"].get)
        assert sum(extra["probs"].values()) == pytest.approx(1.0, abs=1e-3)
    # The CLI's answers are the library's with the default confidence thresholds applied.
    assert record == predictor.predict_image(photo, thresholds=DEFAULT_THRESHOLDS).model_dump(mode="json")

    # Written as CSV: its own two columns, the values the JSON has.
    as_csv = CliRunner().invoke(app, ["predict", str(photo), "--model", str(four_output_bundle), "-f", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines()[0] == ",".join(csv_columns(HEADS))
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    for row, face in zip(rows, record["faces"], strict=True):
        extra = face["race_fairface"]
        assert (row["race_fairface"], float(row["race_fairface_prob"])) == (extra["label"], extra["probs"][extra["label"]])
        assert row["race"] == face["race"]["label"] and float(row["age_years"]) == face["age"]["years"]

    # Written as the Ray engine's Parquet shards (the writer alone: no cluster needed).
    pq = pytest.importorskip("pyarrow.parquet")
    from facescope.batch import _write_shard

    shard = io.BytesIO()
    _write_shard([json.dumps(record)], "parquet", shard, HEADS)
    table = pq.read_table(io.BytesIO(shard.getvalue()))
    assert table.column_names == csv_columns(HEADS)
    assert table.column("race_fairface").to_pylist() == [f["race_fairface"]["label"] for f in record["faces"]]

    # Drawn: its label after the usual three, on the photo.
    result = predictor.predict_image(photo)
    face = result.faces[0]
    assert isinstance(face.race_fairface, LabelEstimate)
    assert face.short_label() == f"{face.age.years:.0f}y {face.gender.label} {face.race.label} {face.race_fairface.label}"
    drawn = np.asarray(result.draw(photo))
    original = np.asarray(Image.open(photo).convert("RGB"))
    assert drawn.shape[1] == original.shape[1] and not np.array_equal(drawn[: original.shape[0]], original)
    annotated = tmp_path / "annotated"
    outcome = CliRunner().invoke(app, ["predict", str(photo), "--model", str(four_output_bundle),
                                       "--annotate", str(annotated)])
    assert outcome.exit_code == 0 and (annotated / "two.annotated.jpg").is_file()

    # Pooled over a video track: the same outputs, the new one under its own name.
    from facescope.inference.video import TrackPool

    pool = TrackPool(track_id=1, first_frame=0, first_time=0.0)
    pool.add(face, 0, 0.0)
    pool.add(face.model_copy(update={"score": 0.5}), 1, 0.1)
    summary = json.loads(pool.summary("clip.mp4", "end").model_dump_json())
    assert list(summary)[-4:] == ["age", "gender", "race", "race_fairface"]
    assert summary["race_fairface"]["label"] == face.race_fairface.label
    assert summary["race_fairface"]["probs"] == pytest.approx(face.race_fairface.probs, abs=1e-4)


def test_a_fourth_output_is_described_and_served(four_output_bundle, photo):
    from fastapi.testclient import TestClient

    from facescope.bundles.card import render_model_card
    from facescope.serving.app import create_app

    predictor = Predictor(four_output_bundle)
    card = render_model_card(predictor.info)
    assert "four heads: gender (Female, Male), race (utkface5: " in card
    assert f"race_fairface (fairface7: {', '.join(labels.FAIRFACE7.labels)})" in card
    assert "probabilities for each gender and race and race_fairface label" in card

    client = TestClient(create_app(predictor=predictor))
    model = client.get("/api/v1/model").json()
    assert model["labels"] == {"gender": list(labels.GENDERS), "race": list(labels.UTKFACE5.labels),
                               "age_bins": list(labels.AGE_BIN_LABELS), "race_fairface": list(labels.FAIRFACE7.labels)}
    # What the page reads to show and write each output: every head in the model's order, its kind and
    # its CSV columns, and the whole CSV header, the CLI's.
    assert [(head["name"], head["kind"], head["taxonomy"]) for head in model["heads"]] == [
        ("gender", "label", "gender"), ("race", "label", "utkface5"), ("age", "age_years", None),
        ("race_fairface", "label", "fairface7")]
    assert model["heads"][3]["labels"] == list(labels.FAIRFACE7.labels)
    assert model["heads"][3]["csv_columns"] == ["race_fairface", "race_fairface_prob"]
    assert model["heads"][2]["labels"] == list(labels.AGE_BIN_LABELS)
    assert model["csv_columns"] == csv_columns(HEADS)
    answer = client.post("/api/v1/predict", params={"annotate": "true"},
                         files={"file": ("two.png", photo.read_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body.pop("annotated_image").startswith("data:image/jpeg;base64,")
    expected = predictor.predict_image(photo.read_bytes(), name="two.png", thresholds=DEFAULT_THRESHOLDS)
    assert body == expected.model_dump(mode="json")
    assert all(face["race_fairface"]["label"] in labels.FAIRFACE7.labels for face in body["faces"])


def test_a_fourth_output_is_evaluated_beside_the_three(four_output_bundle, utkface_dir, tmp_path, monkeypatch):
    """`facescope evaluate` on the four-output bundle: the three outputs are scored as ever, and the fourth,
    learning from the same races in FairFace's 7, is scored beside them in the data's UTKFace 5 (its coarse
    view, as the race head is); its answers and probabilities are in the predictions it writes, under its own
    name."""
    monkeypatch.setenv("FACESCOPE_CACHE", str(tmp_path / "cache"))
    outcome = CliRunner().invoke(app, ["evaluate", "--model", str(four_output_bundle), "--data", str(utkface_dir),
                                       "--split", "test", "--limit", "30", "--n-boot", "20",
                                       "--output", str(tmp_path / "report")])
    assert outcome.exit_code == 0, outcome.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert {"gender_accuracy", "race_accuracy", "age_mae"} <= set(metrics["overall"])
    with open(tmp_path / "report" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Scored as the race head is on coarser data: its probabilities summed into UTKFace's 5 races.
    assert {f"p_race_fairface_{label}" for label in labels.UTKFACE5.labels} <= set(rows[0])
    rows = [row for row in rows if row["race_fairface"]]
    assert rows and {row["pred_race_fairface"] for row in rows} <= set(labels.UTKFACE5.labels)
    assert [row["race_fairface"] for row in rows] == [row["race"] for row in rows]
    right = sum(row["pred_race_fairface"] == row["race_fairface"] for row in rows) / len(rows)
    assert metrics["overall"]["race_fairface_accuracy"] == pytest.approx(right)
    assert "race_fairface" in {row["head"] for row in metrics["coverage"]}
