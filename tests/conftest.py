"""Shared fixtures: the real UTKFace crops (FACESCOPE_DATA) and a model bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facescope.heads import Head, standard_heads
from facescope.paths import data_root

REPO = Path(__file__).resolve().parent.parent
DATA = data_root() / "utkface"


def load_benchmark(name: str):
    """A script of benchmarks/ imported as a module, so tests can check its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


# A fourth output beside the usual three, declared once: FairFace's 7 races beside the model's UTKFace 5,
# learning from the same records (tests/test_heads_end_to_end.py takes it through every layer).
FOURTH_OUTPUT = Head("race_fairface", "label", "fairface7", truth="race")
FOUR_OUTPUT_HEADS = (*standard_heads("utkface5"), FOURTH_OUTPUT)


@pytest.fixture(scope="session")
def four_output_bundle(tmp_path_factory) -> Path:
    """A small untrained bundle with FOUR_OUTPUT_HEADS, its weights large so that answers differ by face."""
    torch = pytest.importorskip("torch")
    from facescope.faces.align import CANONICAL
    from facescope.model.export import export_bundle
    from facescope.model.network import MultiTaskNet

    torch.manual_seed(0)
    model = MultiTaskNet("small_cnn", FOUR_OUTPUT_HEADS, pretrained=False).eval()
    for head in model.heads.values():
        torch.nn.init.normal_(head.weight, std=10.0)
    checkpoint = {"input_size": 48, "framing": CANONICAL.to_json(), "provenance": [], "recipe": []}
    return export_bundle(model, tmp_path_factory.mktemp("bundle") / "four", checkpoint)


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


# Crop sides for `compose_group_photo`: a UTKFace crop's face box is about 0.55 of its side, so these give
# faces of about 40, 60, 100, 200 and 400 px.
GROUP_CROP_SIDES = (72, 110, 180, 360, 720)


def compose_group_photo(crops: list[Path], sides=GROUP_CROP_SIDES, rotated_side: int = 200,
                        rotation: float = 25.0, size: tuple[int, int] = (2000, 1000), seed: int = 0):
    """A group photo made of real crops: one per side in `sides`, resized and pasted left to right
    (bottom-aligned) on a textured background, then one more (crops[len(sides)]) turned by `rotation`
    degrees. Returns the HxWx3 image and each pasted crop's (x1, y1, x2, y2)."""
    from PIL import Image

    from facescope.faces import read_image

    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(60, 200, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8))
    canvas = noise.resize(size, Image.Resampling.BICUBIC)
    boxes, x, gap = [], 20, 20
    for path, side in zip(crops, sides):
        crop = Image.fromarray(read_image(path)).resize((side, side), Image.Resampling.LANCZOS)
        y = size[1] - side - 20
        canvas.paste(crop, (x, y))
        boxes.append((x, y, x + side, y + side))
        x += side + gap
    crop = Image.fromarray(read_image(crops[len(sides)])).resize((rotated_side, rotated_side), Image.Resampling.LANCZOS)
    turned = crop.convert("RGBA").rotate(rotation, resample=Image.Resampling.BICUBIC, expand=True)
    x, y = size[0] - turned.width - 20, 20
    canvas.paste(turned, (x, y), turned)
    boxes.append((x, y, x + turned.width, y + turned.height))
    return np.asarray(canvas), boxes


def face_recall(faces, boxes) -> list[bool]:
    """For each pasted crop's box, whether a found face's centre lies inside it."""
    centres = [((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces]
    return [any(x1 < cx < x2 and y1 < cy < y2 for cx, cy in centres) for x1, y1, x2, y2 in boxes]
