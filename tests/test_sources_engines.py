"""One home each: what an input is (facescope.inference.sources), which engine reads it (facescope.engines),
and the detection options declared once (facescope.faces.options) behind the CLI's flags, the API's query
parameters and the server's settings."""

from __future__ import annotations

import inspect

import pytest
import typer.main

from facescope import engines
from facescope.engines import ENGINES, choose
from facescope.faces import options
from facescope.inference.sinks import OutputFormat, ShardSink, StreamSink
from facescope.inference.sources import Inputs, Kind, classify


def test_every_kind_of_input_is_told_apart(tmp_path):
    (tmp_path / "album").mkdir()
    (tmp_path / "face.jpg").write_bytes(b"")
    assert classify(str(tmp_path / "face.jpg")) is Kind.PHOTO
    assert classify(str(tmp_path / "missing.jpg")) is Kind.PHOTO  # read, and given its error record
    assert classify(str(tmp_path / "album")) is Kind.FOLDER
    assert classify("-") is Kind.STDIN
    assert classify("s3://bucket/photos/") is Kind.URI
    assert classify("clip.MP4") is Kind.VIDEO and classify("https://example.org/clip.webm") is Kind.VIDEO
    assert classify("rtsp://camera.local/stream") is Kind.STREAM
    assert classify("0") is Kind.CAMERA
    assert Inputs(("-",), manifest="list.csv").kinds == {Kind.STDIN, Kind.MANIFEST}


@pytest.mark.parametrize(("arguments", "sink", "engine"), [
    (("a.jpg", "photos/"), StreamSink(), "local"),
    (("-",), StreamSink(OutputFormat.csv), "local"),
    (("clip.mp4",), StreamSink(), "video"),
    (("rtsp://camera.local/stream",), StreamSink(), "video"),
    (("photos/", "s3://bucket/more/"), ShardSink("out"), "ray"),
])
def test_the_first_engine_that_reads_the_inputs_is_chosen(arguments, sink, engine):
    assert choose(None, Inputs(arguments), sink) == engine


@pytest.mark.parametrize(("name", "arguments", "sink", "words"), [
    (None, (), StreamSink(), "give photos"),
    (None, ("photos/",), ShardSink("out"), "--output are for --engine ray"),
    (None, ("photos/",), StreamSink(OutputFormat.parquet), "--format parquet"),
    (None, ("clip.mp4", "other.mp4"), StreamSink(), "read alone"),
    (None, ("clip.mp4",), StreamSink(OutputFormat.csv), "read alone"),
    (None, ("clip.mp4", "a.jpg"), StreamSink(), "read alone"),
    ("ray", ("photos/",), StreamSink(), "give --output"),
    ("ray", ("clip.mp4",), ShardSink("out"), "reads photos, folders, URIs"),
    ("local", ("s3://bucket/photos/",), StreamSink(), "give photos"),
])
def test_inputs_or_outputs_an_engine_does_not_take_are_its_usage(name, arguments, sink, words):
    with pytest.raises(ValueError, match=words):
        choose(name, Inputs(arguments), sink)


def test_every_engine_is_a_run_of_source_predictor_and_sink():
    for name in ENGINES:
        run = engines.load(name)
        assert list(inspect.signature(run).parameters) == ["source", "predictor", "sink"], name


def _flags(command) -> dict:
    app = typer.Typer()
    app.command()(command)
    return {param.name: param for param in typer.main.get_command(app).params}


@pytest.mark.parametrize("target", ["facescope.cli.predict:predict_command", "facescope.cli.serve:serve_command"])
def test_the_flags_are_made_from_the_declaration(target):
    import importlib

    module, _, name = target.partition(":")
    flags = _flags(getattr(importlib.import_module(module), name))
    for option in options.DETECTION_OPTIONS:
        flag = flags[option]
        assert (flag.min, flag.max) == options.bounds(option), option
        assert flag.default is None and f"(default {options.default(option)})" in flag.help, option


def test_the_api_and_the_settings_take_the_declaration(monkeypatch):
    from facescope.serving.app import create_app
    from facescope.serving.settings import Settings

    for variable in (f"FACESCOPE_{option.upper()}" for option in options.DETECTION_OPTIONS):
        monkeypatch.delenv(variable, raising=False)
    parameters = {p["name"]: p for p in create_app().openapi()["paths"]["/api/v1/predict"]["post"]["parameters"]}
    settings = Settings()
    for option in options.DETECTION_OPTIONS:
        schema = parameters[option]["schema"]["anyOf"][0]
        assert (schema["minimum"], schema["maximum"]) == options.bounds(option), option
        assert parameters[option]["description"].startswith(options.DetectionOptions.model_fields[option].description)
        assert getattr(settings, option) == options.default(option)
        assert Settings.model_fields[option].metadata == options.DetectionOptions.model_fields[option].metadata


