"""Bias mitigation, measured: the same network trained plain and with race x gender balancing, on the
same split, evaluated on the same test faces; overall and worst-group figures side by side.

    .venv/bin/python benchmarks/mitigation.py --output reports/mitigation

Defaults are sized for a 2-core CPU (ImageNet MobileNetV2 at 64 px, 3 epochs: about 12 minutes in all);
pass --input-size 112 --epochs 10 for the default model's first stage on a faster machine.
Writes comparison.md and comparison.json, plus each run's folder with its evaluation report.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from facescope.bundles import read_bundle_info
from facescope.training.config import TrainConfig
from facescope.training.train import train
from facescope.paths import data_root

REPO = Path(__file__).resolve().parents[1]
DATA = data_root() / "utkface"
FIGURES = ("gender_accuracy", "race_accuracy", "age_mae")


def worst_group(evaluation: dict, grouping: str, metric: str) -> tuple[str, float]:
    """From a bundle's evaluation section: the group with the worst value of `metric` (highest for an
    error, lowest otherwise), among groups large enough to be compared."""
    groups = {g: f[metric] for g, f in evaluation[grouping].items() if f["n"] >= evaluation["min_group_size"]}
    group = (max if metric == "age_mae" else min)(groups, key=groups.get)
    return group, groups[group]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "mitigation")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--balance", default="loss", choices=["loss", "sampler"], help="the mitigation compared")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    results = {}
    for balance in ("none", args.balance):
        run = args.output / f"run-{balance}"
        config = TrainConfig(data=str(args.data), output=str(run), backbone=args.backbone, input_size=args.input_size,
                             epochs=args.epochs, balance=balance, patience=args.epochs, threads=args.threads,
                             warmup_epochs=0.2)
        # The same data and seed: both runs train and test on the same images; each run evaluates its
        # bundle on that test split (run/evaluation) and keeps the figures in its model.json.
        results[balance] = read_bundle_info(train(config)).evaluation

    rows = []
    for metric in FIGURES:
        line = {"figure": metric}
        for balance, evaluation in results.items():
            line[f"{balance}: overall"] = round(evaluation["overall"][metric], 4)
            for grouping, name in (("by_race", "race"), ("by_race_gender", "race x gender")):
                group, value = worst_group(evaluation, grouping, metric)
                line[f"{balance}: worst {name}"] = f"{value:.4f} ({group})"
        rows.append(line)
    eo = {b: round(e["equalized_odds_difference"], 4) for b, e in results.items()}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "comparison.json").write_text(json.dumps({"rows": rows, "equalized_odds_difference": eo,
                                                              "settings": vars(args) | {"data": str(args.data),
                                                                                        "output": str(args.output)}},
                                                             indent=2))
    columns = list(rows[0])
    lines = [f"# Plain training vs race x gender balancing ({args.balance})", "",
             f"{args.backbone} at {args.input_size} px, {args.epochs} epochs, the same split and test faces.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    lines += ["", f"Equalized-odds difference of the gender head across races: {eo}.", "",
              "Worst group: the lowest accuracy (highest age MAE) among groups of at least "
              f"{next(iter(results.values()))['min_group_size']} test faces."]
    (args.output / "comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
