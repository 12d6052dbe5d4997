"""Each verb needs only its extra: auditing a predictions file never imports PyTorch, and a verb whose
extra is missing says in one line what to install (simulated by hiding the library from imports)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

# Runs the CLI with the named libraries hidden: importing them raises ModuleNotFoundError, as in an install
# without their extra. Then reports whether torch was imported.
RUN_HIDDEN = """
import sys

class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Hidden())
sys.argv = ["facescope", *{args!r}]
from facescope.cli import main
try:
    main()
finally:
    print("torch imported:", isinstance(sys.modules.get("torch"), type(sys)), file=sys.stderr)
"""


def run_cli(args: list[str], hidden: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_HIDDEN.format(hidden=hidden, args=args)],
                          capture_output=True, text=True, timeout=300)


def crafted_audit(tmp_path) -> list[str]:
    data = tmp_path / "utk"
    data.mkdir()
    rows = []
    for i, (age, gender, race) in enumerate([(25, 1, 0), (30, 0, 0), (41, 1, 1), (52, 0, 1)]):
        name = f"{age}_{gender}_{race}_2017010100000000{i}.jpg"
        (data / name).write_bytes(b"")  # an audit reads labels from names, never pixels
        rows.append({"path": name, "gender": ["Male", "Female"][gender], "race": "White", "age": age + 3})
    pd.DataFrame(rows).to_csv(tmp_path / "tool.csv", index=False)
    return ["audit", "-p", str(tmp_path / "tool.csv"), "--data", str(data), "--min-group-size", "1",
            "--n-boot", "10", "--output", str(tmp_path / "report")]


def test_audit_runs_without_pytorch(tmp_path):
    result = run_cli(crafted_audit(tmp_path), hidden=[])
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stderr
    assert "4 of 4 rows matched" in result.stdout
    assert (tmp_path / "report" / "report.html").is_file()


def test_a_missing_extra_is_one_line_naming_it(tmp_path):
    result = run_cli(crafted_audit(tmp_path), hidden=["fairlearn"])
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("torch imported")]
    assert errors == ["error: `facescope audit` needs fairlearn, which is not installed here: "
                      "pip install 'facescope[audit]'"]
    assert not (tmp_path / "report").exists()


def test_a_verb_whose_module_needs_pytorch_names_the_train_extra(tmp_path):
    result = run_cli(["export", str(tmp_path / "checkpoint"), "-o", str(tmp_path / "bundle")], hidden=["torch"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "`facescope export` needs torch, which is not installed here: pip install 'facescope[train]'" \
        in result.stderr
