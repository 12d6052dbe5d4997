"""Screenshots of the web page, and an annotated photo, for the README and docs/screenshots/.

    .venv/bin/python scripts/screenshots.py            # FACESCOPE_DATA, else ../shared/data

Composes two photos from real UTKFace crops (2 faces, and a crowd of 20), serves the app on a loopback
port, uploads each in Debian's Chromium (driven by Playwright, as tests/test_browser.py does) at a
desktop (1280x900) and a phone (390x844) viewport, and saves what the screen shows after the upload
(and the first screen before it, and the model card's figures per group).
It also draws the crowd with `facescope.inference.draw` as `facescope predict --annotate` does.
The PNGs are reduced to a 256-colour palette to keep them small.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facescope.paths import data_root

REPO = Path(__file__).resolve().parent.parent
DATA = data_root() / "utkface"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def pick_crops(count: int, offset: int) -> list[Path]:
    """`count` UTKFace crops spread over the sorted file list (so over ages and groups), the same every run."""
    files = sorted(p for p in DATA.iterdir() if p.name.endswith(".jpg"))
    step = len(files) // (count + 1)
    return [files[offset + i * step] for i in range(count)]


def compose(crops: list[Path], columns: int, face: int, gap: int) -> np.ndarray:
    """Crops resized to `face` pixels, in a grid on a grey background, like a group photo."""
    rows = -(-len(crops) // columns)
    canvas = np.full((rows * (face + gap) + gap, columns * (face + gap) + gap, 3), 118, dtype=np.uint8)
    for index, path in enumerate(crops):
        row, column = divmod(index, columns)
        crop = np.asarray(Image.open(path).convert("RGB").resize((face, face), Image.LANCZOS))
        y, x = gap + row * (face + gap), gap + column * (face + gap)
        canvas[y:y + face, x:x + face] = crop
    return canvas


def save_small_png(path: Path, image: Image.Image) -> None:
    image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def serve(app) -> tuple[str, callable]:
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()

    return f"http://127.0.0.1:{listener.getsockname()[1]}", stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from facescope.inference.predictor import Predictor
    from facescope.inference.draw import annotate_image
    from facescope.serving.app import create_app

    args.output.mkdir(parents=True, exist_ok=True)
    photos = {"2-faces": compose(pick_crops(2, 40), columns=2, face=300, gap=60),
              "20-faces": compose(pick_crops(20, 5), columns=5, face=150, gap=14)}
    predictor = Predictor()
    url, stop = serve(create_app(predictor=predictor))
    try:
        with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
            for name, pixels in photos.items():
                Image.fromarray(pixels).save(Path(folder) / f"{name}.jpg", quality=92)
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for screen, viewport in VIEWPORTS.items():
                for name in photos:
                    page = browser.new_page(viewport=viewport, device_scale_factor=1)
                    page.set_default_timeout(60_000)
                    page.goto(url + "/")
                    page.locator("#figures-per-group").wait_for()
                    if name == "2-faces":  # the first screen, before any upload
                        page.screenshot(path=str(Path(folder) / "shot.png"))
                        save_small_png(args.output / f"{screen}-start.png", Image.open(Path(folder) / "shot.png"))
                    page.set_input_files("#file-input", str(Path(folder) / f"{name}.jpg"))
                    page.locator("#face-1-1").wait_for()
                    page.wait_for_function("() => Math.abs(document.getElementById('results').getBoundingClientRect().top) < 20")
                    time.sleep(0.5)  # the smooth scroll settles
                    shot = Path(folder) / "shot.png"
                    page.screenshot(path=str(shot))
                    save_small_png(args.output / f"{screen}-{name}.png", Image.open(shot))
                    print(f"{args.output / f'{screen}-{name}.png'}: {page.locator('.face-card').count()} cards")
                    if name == "2-faces":  # and the model card's figures per group
                        page.evaluate("document.getElementById('figures-per-group').scrollIntoView()")
                        page.screenshot(path=str(shot))
                        save_small_png(args.output / f"{screen}-model-card.png", Image.open(shot))
                    page.close()
            browser.close()
    finally:
        stop()
    # The README's picture: the crowd as `facescope predict --annotate` draws it.
    crowd = photos["20-faces"]
    annotated = annotate_image(crowd, predictor.predict(crowd))
    annotated.save(args.output / "annotated-crowd.jpg", quality=80, optimize=True)
    print(f"{args.output / 'annotated-crowd.jpg'}")


if __name__ == "__main__":
    main()