def test_the_predictor_checks_the_declared_bounds():
    with pytest.raises(ValueError, match="max_faces must be between 1 and 10000, not 0"):
        options.check_detection_options({"max_faces": 0})
    with pytest.raises(TypeError, match="unknown detection option"):
        options.check_detection_options({"max_face": 3})
    options.check_detection_options({name: options.default(name) for name in options.DETECTION_OPTIONS})


def test_thresholds_travel_in_the_spec_to_where_the_photos_are_estimated(utkface_files, predictor):
    """--threshold goes into the PredictorSpec and the local engine answers under it: "none" gives the
    library's answers unchanged, a bar of 1 withholds every answer short of certainty, probabilities kept."""
    import json

    from typer.testing import CliRunner

    from facescope.cli import app
    from facescope.engines import PredictorSpec
    from facescope.heads import DEFAULT_THRESHOLDS, UNCERTAIN

    heads = predictor.info.heads
    assert PredictorSpec().answer_thresholds(heads) == DEFAULT_THRESHOLDS
    assert PredictorSpec(thresholds=("none",)).answer_thresholds(heads) == {}
    photos = [str(p) for p in utkface_files[:3]]
    library = [json.loads(predictor.predict_image(p).model_dump_json()) for p in photos]

    answered = CliRunner().invoke(app, ["predict", *photos, "--threshold", "none"])
    assert answered.exit_code == 0, answered.output
    assert [json.loads(line) for line in answered.stdout.splitlines()] == library

    strict = CliRunner().invoke(app, ["predict", *photos, "--threshold", "gender=1", "--threshold", "race=1"])
    assert strict.exit_code == 0, strict.output
    records = [json.loads(line) for line in strict.stdout.splitlines()]
    assert sum(len(r["faces"]) for r in records) == sum(len(r["faces"]) for r in library) > 0
    for record, plain in zip(records, library):
        for face, alike in zip(record["faces"], plain["faces"]):
            for head in ("gender", "race"):
                assert face[head]["probs"] == alike[head]["probs"]
                top = max(alike[head]["probs"].values())
                assert face[head]["label"] == (alike[head]["label"] if top >= 1 else UNCERTAIN)
            withheld = max(alike["age"]["bin_probs"].values()) < DEFAULT_THRESHOLDS["age"]  # the default kept
            assert face["age"]["bin"] == (UNCERTAIN if withheld else alike["age"]["bin"])


def test_a_threshold_is_checked_against_the_loaded_model_reading_model_json_once(utkface_files, bundle_dir,
                                                                                   monkeypatch):
    """--threshold names heads: they are checked against the model the engine loads, not against a
    second reading of its model.json."""
    from typer.testing import CliRunner

    from facescope.bundles import BundleInfo
    from facescope.cli import app

    reads = []
    parse = BundleInfo.from_json.__func__  # every reading of a model.json is parsed here

    def counted(cls, text, source="model.json"):
        reads.append(source)
        return parse(cls, text, source)

    monkeypatch.setattr(BundleInfo, "from_json", classmethod(counted))
    outcome = CliRunner().invoke(app, ["predict", str(utkface_files[0]), "--model", str(bundle_dir),
                                       "--threshold", "gender=0.7"])
    assert outcome.exit_code == 0, outcome.output
    assert reads == [str(bundle_dir / "model.json")]


@pytest.mark.parametrize(("arguments", "words"), [
    (["face.jpg", "--threshold", "mood=0.5"], "the model has no head 'mood'"),
    (["face.jpg", "--threshold", "gender=2"], "between 0 and 1"),
    (["clip.mp4", "--threshold", "gender=0.7"], "error: --threshold is for photos"),
])
def test_a_threshold_that_cannot_apply_is_one_line(arguments, words, tmp_path, monkeypatch):
    """A bad item, or any threshold for a video (its tracks answer from every frame's probabilities
    pooled), is refused in one line with status 2, before anything is read."""
    from typer.testing import CliRunner

    from facescope.cli import app

    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(app, ["predict", *arguments])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stdout == ""
    assert words in outcome.stderr
    assert "Traceback" not in outcome.output
