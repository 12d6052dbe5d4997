"""The `facescope` command's surface: -h, --version, verbs in order, an example in every help, switches
shown as switches, completion offered, and start-up that loads only what a verb needs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import facescope
from facescope.cli import VERBS, app

HEAVY_MODULES = ("onnxruntime", "cv2", "torch", "torchvision")


def run_facescope(*args: str, cwd=None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`python -X importtime -m facescope ARGS` in a fresh process: its result and every module it imported."""
    process = subprocess.run([sys.executable, "-X", "importtime", "-m", "facescope", *args],
                             capture_output=True, text=True, cwd=cwd, timeout=120)
    imported = {line.split("|")[-1].strip() for line in process.stderr.splitlines() if line.startswith("import time:")}
    return process, imported


def test_help_lists_the_verbs_most_used_first_and_loads_no_model_library():
    process, imported = run_facescope("-h")
    assert process.returncode == 0, process.stderr
    commands = process.stdout.split("Commands:")[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ") and line.split()
              and line.split()[0] in VERBS]
    assert listed == list(VERBS)
    assert list(VERBS)[:3] == ["predict", "serve", "evaluate"]
    assert "--install-completion" in process.stdout and "--show-completion" in process.stdout
    assert "facescope predict" in process.stdout  # the examples
    assert not {module for module in imported if module.split(".")[0] in HEAVY_MODULES}
    assert "pandas" not in imported


def test_data_stats_loads_no_model_library_and_keeps_stdout_empty(tmp_path):
    dataset = tmp_path / "utk"
    dataset.mkdir()
    for name in ("25_1_0_20170116174525125.jpg.chip.jpg", "40_0_1_20170117134213422.jpg.chip.jpg",
                 "3_1_2_20161219140530307.jpg.chip.jpg"):
        (dataset / name).write_bytes(b"labels come from the name; the bytes are not read")
    process, imported = run_facescope("data", "stats", str(dataset), "-o", str(tmp_path / "report"))
    assert process.returncode == 0, process.stderr
    assert process.stdout == ""  # the summary is a notice: stderr
    assert (tmp_path / "report" / "report.md").is_file()
    assert not {module for module in imported if module.split(".")[0] in HEAVY_MODULES}


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_help_loads_no_model_library(verb):
    process, imported = run_facescope(verb, "-h")
    assert process.returncode == 0, process.stderr
    assert not {module for module in imported if module.split(".")[0] in HEAVY_MODULES}, verb


def test_version_and_short_help():
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0
    assert version.stdout.strip() == f"facescope {facescope.__version__}"
    assert runner.invoke(app, ["-V"]).stdout == version.stdout
    long, short = runner.invoke(app, ["--help"]), runner.invoke(app, ["-h"])
    assert long.exit_code == short.exit_code == 0
    assert short.stdout == long.stdout
    assert runner.invoke(app, ["predict", "-h"]).stdout == runner.invoke(app, ["predict", "--help"]).stdout
    typo = runner.invoke(app, ["predcit", "photo.jpg"])
    assert typo.exit_code == 2
    assert "Did you mean 'predict'?" in typo.output


@pytest.mark.parametrize("verb", [*VERBS, "data stats", "data split"])
def test_every_verb_help_has_an_example_and_shows_switches_as_switches(verb):
    result = CliRunner().invoke(app, [*verb.split(), "--help"], prog_name="facescope")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert f"facescope {verb}" in result.stdout.split("Example")[1]  # the example uses this very verb
    assert "<bool>" not in result.stdout  # `--aligned`, not `--aligned <bool>`
    assert "-h, --help" in result.stdout


def test_help_texts_name_what_the_registries_hold():
    from facescope.data.loaders import FORMATS
    from facescope.model.network import BACKBONES

    runner = CliRunner()
    stats_help = runner.invoke(app, ["data", "stats", "--help"]).stdout
    train_help = " ".join(runner.invoke(app, ["train", "--help"]).stdout.split())
    for name in FORMATS:
        assert name in stats_help and name in train_help
    for name in BACKBONES:
        assert name in train_help


def test_shell_completion_completes_verbs_and_options():
    env = os.environ | {"_FACESCOPE_COMPLETE": "complete_bash", "COMP_WORDS": "facescope pre", "COMP_CWORD": "1"}
    verbs = subprocess.run([sys.executable, "-m", "facescope"], env=env, capture_output=True, text=True, timeout=60)
    assert verbs.stdout.split() == ["predict"]
    env |= {"COMP_WORDS": "facescope predict --ali", "COMP_CWORD": "2"}
    options = subprocess.run([sys.executable, "-m", "facescope"], env=env, capture_output=True, text=True, timeout=60)
    assert options.stdout.split() == ["--aligned"]


def test_models_lists_the_good_bundles_and_one_line_for_each_broken_one(tmp_path, monkeypatch):
    """Installed bundles whose model.json breaks its schema (an evaluation of the wrong type, a string
    size, a zero framing, NaN, nesting no parser survives) are each one line
    naming the field; the good ones are listed in full, and nothing ends in a traceback."""
    import json
    import shutil

    from facescope.bundles import read_info, resolve_bundle

    good = json.loads((resolve_bundle("default") / "model.json").read_text())
    models = tmp_path / "models"
    broken = {
        "a-evaluation": ({**good, "evaluation": ["gender_accuracy", 0.94]},
                         "evaluation (a list): should be a JSON object"),
        "b-size": ({**good, "input": {**good["input"], "size": "192"}}, "input.size '192': should be a whole number"),
        "c-framing": ({**good, "framing": {**good["framing"], "reference_size": 0}},
                      "framing.reference_size 0: should be greater than or equal to 16"),
        "d-nan": ({**good, "evaluation": {**good["evaluation"], "equalized_odds_difference": float("nan")}},
                  "evaluation.equalized_odds_difference nan: should be a finite number (JSON has no NaN or infinity)"),
        "e-deep": ("[" * 100_000, "nested deeper than 32 levels"),
    }
    for name, (document, _) in broken.items():
        (models / name).mkdir(parents=True)
        (models / name / "model.json").write_text(document if isinstance(document, str) else json.dumps(document))
    shutil.copytree(resolve_bundle("default"), models / "f-good")
    monkeypatch.setenv("FACESCOPE_CACHE", str(tmp_path))
    listed = CliRunner().invoke(app, ["models"])
    assert listed.exit_code == 0 and listed.exception is None, listed.output
    lines = listed.stdout.splitlines()
    for name, (_, message) in broken.items():
        [line] = [line for line in lines if line.startswith(f"{name}  ")]
        assert line == f"{name}  UNUSABLE: {models / name / 'model.json'}: {message}", line
    info = read_info(resolve_bundle("default"))  # whichever model is bundled: its own name, backbone and size
    assert f"f-good  ({info.name}, {info.backbone} at {info.input_size} px)" in lines
    assert "Traceback" not in listed.output
