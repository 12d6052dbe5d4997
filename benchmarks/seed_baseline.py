"""The seed project's design as a baseline: the UTK 48x48 grey CSV and its small CNN, on the same UTKFace
test faces as the default model.

    .venv/bin/python benchmarks/seed_baseline.py [--epochs 8] [--output reports/seed-baseline]

Writes every UTKFace face (aligned by the face pipeline) as the 48x48 grey CSV the seed used
(age,ethnicity,gender,img_name,pixels), a split manifest of its rows with the training split's own
partition (seed 0, as the default model's), trains `small_cnn` (the seed's kind of network: a few conv
blocks, from scratch) on the training rows, and evaluates it on the test rows: the same faces as
`benchmarks/accuracy.py`'s UTKFace test split. Prints its figures beside every installed model's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facescope.bundles import installed_models
from facescope.data import load_dataset
from facescope.data.splits import assign_splits, write_split_manifest
from facescope.faces.crops import write_utk48_csv
from facescope.paths import data_root
from facescope.training.config import TrainConfig
from facescope.training.train import train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root() / "utkface")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "seed-baseline")
    args = parser.parse_args()

    records = load_dataset(args.data).records
    split_of = {Path(r.source).name: s for r, s in zip(records, assign_splits(records))}
    written, missed = write_utk48_csv(records, args.output / "utk48.csv")
    rows = load_dataset(args.output / "utk48.csv").records
    write_split_manifest(rows, [split_of[r.original] for r in rows], args.output / "splits.csv")
    print(f"48x48 CSV: {written} faces ({missed} not found)")
    bundle = train(TrainConfig(splits=str(args.output / "splits.csv"), output=str(args.output / "run"),
                               backbone="small_cnn", input_size=48, pretrained=False, epochs=args.epochs,
                               batch_size=128, lr=2e-3, patience=3))
    seed = json.loads((bundle / "model.json").read_text())["evaluation"]
    table = {"seed design: small CNN, 48x48 grey, UTKFace only": {**seed["overall"], "faces": seed["faces"]}}
    for name, _, info in installed_models():
        if not isinstance(info, Exception) and info.evaluation.get("overall"):
            table[f"{name}: {info.backbone} at {info.input_size} px"] = {**info.evaluation["overall"],
                                                                        "faces": info.evaluation.get("faces")}
    (args.output / "comparison.json").write_text(json.dumps(table, indent=2))
    print(f"\n{'model':<58}{'faces':>6}{'gender':>8}{'race':>8}{'age MAE':>9}")
    for name, figures in table.items():
        print(f"{name:<58}{figures['faces']:>6}{figures['gender_accuracy']:>8.3f}{figures['race_accuracy']:>8.3f}"
              f"{figures.get('age_mae', float('nan')):>9.2f}")


if __name__ == "__main__":
    main()
