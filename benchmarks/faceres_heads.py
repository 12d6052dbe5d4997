"""The original HSE FaceRes heads (gender, age) on UTKFace crops, under several face framings.

    PYTHONPATH=src nice -n 19 python benchmarks/faceres_heads.py --n 2000

For N crops (every k-th UTKFace file by name: all ages, fixed), it prints, per framing, the gender
accuracy (P(male) >= 0.5; over all ages and over ages 16 and up, since a baby's gender is not in its
face and the heads score chance on ages 1-3) and the age MAE, decoded as the author does (top two bins) and as the full
expectation, beside the MAE of the best constant prediction (the sample's median age). Framings:
  utkface-crop   the 200 px crop as it is on disk, resized to 224 (the author's own UTKFace test)
  aligned        facescope's canonical crop: RetinaFace landmarks, `align_face` to 224
  centre-90/-80  the central 90% / 80% of the UTKFace crop (tighter), resized to 224
  detector-box   the RetinaFace box plus 10% each side, stretched to 224 (as the author's pipeline
                 crops a detector box with a small margin)
Then, for the first framing, the figures by age group. `--convention` feeds another input convention
than FACERES_INPUT (BGR minus the mean pixel), to show what a wrong one costs; `--framings` picks some.
Last, it times one forward of a batch of 64 at 224 px (median of 3) in each memory layout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facescope.data.loaders import load_utkface
from facescope.faces import FaceDetector, align_face, read_image
from facescope.faces.align import resize_crop
from facescope.model.faceres import FACERES_INPUT, age_from_probabilities, expected_age, load_faceres, to_faceres_input
from facescope.paths import data_root

SIZE = FACERES_INPUT.size
FRAMINGS = ("utkface-crop", "aligned", "centre-90", "centre-80", "detector-box")
AGE_GROUPS = ((1, 3), (4, 15), (16, 29), (30, 49), (50, 69), (70, 120))
# Input conventions, from RGB uint8 crops: FACERES_INPUT's, and wrong ones for comparison.
CONVENTIONS = {
    "bgr-minus-mean": to_faceres_input,
    "rgb-minus-mean": lambda rgb: to_faceres_input(np.ascontiguousarray(rgb[..., ::-1])),
    "bgr-0-255": lambda rgb: to_faceres_input(rgb) + torch.tensor(FACERES_INPUT.mean).view(1, 3, 1, 1),
    "rgb-minus1-1": lambda rgb: torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1,
}


def centre(image: np.ndarray, fraction: float) -> np.ndarray:
    height, width = image.shape[:2]
    dy, dx = round(height * (1 - fraction) / 2), round(width * (1 - fraction) / 2)
    return resize_crop(image[dy:height - dy, dx:width - dx], SIZE)


def box_crop(image: np.ndarray, box, margin: float = 0.1) -> np.ndarray:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    height, width = image.shape[:2]
    x1, y1 = max(0, round(x1 - mx)), max(0, round(y1 - my))
    x2, y2 = min(width, round(x2 + mx)), min(height, round(y2 + my))
    return cv2.resize(image[y1:y2, x1:x2], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def framings(paths: list[str], names: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """The named framings' N x 224 x 224 x 3 crops, and how many images had no face detected (those keep
    the whole crop in the detector-based framings)."""
    detector = FaceDetector(threads=1)
    out: dict[str, list[np.ndarray]] = {k: [] for k in FRAMINGS}
    missed = 0
    for path in paths:
        image = read_image(path)
        faces = detector.detect(image)
        whole = resize_crop(image, SIZE)
        missed += not faces
        out["utkface-crop"].append(whole)
        out["aligned"].append(align_face(image, faces[0].landmarks, SIZE) if faces else whole)
        out["centre-90"].append(centre(image, 0.9))
        out["centre-80"].append(centre(image, 0.8))
        out["detector-box"].append(box_crop(image, faces[0].box) if faces else whole)
    return {k: np.stack(out[k]) for k in names}, missed


@torch.inference_mode()
def heads(network, crops: np.ndarray, convention: str, batch: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(male), age decoded from the top two bins, expected age."""
    male, age_top2, age_mean = [], [], []
    for start in range(0, len(crops), batch):
        x = CONVENTIONS[convention](crops[start:start + batch])
        out = network(x.contiguous(memory_format=torch.channels_last))
        probabilities = torch.softmax(out.age_logits, dim=1)
        male.append(torch.sigmoid(out.gender_logit))
        age_top2.append(age_from_probabilities(probabilities))
        age_mean.append(expected_age(probabilities))
    return tuple(torch.cat(v).numpy() for v in (male, age_top2, age_mean))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="number of UTKFace crops")
    parser.add_argument("--data", type=Path, default=data_root() / "utkface")
    parser.add_argument("--weights", type=Path, default=None, help="folder with faceres-deep.json (default: the cache)")
    parser.add_argument("--convention", choices=list(CONVENTIONS), default="bgr-minus-mean",
                        help="input convention (default: FACERES_INPUT's; the others are wrong, for comparison)")
    parser.add_argument("--framings", nargs="+", choices=FRAMINGS, default=list(FRAMINGS))
    args = parser.parse_args()

    records = load_utkface(args.data).records
    sample = records[:: max(1, len(records) // args.n)][: args.n]
    ages = np.array([r.age_years for r in sample])
    is_male = np.array([r.gender == "Male" for r in sample])
    network = load_faceres(args.weights).to(memory_format=torch.channels_last)

    start = time.perf_counter()
    crops, missed = framings([r.source for r in sample], args.framings)
    print(f"{len(sample)} UTKFace crops ({is_male.mean():.1%} male, median age {np.median(ages):.0f}); "
          f"no face detected in {missed}; framing took {time.perf_counter() - start:.0f} s")
    print(f"constant prediction: gender accuracy {max(is_male.mean(), 1 - is_male.mean()):.3f}, "
          f"age MAE {np.abs(ages - np.median(ages)).mean():.2f}")
    print(f"{'framing':<14} {'gender acc':>10} {'(age 16+)':>10} {'age MAE top-2':>14} {'age MAE mean':>13} {'s':>5}")
    results = {}
    for name, images in crops.items():
        start = time.perf_counter()
        male, age_top2, age_mean = results[name] = heads(network, images, args.convention)
        correct = (male >= 0.5) == is_male
        print(f"{name:<14} {correct.mean():>10.3f} {correct[ages >= 16].mean():>10.3f} "
              f"{np.abs(age_top2 - ages).mean():>14.2f} {np.abs(age_mean - ages).mean():>13.2f} "
              f"{time.perf_counter() - start:>5.0f}")

    first = args.framings[0]
    male, _, age_mean = results[first]
    print(f"\n{first}, by age: {'n':>5} {'gender acc':>10} {'age MAE mean':>13} {'mean error':>11}")
    for low, high in AGE_GROUPS:
        group = (ages >= low) & (ages <= high)
        error = age_mean[group] - ages[group]
        print(f"{f'{low}-{high}':>{len(first) + 9}} {group.sum():>5} {((male >= 0.5) == is_male)[group].mean():>10.3f} "
              f"{np.abs(error).mean():>13.2f} {error.mean():>+11.2f}")

    with torch.inference_mode():
        batch = to_faceres_input(crops[first][:64])
        for layout in (torch.contiguous_format, torch.channels_last):
            layout_network, x = network.to(memory_format=layout), batch.contiguous(memory_format=layout)
            layout_network(x)  # warm-up
            times = []
            for _ in range(3):
                start = time.perf_counter()
                layout_network(x)
                times.append(time.perf_counter() - start)
            print(f"forward of {len(x)} at {SIZE} px, {str(layout).split('.')[-1]}: {np.median(times):.2f} s "
                  f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
