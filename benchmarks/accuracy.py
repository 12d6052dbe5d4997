"""The default model's accuracy targets, checked: gender, race and age error on the project's held-out test
split of the UTKFace crops, and the gender-accuracy gap between races.

    .venv/bin/python benchmarks/accuracy.py --output reports/accuracy

Evaluates the bundle (default: the bundled model) with `facescope evaluate`'s own code on the test split
made the way training makes it (seed 0; or pass a run's splits.csv as --data), prints each figure beside
its target and writes targets.json plus the full report folder.
Exit status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import sys
from pathlib import Path

from facescope.evaluation.run import run_evaluation

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESCOPE_DATA", REPO.parent / "shared" / "data")) / "utkface"
# figure: (how it must compare with the target, target); from the training issue.
TARGETS = {
    "gender_accuracy": (operator.ge, 0.945),
    "race_accuracy": (operator.ge, 0.88),
    "age_mae": (operator.le, 4.5),
    "gender_accuracy_gap_between_races": (operator.le, 0.04),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundle folder (default: the bundled model)")
    parser.add_argument("--data", type=Path, default=DATA, help="UTKFace folder, or a run's splits.csv")
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "accuracy")
    args = parser.parse_args()

    result, folder = run_evaluation(args.model, args.data, split="test", output=args.output)
    gap = result.gaps.query("grouping == 'race' and metric == 'gender_accuracy'").iloc[0]
    figures = {key: float(result.overall[key]) for key in ("gender_accuracy", "race_accuracy", "age_mae")}
    figures["gender_accuracy_gap_between_races"] = float(gap["difference"])
    rows = []
    for key, (compare, target) in TARGETS.items():
        rows.append({"figure": key, "value": round(figures[key], 4), "target": target,
                     "met": bool(compare(round(figures[key], 4), target))})
    summary = {"faces": int(result.overall["n"]), "worst_race_for_gender": gap["lowest_group"],
               "best_race_for_gender": gap["highest_group"], "targets": rows, "report": str(folder)}
    (args.output / "targets.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['faces']} test faces; report in {folder}")
    print(f"{'figure':<36}{'value':>8}{'target':>8}  met")
    for row in rows:
        print(f"{row['figure']:<36}{row['value']:>8.3f}{row['target']:>8.3f}  {'yes' if row['met'] else 'no'}")
    print(f"gender accuracy by race: lowest {gap['lowest_group']} {gap['lowest']:.3f}, "
          f"highest {gap['highest_group']} {gap['highest']:.3f}")
    sys.exit(0 if all(row["met"] for row in rows) else 1)


if __name__ == "__main__":
    main()
