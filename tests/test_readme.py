"""The README's Python example prints what its output block shows, with the bundled model: when the model
or the API changes, this says the README needs the new output."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from facescope.paths import data_root
from tests.conftest import REPO

EXAMPLE = re.compile(r"<!-- README EXAMPLE:.*?-->\s*```python\n(?P<code>.*?)```\s*```text\n(?P<output>.*?)```", re.S)


def readme_example() -> tuple[str, str]:
    found = EXAMPLE.findall((REPO / "README.md").read_text())
    assert len(found) == 1, "the README has one marked Python example, followed by its output"
    return found[0]


def test_the_readme_example_prints_its_output_block_with_the_bundled_model(tmp_path):
    code, expected = readme_example()
    # The example names the data as the README's commands do, beside the repository.
    if not (data_root() / "utkface").is_dir():
        pytest.skip(f"UTKFace not found at {data_root() / 'utkface'} (set FACESCOPE_DATA)")
    code = code.replace("../shared/data", str(data_root()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected, "the README's example output is out of date; it now prints:\n" + run.stdout
