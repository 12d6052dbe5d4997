"""The default model's accuracy targets, checked: gender, race and age error on the project's held-out test
split of the UTKFace crops, and the gender-accuracy gap between races.

    .venv/bin/python benchmarks/accuracy.py --output reports/accuracy

Evaluates the bundle (default: the bundled model) with `facescope evaluate`'s own code on the test split
made the way training makes it (seed 0; or pass a run's splits.csv as --data), prints each figure beside
its target with a 95% bootstrap interval over the test faces (how far the figure could move on another
sample of faces like these), and writes targets.json plus the full report folder.
Exit status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

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
RESAMPLES = 2000


def gap_between_groups(correct: np.ndarray, group: np.ndarray) -> float:
    """Highest minus lowest per-group mean of `correct` (0/1), over the groups present: the evaluation's
    gap where every group has at least its minimum size, as every race has in the test split."""
    group = group.astype(int)  # the bootstrap hands every column over as floats
    counts = np.bincount(group)
    rates = np.bincount(group, weights=correct)[counts > 0] / counts[counts > 0]
    return float(rates.max() - rates.min())


def intervals(predictions: pd.DataFrame, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap intervals of the target figures, resampling test faces."""
    gender_correct = (predictions["pred_gender"] == predictions["gender"]).to_numpy(float)
    race_correct = (predictions["pred_race"] == predictions["race"]).to_numpy(float)
    age_error = (predictions["pred_age_years"] - predictions["age_years"]).abs().to_numpy()
    race_code = pd.factorize(predictions["race"])[0]
    samples = {
        "gender_accuracy": ((gender_correct,), np.mean),
        "race_accuracy": ((race_correct,), np.mean),
        "age_mae": ((age_error,), np.mean),
        "gender_accuracy_gap_between_races": ((gender_correct, race_code), gap_between_groups),
    }
    out = {}
    for key, (data, statistic) in samples.items():
        interval = bootstrap(data, statistic, paired=True, vectorized=False, n_resamples=RESAMPLES,
                             method="percentile", rng=np.random.default_rng(seed)).confidence_interval
        out[key] = (float(interval.low), float(interval.high))
    return out


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
    spans = intervals(pd.read_csv(folder / "predictions.csv"))
    rows = []
    for key, (compare, target) in TARGETS.items():
        rows.append({"figure": key, "value": round(figures[key], 4), "target": target,
                     "interval_95": [round(v, 4) for v in spans[key]],
                     "met": bool(compare(round(figures[key], 4), target))})
    summary = {"faces": int(result.overall["n"]), "worst_race_for_gender": gap["lowest_group"],
               "best_race_for_gender": gap["highest_group"], "targets": rows, "report": str(folder)}
    (args.output / "targets.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['faces']} test faces; report in {folder}")
    print(f"{'figure':<36}{'value':>8}{'95% interval':>18}{'target':>8}  met")
    for row in rows:
        low, high = row["interval_95"]
        print(f"{row['figure']:<36}{row['value']:>8.3f}{f'{low:.3f} to {high:.3f}':>18}{row['target']:>8.3f}"
              f"  {'yes' if row['met'] else 'no'}")
    print(f"gender accuracy by race: lowest {gap['lowest_group']} {gap['lowest']:.3f}, "
          f"highest {gap['highest_group']} {gap['highest']:.3f}")
    sys.exit(0 if all(row["met"] for row in rows) else 1)


if __name__ == "__main__":
    main()
