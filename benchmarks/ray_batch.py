"""Photos per second: `facescope predict --engine ray` with 1 and 2 network actors beside the
single-process CLI, on the same photos; and whether their records are the same.

    FACESCOPE_DATA=../shared/data .venv/bin/python benchmarks/ray_batch.py --photos 2000

Photos: a seeded sample of N UTKFace files (linked into a temporary folder, not copied). The CLI runs as
`facescope predict FOLDER` in a subprocess (its start-up included, about 1-2 s). Ray starts once on
this machine's CPUs (timed apart, as a cluster is started once for many jobs); each Ray run is
`facescope.batch.predict_to_shards` writing JSONL shards, timed from the call to the last shard. The
records of each Ray run are compared with the CLI's, file by file. Results: a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facescope.paths import data_root


def cli_records(folder: Path) -> tuple[dict[str, dict], float]:
    command = [sys.executable, "-c", "import sys; from facescope.cli import main; sys.argv[0] = 'facescope'; main()",
               "predict", str(folder)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr)
    return {r["path"]: r for r in map(json.loads, done.stdout.splitlines())}, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="network actors per Ray run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray

    from facescope.batch import predict_to_shards

    data = data_root() / "utkface"
    files = random.Random(args.seed).sample(sorted(data.iterdir()), args.photos)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "photos"
        folder.mkdir()
        for path in files:
            (folder / path.name).symlink_to(path)
        reference, elapsed = cli_records(folder)
        rows = [("single-process CLI (`facescope predict`)", elapsed, "-")]

        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        ray_start = time.perf_counter() - start
        for workers in args.workers:
            out = Path(temporary) / f"shards-{workers}"
            start = time.perf_counter()
            predict_to_shards([str(folder)], str(out), workers=workers)
            elapsed = time.perf_counter() - start
            records = {r["path"]: r for shard in out.glob("*.jsonl") for r in map(json.loads, shard.open())}
            differing = sum(records.get(path) != record for path, record in reference.items())
            same = f"{len(reference) - differing} of {len(reference)}" + (
                "" if len(records) == len(reference) else f" ({len(records)} records)")
            rows.append((f"Ray Data, {workers} network actor{'s' if workers > 1 else ''}", elapsed, same))
        ray.shutdown()

    print(f"{args.photos} UTKFace photos, {os.cpu_count()} CPUs; Ray start-up {ray_start:.1f} s (not in the times)\n")
    print("| engine | seconds | photos/s | records identical to the CLI's |")
    print("|---|---|---|---|")
    for name, seconds, same in rows:
        print(f"| {name} | {seconds:.1f} | {args.photos / seconds:.1f} | {same} |")


if __name__ == "__main__":
    main()
