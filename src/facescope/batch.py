"""Batch prediction on a Ray cluster (or the cores of one machine): `facescope predict --engine ray`.

    from facescope.batch import predict_to_shards
    run = predict_to_shards(["photos/"], "results/", workers=2)            # local Ray, or RAY_ADDRESS
    run = predict_to_shards(manifest="s3://bucket/manifest.csv", output="s3://bucket/results/")

The same prediction as `facescope predict`, as a Ray Data pipeline:
  paths (folders, files, or a manifest; local or any filesystem pyarrow reads: s3://, gs://, hdfs://...)
  -> read, detect and align in parallel Ray tasks (one CPU each)
  -> the network in a pool of `workers` actors, each loading the bundle once (`map_batches` with a
     callable class), on batches of crops from many photos
  -> shards written in parallel: JSON lines (exactly the CLI's records, one per file) or Parquet (the
     CLI's CSV columns, one row per face).
A file that cannot be read is a record with `error` set, as in the CLI. Records are not in input order
(shards finish in any order); each names its file. Needs the `ray` extra: pip install 'facescope[ray]'.

Shards are written whole or not at all: each under a hidden `.partial-` name, moved to its final
`part-*` name once complete. A rerun into the same output reads the complete shards, predicts only the
files they do not have, and removes partial ones a killed run left: after a crash, Ctrl-C or a full
disk, running the same command again finishes the work without duplicating or losing a record.

Without RAY_ADDRESS, the local Ray instance is private to the run: no dashboard, no usage statistics,
its services on the loopback address only, token authentication with a token kept in the environment
(nothing under ~/.ray), and its session files (logs, sockets, spilled objects) in a temporary folder
that is removed when the run ends. Nothing else is written outside the output.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib.util
import json
import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facescope.heads import Head
from facescope.inference.results import ImageResult, csv_columns
from facescope.inference.sinks import ShardSink
from facescope.inference.sources import Inputs, list_inputs, read_input
from facescope.inference.sources import filesystem_of as _filesystem

if TYPE_CHECKING:
    from facescope.engines import PredictorSpec

SHARD_FORMATS = ("jsonl", "parquet")
# A network actor asks for half a CPU: batched, the network takes a small share of the time a photo needs
# (detection is most of it), and a whole CPU each would leave 2 actors on 2 CPUs no room to detect at all.
NETWORK_CPUS = 0.5
ACTOR_MEMORY = 512 * 2**20  # bytes: an onnxruntime session of the network and a batch of crops, with room
PARTIAL_PREFIX = ".partial-"  # a shard being written; renamed to its final name once complete
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
# Set for a private local Ray (see the module docstring). RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray
# take the loopback address as the node's; Ray reads it when first imported.
PRIVATE_RAY_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@dataclass
class BatchRun:
    files: int = 0
    faces: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the closing summary
    already_done: int = 0  # files with a record in a complete shard of an earlier run: not predicted again


# ---------------------------------------------------------------- the two stages


@functools.cache
def _predictor(bundle: str | None, detection: tuple[tuple[str, float], ...] = ()):
    """One Predictor per worker process, made on its first batch (Ray reuses worker processes)."""
    from facescope.inference.predictor import Predictor

    return Predictor(bundle, threads=1, workers=1, **dict(detection))


def prepare_batch(batch: dict[str, np.ndarray], bundle: str | None, aligned: bool,
                  detection: tuple[tuple[str, float], ...] = ()) -> dict[str, list]:
    """Ray task: read, detect and align each photo of a batch of paths. Crops travel as raw bytes,
    detections as JSON (exact floats), so the network stage rebuilds what the CLI's predictor holds."""
    from facescope.faces import ImageReadError

    predictor = _predictor(bundle, detection)
    out: dict[str, list] = {"result": [], "detections": [], "crops": []}
    for name in batch["path"]:
        try:
            source = read_input(str(name))
        except ImageReadError as error:
            result, detections, crops = ImageResult(path=str(name), model=predictor.info.name, error=str(error)), [], []
        else:
            result, detections, crops = predictor.prepare_photo(source, str(name), aligned)
            if result.error and isinstance(source, bytes):  # the reader named the bytes "upload"
                result.error = result.error.replace("upload", str(name), 1)
        out["result"].append(result.model_dump_json())
        out["detections"].append(json.dumps([[list(map(float, box)), float(score), np.asarray(marks).tolist()]
                                             for box, score, marks in detections]))
        out["crops"].append(np.stack([c for per_model in crops for c in per_model]).tobytes() if crops else b"")
    return out


