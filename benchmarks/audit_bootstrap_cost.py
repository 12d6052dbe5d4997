"""What the 95% bootstrap intervals cost: `evaluate` on one predictions table with and without them.

    .venv/bin/facescope evaluate --model default --data $FACESCOPE_DATA/utkface --split test --output reports/default
    .venv/bin/python benchmarks/audit_bootstrap_cost.py reports/default/predictions.csv --n-boot 1000 --repeats 3

Reads a report's predictions.csv (no network run), times metrics.evaluate with n_boot=0 and with
--n-boot resamples (the median of --repeats runs each), and the bootstrap alone
(metrics.table_bootstrap and bootstrap_replicates). Prints one line a measurement.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pandas as pd

from facescope.evaluation.metrics import bootstrap_replicates, evaluate, table_bootstrap


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="a report folder's predictions.csv")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = pd.read_csv(args.predictions)
    warnings.simplefilter("ignore")
    without = median_seconds(lambda: evaluate(table, n_boot=0), args.repeats)
    with_intervals = median_seconds(lambda: evaluate(table, n_boot=args.n_boot), args.repeats)
    alone = median_seconds(lambda: bootstrap_replicates(table, table_bootstrap(table, args.n_boot)), args.repeats)
    print(f"{len(table)} faces, median of {args.repeats} runs")
    print(f"evaluate without intervals: {without:.2f} s")
    print(f"evaluate with {args.n_boot} resamples: {with_intervals:.2f} s")
    print(f"bootstrap alone ({args.n_boot} resamples, every group and figure): {alone:.2f} s")


if __name__ == "__main__":
    main()
