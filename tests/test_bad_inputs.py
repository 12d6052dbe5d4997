"""Every case of the bad-input corpus (tests/bad_inputs.py) gets its one outcome through the CLI, the
Python API and the server: a result or one clear error record, never a crash, a hang or a lost file."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facescope.cli import app
from facescope.faces.intake import display_name
from facescope.serving.app import create_app
from tests.bad_inputs import Case, named_cases, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, utkface_files) -> tuple:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder, utkface_files[0])


def check_outcome(case: Case, result: dict) -> None:
    if case.outcome == "error":
        assert result["error"] and case.reason in result["error"], (case.name, result["error"])
        assert result["faces"] == [] and result["faces_found"] == 0
        return
    assert result["error"] is None, (case.name, result["error"])
    assert (len(result["faces"]) > 0) == (case.outcome == "face"), case.name
    assert result["faces_found"] == len(result["faces"])
    assert result.get("frames") == case.frames, case.name


def test_cli_gives_every_entry_one_record_in_order(corpus, bundle_dir):
    folder, cases = corpus
    # Some given by name too: a FIFO, a loop, a missing file, a name too long, a path under a file.
    given = [(str(folder / "pipe.jpg"), Case("pipe.jpg", "error", "named pipe")),
             (str(folder / "loop-a.jpg"), Case("loop-a.jpg", "error", "loop")), *named_cases(folder)]
    named = [path for path, _ in given]
    outcome = CliRunner().invoke(app, ["predict", str(folder), *named, "--model", str(bundle_dir)])
    assert outcome.exit_code == 1, outcome.output  # some inputs unreadable, none an internal error
    records = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert [r["path"] for r in records] == [display_name(folder / c.name) for c in cases] + named
    for case, record in zip(cases + [case for _, case in given], records):
        check_outcome(case, record)
    errors = sum(c.outcome == "error" for c in cases) + len(named)
    assert f"{len(cases) + len(named)} files" in outcome.stderr and f"{errors} unreadable" in outcome.stderr


def test_cli_json_and_csv_stay_valid_and_csv_cells_are_never_formulas(corpus, bundle_dir, monkeypatch):
    folder, cases = corpus
    as_json = CliRunner().invoke(app, ["predict", str(folder), "--model", str(bundle_dir), "-f", "json"])
    assert len(json.loads(as_json.stdout)) == len(cases)
    as_csv = CliRunner().invoke(app, ["predict", str(folder), "--model", str(bundle_dir), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {row["path"] for row in rows} == {display_name(folder / c.name) for c in cases}
    monkeypatch.chdir(folder)  # so the path, as given and printed, starts with "="
    with_formula_name = CliRunner().invoke(
        app, ["predict", "=HYPERLINK(\"http---x\").jpg", "--model", str(bundle_dir), "-f", "csv"])
    cells = [cell for row in csv.reader(io.StringIO(with_formula_name.stdout)) for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells), cells


def test_python_api_gives_the_same_outcomes(corpus, predictor):
    folder, cases = corpus
    given = named_cases(folder) + [(str(folder / "nul\0.jpg"), Case("nul", "error", "NUL byte"))]
    cases = cases + [case for _, case in given]
    results = list(predictor.predict_images([folder / c.name for c in cases[:-len(given)]] + [p for p, _ in given]))
    for case, result in zip(cases, results):
        check_outcome(case, json.loads(result.model_dump_json()))


def test_server_gives_each_uploaded_case_its_status(corpus, predictor):
    folder, cases = corpus
    # A generous time limit: the 36 MP photo may queue behind other work on a busy machine (the time
    # limit itself is tested in test_api.py).
    client = TestClient(create_app(predictor=predictor, max_upload_bytes=20 * 1024 * 1024, request_timeout_s=600))
    for case in cases:
        if not case.regular:
            continue
        data = (folder / case.name).read_bytes()
        response = client.post("/api/v1/predict", files={"file": ("upload.jpg", data, "application/octet-stream")})
        assert response.headers["cache-control"] == "no-store"
        if case.outcome != "error":
            assert response.status_code == 200, (case.name, response.text)
            check_outcome(case, response.json())
        elif case.reason in ("empty file", "not an image"):
            assert response.status_code == 415, case.name
        else:
            assert response.status_code == 422 and case.reason in response.json()["detail"], (case.name, response.text)