class NetworkActor:
    """Ray actor: loads the bundle once and estimates the crops of many photos in shared batches, each
    answer under `thresholds` (the predictor withholds the uncertain ones)."""

    def __init__(self, bundle: str | None, detection: tuple[tuple[str, float], ...] = (),
                 thresholds: dict[str, float] | None = None):
        self.predictor = _predictor(bundle, detection)
        self.thresholds = thresholds or {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        size = self.predictor.input_size
        pending = []
        for result, detections, crops in zip(batch["result"], batch["detections"], batch["crops"]):
            crops = np.frombuffer(crops, np.uint8).reshape(-1, size, size, 3)
            faces = [(tuple(box), score, np.array(marks)) for box, score, marks in json.loads(detections)]
            pending.append((ImageResult.model_validate_json(result), faces, [[crop] for crop in crops]))
        results = list(self.predictor.estimate_photos(pending, self.thresholds))
        return {"path": [r.path for r in results], "record": [r.model_dump_json() for r in results]}


# ---------------------------------------------------------------- shards out


def _results_sink(output: str, shard_format: str, heads: tuple[Head, ...]):
    """A Ray Data datasink writing shards (`part-*.jsonl` or `part-*.parquet`), each whole or not at all
    (see the module docstring), and counting files, faces and errors on the way, so the summary needs no
    second pass over the results."""
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink

    class ResultsSink(Datasink):
        def __init__(self):
            self.run = BatchRun()

        def write(self, blocks, ctx) -> BatchRun:
            filesystem, folder = _filesystem(output)
            filesystem.create_dir(folder, recursive=True)
            run = BatchRun()
            for block in blocks:
                records = BlockAccessor.for_block(block).to_arrow().column("record").to_pylist()
                if not records:
                    continue
                for record in records:
                    result = ImageResult.model_validate_json(record)
                    run.files, run.faces = run.files + 1, run.faces + len(result.faces)
                    if result.error:
                        run.failed += 1
                        if len(run.errors) < 20:
                            run.errors.append(result.error)
                name = f"part-{uuid.uuid4().hex}.{shard_format}"
                partial = f"{folder}/{PARTIAL_PREFIX}{name}"
                with filesystem.open_output_stream(partial) as file:
                    _write_shard(records, shard_format, file, heads)
                filesystem.move(partial, f"{folder}/{name}")
            return run

        def on_write_complete(self, write_result):
            for part in write_result.write_returns:
                if part is None:
                    continue
                self.run.files += part.files
                self.run.faces += part.faces
                self.run.failed += part.failed
                self.run.errors += part.errors[: max(0, 20 - len(self.run.errors))]

    return ResultsSink()


def _write_shard(records: list[str], shard_format: str, file, heads: tuple[Head, ...]) -> None:
    if shard_format == "jsonl":
        file.write("".join(r + "\n" for r in records).encode())
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = csv_columns(heads)
    rows = [row for r in records for row in ImageResult.model_validate_json(r).csv_rows(heads)]
    pq.write_table(pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]), file)


def completed_paths(output: str, shard_format: str) -> set[str]:
    """The files that have a record in a complete shard of `output` already; partial shards a killed
    run left are removed."""
    from pyarrow import fs

    filesystem, folder = _filesystem(output)
    if filesystem.get_file_info(folder).type != fs.FileType.Directory:
        return set()
    done: set[str] = set()
    for info in filesystem.get_file_info(fs.FileSelector(folder)):
        if info.base_name.startswith(PARTIAL_PREFIX):
            filesystem.delete_file(info.path)
        elif info.base_name.startswith("part-") and info.base_name.endswith(f".{shard_format}"):
            with filesystem.open_input_file(info.path) as file:
                if shard_format == "jsonl":
                    done.update(json.loads(line)["path"] for line in file.read().decode().splitlines() if line)
                else:
                    import pyarrow.parquet as pq

                    done.update(pq.read_table(file, columns=["path"]).column("path").to_pylist())
    return done


