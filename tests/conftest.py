"""Shared fixtures: the real UTKFace crops (FACESCOPE_DATA) and a model bundle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACESCOPE_DATA", REPO.parent / "shared" / "data")) / "utkface"


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real UTKFace crops not found at {DATA} (set FACESCOPE_DATA to ../shared/data)")
    return DATA


@pytest.fixture(scope="session")
def utkface_files(utkface_dir: Path) -> list[Path]:
    """A fixed, varied sample of real crops (every 500th file by name)."""
    return sorted(utkface_dir.iterdir())[::500]


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    """The bundled default model (committed in the repository)."""
    from facescope.bundles import resolve_bundle

    return resolve_bundle(None)


@pytest.fixture(scope="session")
def predictor(bundle_dir: Path):
    from facescope.inference.predictor import Predictor

    return Predictor(bundle_dir)


def compose_canvas(crops: list[Path], size: tuple[int, int] = (900, 400), gap: int = 40) -> tuple[np.ndarray, list]:
    """Real crops pasted side by side on a grey canvas; returns the image and each crop's box."""
    from facescope.faces import read_image

    canvas = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
    boxes, x = [], gap
    for path in crops:
        crop = read_image(path)
        h, w = crop.shape[:2]
        y = (size[1] - h) // 2
        canvas[y:y + h, x:x + w] = crop
        boxes.append((x, y, x + w, y + h))
        x += w + gap
    return canvas, boxes
