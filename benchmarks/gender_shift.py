"""The gender decision threshold that reads women and men wrong equally often, chosen on validation photos.

    .venv/bin/python benchmarks/gender_shift.py --model runs/fairface/int8 [--output reports/gender-shift]

For each data set's validation split (made the way training makes it: each data set on its own, seed 0,
80/10/10; never the test split), every photo goes through the face pipeline, and the gender head's
log-odds of Female are shifted by d for each d on a grid. For each d it prints, per data set, the gender
accuracy of adult (20+) women and of adult men (every face where a data set has no ages) and their
difference; the chosen d is the one with the smallest mean absolute difference over the data sets, each
data set counting once. `facescope export --logit-shift gender.Female=D` moves that threshold into the
network, so probabilities, answers and every figure follow it. Writes shifts.json.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from accuracy import ADULT_BINS, arguments, split_predictions  # (benchmarks/ is the script's folder)
from facescope.inference.predictor import Predictor
GRID = np.round(np.arange(-1.0, 1.51, 0.05), 2)


def women_and_men(table: pd.DataFrame, shift: float) -> tuple[float, float]:
    """Adult women's and adult men's gender accuracy with the Female log-odds shifted by `shift`."""
    female = table["p_gender_Female"].clip(1e-7, 1 - 1e-7)
    said_female = np.log(female / (1 - female)) + shift > 0
    right = said_female == (table["gender"] == "Female")
    adult = table["age_bin"].isin(ADULT_BINS) if table["age_bin"].notna().any() else pd.Series(True, index=table.index)
    return (float(right[adult & (table["gender"] == "Female")].mean()),
            float(right[adult & (table["gender"] == "Male")].mean()))


def choose_shift(tables: dict[str, pd.DataFrame]) -> tuple[float, list[dict]]:
    """The grid's d with the smallest mean |women - men| over the data sets, and every d's figures."""
    rows = []
    for shift in GRID:
        row = {"shift": float(shift)}
        for name, table in tables.items():
            women, men = women_and_men(table, shift)
            row[name] = {"women": round(women, 4), "men": round(men, 4), "difference": round(men - women, 4)}
        row["mean_abs_difference"] = round(float(np.mean([abs(row[n]["difference"]) for n in tables])), 4)
        rows.append(row)
    best = min(rows, key=lambda r: (r["mean_abs_difference"], abs(r["shift"])))
    return best["shift"], rows


def main() -> None:
    args = arguments(__doc__, "gender-shift", "the bundle to choose for, exported without a shift")

    predictor = Predictor(args.model)
    tables = {}
    for path in args.data:
        if not path.exists():
            print(f"{path}: not there, left out")
            continue
        dataset, _, table, _ = split_predictions(predictor, path, "val")
        tables[dataset.format] = table
    shift, rows = choose_shift(tables)
    print(f"{'d':>6}  " + "  ".join(f"{name + ' women/men':>24}" for name in tables) + "  mean |difference|")
    for row in rows:
        if row["shift"] in (0.0, shift) or round(row["shift"] * 4) == row["shift"] * 4:
            cells = "  ".join(f"{row[n]['women']:>11.3f} / {row[n]['men']:<10.3f}" for n in tables)
            print(f"{row['shift']:>6.2f}  {cells}  {row['mean_abs_difference']:.4f}" + ("  <- chosen" if row["shift"] == shift else ""))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "shifts.json").write_text(json.dumps({"model": predictor.info.name, "chosen": shift,
                                                         "validation_faces": {n: len(t) for n, t in tables.items()},
                                                         "grid": rows}, indent=2))
    print(f"\nchosen: gender.Female={shift:g} (facescope export ... --logit-shift gender.Female={shift:g}); "
          f"written to {args.output / 'shifts.json'}")


if __name__ == "__main__":
    main()
