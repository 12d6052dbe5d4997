"""The model card: every section of Mitchell et al., readable numbers, no Python dicts, and the same card
as structured sections from GET /api/v1/model."""

from __future__ import annotations

import dataclasses
import re

from facescope.bundles import read_bundle_info
from facescope.bundles.card import card_sections, render_model_card

MITCHELL_SECTIONS = ["Model details", "Intended use", "Factors", "Metrics", "Decision thresholds",
                     "Evaluation data", "Training data", "Quantitative analyses", "Ethical considerations",
                     "Caveats and recommendations"]


def _with_evaluation_elsewhere(info):
    """The bundled model's info, also evaluated on a second data set (as --update-bundle records it)."""
    other = {**info.evaluation, "dataset": "aaf", "faces": 500, "split": "all",
             "intervals": {"bootstrap_resamples": 1000, "unit": "face",
                           "overall": {"gender_accuracy": [0.81, 0.86]}}}
    return dataclasses.replace(info, evaluation={**info.evaluation, "other_datasets": {"aaf": other}})


def test_card_has_every_section_and_readable_numbers():
    # The packaged UTKFace-only model: its recipe has a learning rate of 0.0005, and AAF is not its data.
    info = _with_evaluation_elsewhere(read_bundle_info("utkface-mobilenetv2"))
    card = render_model_card(info)
    headings = re.findall(r"^## (.+)$", card, re.MULTILINE)
    for section in MITCHELL_SECTIONS:
        assert section in headings, section
    assert "Quantitative analyses on aaf" in headings  # every data set evaluated, not only the source
    assert "aaf: 500 faces, all split (another source than the training data)" in card
    assert "Female is the positive class" in card and "arg-max" in card and "score is at least 0.7" in card
    assert "binary" in card and "apparent race" in card
    # A learning rate of 0.0005 keeps its digit; no Python dict or tuple is printed.
    assert "| 0.0005 |" in card
    assert not re.search(r"\{'|\('|': ", card)
    assert "gender_accuracy" not in card and "age_bin_one_off_accuracy" not in card
    assert "| gender accuracy | 93.6% (81.0% – 86.0%) |" in card  # the figure with its interval


def test_api_serves_the_card_as_sections(predictor):
    from fastapi.testclient import TestClient

    from facescope.serving.app import create_app

    body = TestClient(create_app(predictor=predictor)).get("/api/v1/model").json()
    assert body["name"] == predictor.info.name and "evaluation" in body  # the existing fields stay
    sections = body["card"]["sections"]
    assert [s["title"] for s in sections if ":" not in s["title"]][:3] == ["Model details", "Intended use",
                                                                          "It must not be used for"]
    assert sections == card_sections(predictor.info)
    for section in sections:
        assert set(section) == {"title", "paragraphs", "tables"}
        assert all(isinstance(p, str) for p in section["paragraphs"])
        for table in section["tables"]:
            assert all(len(row) == len(table["columns"]) for row in table["rows"])
            assert all(isinstance(cell, (str, int, float)) or cell is None for row in table["rows"] for cell in row)
    overall = next(s for s in sections if s["title"] == "Quantitative analyses: Overall")
    assert overall["tables"][0]["rows"][0][0] == "gender accuracy"


def test_the_card_module_imports_no_pandas():
    # The server imports the card at start-up; the data sets' descriptions (whose loaders need pandas) are
    # read only when a card is written.
    import subprocess
    import sys

    code = "import sys\nimport facescope.bundles.card\nassert 'pandas' not in sys.modules, 'pandas was imported'\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_the_threshold_cost_names_its_groupings_as_the_report_does():
    info = read_bundle_info("utkface-mobilenetv2")
    cost = [{"head": "gender", "threshold": 0.6, "grouping": "race x age_bin", "group": "Black x 0-2", "faces": 40,
             "coverage": 0.5, "answered_accuracy": 0.9, "accuracy": 0.8}]
    info = dataclasses.replace(info, evaluation={**info.evaluation, "default_thresholds": {"cost": cost}})
    card = render_model_card(info)
    assert "race × age group: Black x 0-2" in card
    assert "race x age_bin:" not in card
