"""Peak memory of one prediction on large photos, each in a fresh process (`facescope predict`'s path:
read_photo, detection, alignment, the network).

    python benchmarks/memory_per_photo.py            # writes the test photos to a temporary folder

For each photo: the process's resident memory after a warm-up prediction on a small photo, and its peak
while predicting the large one (Linux: the peak is reset first); the difference is what that photo cost. Photos: JPEGs of
24 and 100 MP (decoded reduced, Pillow's draft mode), PNGs of 100 MP in RGB and RGBA and one of 120 MP
(the limit, MAX_PIXELS) in 1-bit grey; PNG has no reduced decoding, so it is decoded in its own mode and
shrunk at once. The bound: about (bytes per pixel in the file's own mode) x pixels + 200 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import json, sys
from facescope import Predictor
from PIL import Image

def rss_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024

predictor = Predictor(threads=1)
predictor.predict(Image.new("RGB", (640, 480), (128, 128, 128)))
before = rss_mb("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the memory in use now
result = predictor.predict_image(sys.argv[1])
print(json.dumps({"before_mb": before, "after_mb": rss_mb("VmHWM:"), "width": result.width,
                  "height": result.height, "error": result.error}))
"""


def gradient(width: int, height: int, channels: int) -> Image.Image:
    """A smooth picture (so the PNG stays small on disk), built a band at a time."""
    mode = {3: "RGB", 4: "RGBA"}[channels]
    image = Image.new(mode, (width, height))
    band = 1000
    xs = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)
    for top in range(0, height, band):
        rows = min(band, height - top)
        block = np.empty((rows, width, channels), np.uint8)
        block[:] = xs[None, :, None]
        block[:, :, 1] = ((top + np.arange(rows)) * 255 // height).astype(np.uint8)[:, None]
        if channels == 4:
            block[:, :, 3] = 255
        image.paste(Image.fromarray(block, mode), (0, top))
    return image


def make_photos(folder: Path) -> list[tuple[str, Path]]:
    photos = []
    for name, maker, format in [
        ("JPEG 24 MP (6000x4000)", lambda: gradient(6000, 4000, 3), "JPEG"),
        ("JPEG 100 MP (12000x8333)", lambda: gradient(12000, 8333, 3), "JPEG"),
        ("PNG 100 MP RGB (10000x10000)", lambda: gradient(10000, 10000, 3), "PNG"),
        ("PNG 100 MP RGBA (10000x10000)", lambda: gradient(10000, 10000, 4), "PNG"),
        ("PNG 120 MP 1-bit (10954x10954)", lambda: Image.new("1", (10954, 10954)), "PNG"),
    ]:
        path = folder / f"{len(photos)}.{format.lower()}"
        maker().save(path, format=format, **({"quality": 85} if format == "JPEG" else {"compress_level": 1}))
        photos.append((name, path))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, path in make_photos(Path(folder)):
            run = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
            figures = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append({"photo": name, "file_mb": path.stat().st_size / 1e6, **figures,
                         "photo_peak_mb": figures["after_mb"] - figures["before_mb"]})
    print("| photo | file, MB | in use before, MB | peak, MB | the photo's peak, MB | result |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        outcome = row["error"] or f"read ({row['width']}x{row['height']})"
        print(f"| {row['photo']} | {row['file_mb']:.1f} | {row['before_mb']:.0f} | {row['after_mb']:.0f} | "
              f"{row['photo_peak_mb']:.0f} | {outcome} |")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
