"""How detection size and score threshold trade recall against time and false faces, on group photos
made of real UTKFace crops (faces of about 40 to 400 px and one turned 25 degrees; tests/conftest.py).

    FACESCOPE_DATA=../shared/data python benchmarks/detection_knobs.py --photos 10

Prints, per setting, the share of pasted faces found, the faces found outside any pasted crop (false
faces) and the mean detection time per photo. The defaults in facescope.faces.detect come from this.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facescope.faces import FaceDetector  # noqa: E402
from tests.conftest import DATA, GROUP_CROP_SIDES, compose_group_photo, face_recall  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 960, 1280, 1600])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8])
    args = parser.parse_args()
    files = sorted(DATA.iterdir())
    rng = random.Random(0)
    photos = [compose_group_photo(rng.sample(files, len(GROUP_CROP_SIDES) + 1), seed=i) for i in range(args.photos)]
    detector = FaceDetector(threads=0)
    per_side = len(GROUP_CROP_SIDES) + 1
    print(f"{args.photos} photos of 2000x1000, {per_side} faces each (crop sides {GROUP_CROP_SIDES} + one turned)")
    print("| detection size | score threshold | recall | recall by crop side | false faces | ms/photo |")
    print("|---:|---:|---:|---|---:|---:|")
    for size in args.sizes:
        for threshold in args.thresholds:
            found, false_faces, seconds = [], 0, 0.0
            for image, boxes in photos:
                start = time.perf_counter()
                faces = detector.detect(image, max_side=size, score_threshold=threshold)
                seconds += time.perf_counter() - start
                found.append(face_recall(faces, boxes))
                false_faces += sum(not any(face_recall([f], boxes)) for f in faces)
            by_side = [sum(hits[i] for hits in found) / len(found) for i in range(per_side)]
            recall = sum(by_side) / per_side
            print(f"| {size} | {threshold} | {recall:.2f} | {' '.join(f'{r:.1f}' for r in by_side)} | "
                  f"{false_faces} | {1000 * seconds / len(photos):.0f} |")


if __name__ == "__main__":
    main()
