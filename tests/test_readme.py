"""The README's Python example prints what its output block shows, with the bundled model: when the model
or the API changes, this says the README needs the new output. `python -m tests.test_readme` (from the
repository, with the data found as for the tests) runs the example and writes what it prints into the
README's output block."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from facescope.paths import data_root
from tests.conftest import REPO

README = REPO / "README.md"
EXAMPLE = re.compile(r"<!-- README EXAMPLE:.*?-->\s*```python\n(?P<code>.*?)```\s*```text\n(?P<output>.*?)```", re.S)


def readme_example() -> re.Match:
    found = list(EXAMPLE.finditer(README.read_text()))
    assert len(found) == 1, "the README has one marked Python example, followed by its output"
    return found[0]


def run_example(code: str, cwd) -> subprocess.CompletedProcess:
    """The example's code run with the bundled model; it names the data as the README's commands do,
    beside the repository, so that is replaced by where the data is here."""
    code = code.replace("../shared/data", str(data_root()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_readme_example_prints_its_output_block_with_the_bundled_model(tmp_path):
    example = readme_example()
    if not (data_root() / "utkface").is_dir():
        pytest.skip(f"UTKFace not found at {data_root() / 'utkface'} (set FACESCOPE_DATA)")
    run = run_example(example["code"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == example["output"], (
        "the README's example output is out of date (`python -m tests.test_readme` writes the new one); "
        "it now prints:\n" + run.stdout)


if __name__ == "__main__":
    import tempfile

    example = readme_example()
    with tempfile.TemporaryDirectory() as folder:
        run = run_example(example["code"], folder)
    if run.returncode != 0:
        sys.exit(f"the README's example failed:\n{run.stderr}")
    text = README.read_text()
    start, end = example.span("output")
    README.write_text(text[:start] + run.stdout + text[end:])
    print(f"README.md: the example's output block is now what the bundled model prints:\n{run.stdout}", end="")