@contextlib.contextmanager
def private_local_ray():
    """A local Ray instance for this run only (see the module docstring), shut down and its temporary
    folder removed on the way out. Joins RAY_ADDRESS instead when set, or uses Ray already started."""
    imported = sys.modules.get("ray")
    if (imported is not None and imported.is_initialized()) or os.environ.get("RAY_ADDRESS"):
        import ray

        if not ray.is_initialized():
            ray.init(logging_level="WARNING", log_to_driver=False)
        yield
        return
    scratch = tempfile.mkdtemp(prefix="facescope-ray-")
    environment = dict(PRIVATE_RAY_ENVIRONMENT)
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        environment["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # else Ray saves one to ~/.ray/auth_token
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        import ray  # after the environment is set: Ray reads some of it on import

        ray.init(logging_level="WARNING", log_to_driver=False, include_dashboard=False,
                 dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1", _temp_dir=scratch)
        yield
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)


def predict_to_shards(paths: Iterable[str] = (), output: str = "results", *, manifest: str | None = None,
                      bundle: str | None = None, workers: int = 1, shard_format: str = "jsonl",
                      aligned: bool = False, recursive: bool = False, batch_size: int = 32,
                      photos_per_task: int = 64, detection: dict | None = None,
                      thresholds: dict[str, float] | None = None) -> BatchRun:
    """Predict every photo in `paths` (and/or `manifest`) on Ray; write shards to `output` (a folder or
    URI). Joins the Ray cluster at RAY_ADDRESS when set, else starts a private local one (all cores).
    `workers` actors run the network (half a CPU each); detection tasks get the rest, with the detection
    options `detection` (facescope.faces.options; the defaults where left out). Files that already
    have a record in a complete shard of `output` are not predicted again (`already_done`). A head's
    answer under its `thresholds` entry is written "uncertain" (probabilities kept), as `predict` does."""
    if shard_format not in SHARD_FORMATS:
        raise ValueError(f"shard format must be one of {SHARD_FORMATS}")
    names = list_inputs(paths, manifest, recursive)
    if not names:
        raise ValueError("no files to predict")
    done = completed_paths(output, shard_format)
    todo = [name for name in names if name not in done]
    if not todo:
        return BatchRun(already_done=len(names))
    with private_local_ray():
        run = _predict_on_ray(todo, output, bundle, workers, shard_format, aligned, batch_size, photos_per_task,
                              tuple(sorted((detection or {}).items())), thresholds or {})
    run.already_done = len(names) - len(todo)
    return run


def _predict_on_ray(names: list[str], output: str, bundle: str | None, workers: int, shard_format: str,
                    aligned: bool, batch_size: int, photos_per_task: int,
                    detection: tuple[tuple[str, float], ...], thresholds: dict[str, float]) -> BatchRun:
    import ray

    # Checked here, and absolute: every worker opens the same bundle folder (on a cluster, it must be at
    # this path on every node, or be the default model that ships inside the package).
    from facescope.bundles import read_info, resolve_bundle

    resolved = resolve_bundle(bundle)
    heads = read_info(resolved).heads  # the Parquet columns
    bundle = None if bundle in (None, "default") else str(resolved.resolve())
    dataset = ray.data.from_items([{"path": n} for n in names],
                                  override_num_blocks=max(1, -(-len(names) // photos_per_task)))
    dataset = dataset.map_batches(prepare_batch, batch_size=photos_per_task, num_cpus=1,
                                  fn_kwargs={"bundle": bundle, "aligned": aligned, "detection": detection})
    # The actors reserve memory for their network and batches (Ray's scheduler then never packs more on a
    # node than fit). Differing from the tasks' requests, it also keeps Ray Data from fusing detection into
    # the actors (it fuses only stages that ask for the same resources): fused, detection would run inside
    # the few actors instead of in tasks on every free CPU.
    dataset = dataset.map_batches(NetworkActor, fn_constructor_kwargs={"bundle": bundle, "detection": detection,
                                                                       "thresholds": thresholds},
                                  batch_size=batch_size, concurrency=workers, num_cpus=NETWORK_CPUS,
                                  memory=ACTOR_MEMORY)
    sink = _results_sink(output, shard_format, heads)
    dataset.write_datasink(sink)
    return sink.run


def run(source: Inputs, predictor: PredictorSpec, sink: ShardSink) -> int:
    """The Ray engine (facescope.engines; `facescope predict --engine ray`): shards into the sink's
    output, the closing summary on stderr; exit status 1 when some files could not be read, as the
    local engine."""
    import typer

    if importlib.util.find_spec("ray") is None:  # not imported here: see private_local_ray
        raise ValueError("--engine ray needs Ray: pip install 'facescope[ray]'") from None
    from facescope.bundles import read_bundle_info

    output, shard_format = sink.output, sink.format.value
    # The driver loads no predictor, so thresholds asked for are checked against the heads model.json names.
    thresholds = predictor.answer_thresholds(read_bundle_info(predictor.model).heads if predictor.thresholds else ())
    try:
        run = predict_to_shards(source.arguments, output, manifest=source.manifest, bundle=predictor.model,
                                workers=predictor.workers, shard_format=shard_format, aligned=predictor.aligned,
                                recursive=source.recursive, batch_size=predictor.batch_size,
                                detection=predictor.detection, thresholds=thresholds)
    except KeyboardInterrupt:
        completed_paths(output, shard_format)  # removes the shards left half-written
        typer.echo(f"interrupted: the complete shards are kept in {output}; the same command again predicts "
                   "only the files they do not have", err=True)
        return 130
    except Exception as error:
        if not _is_full_disk(error):
            raise
        typer.echo(f"error: no space left on device writing shards to {output}; the complete shards are kept: "
                   "free some space and run the same command again to finish", err=True)
        return 1
    if run.already_done:
        typer.echo(f"{run.already_done} files already had records in {output} (kept, not predicted again)",
                   err=True)
    typer.echo(f"{run.files} files, {run.faces} faces, {run.failed} unreadable; shards in {output}", err=True)
    for error in run.errors:
        typer.echo(f"  error: {error}", err=True)
    if run.failed > len(run.errors):
        typer.echo(f"  ... and {run.failed - len(run.errors)} more (records with an error in the shards)", err=True)
    return 1 if run.failed else 0


def _is_full_disk(error: BaseException) -> bool:
    """Whether a full disk (ENOSPC, EDQUOT) is behind `error`, however Ray wrapped it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (isinstance(error, OSError) and error.errno in FULL_DISK) or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__ or getattr(error, "cause", None)
    return False
