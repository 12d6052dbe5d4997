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
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from facescope.inference.results import ImageResult

SHARD_FORMATS = ("jsonl", "parquet")
# A network actor asks for half a CPU: batched, the network takes a small share of the time a photo needs
# (detection is most of it), and a whole CPU each would leave 2 actors on 2 CPUs no room to detect at all.
NETWORK_CPUS = 0.5
ACTOR_MEMORY = 512 * 2**20  # bytes: an onnxruntime session of the network and a batch of crops, with room


@dataclass
class BatchRun:
    files: int = 0
    faces: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the closing summary


# ---------------------------------------------------------------- inputs


def _is_uri(path: str) -> bool:
    return len(urlparse(path).scheme) > 1  # not a Windows drive letter


def list_inputs(paths: Iterable[str] = (), manifest: str | None = None, recursive: bool = False) -> list[str]:
    """The files to read, named as the CLI names them: local folders are listed by the CLI's own
    `collect_files`; a URI folder (s3://bucket/photos/) by its pyarrow filesystem; a manifest is a CSV
    or Parquet file with a `path` column, or a text file with one path per line."""
    from facescope.cli.predict import collect_files

    names: list[str] = []
    for path in paths:
        if not _is_uri(path):
            names += [str(p) for p in collect_files([Path(path)], recursive)[0]]
            continue
        filesystem, inner = _filesystem(path)
        from pyarrow import fs

        if filesystem.get_file_info(inner).type == fs.FileType.Directory:
            found = filesystem.get_file_info(fs.FileSelector(inner, recursive=recursive))
            scheme = urlparse(path).scheme
            names += sorted(f"{scheme}://{f.path}" for f in found
                            if f.type == fs.FileType.File and not f.base_name.startswith("."))
        else:
            names.append(path)
    if manifest is not None:
        names += _read_manifest(manifest)
    return names


def _read_manifest(manifest: str) -> list[str]:
    filesystem, inner = _filesystem(manifest)
    suffix = Path(inner).suffix.lower()
    with filesystem.open_input_file(inner) as file:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(file, columns=["path"]).column("path").to_pylist()
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(file)
            if "path" not in table.column_names:
                raise ValueError(f"{manifest}: a CSV manifest needs a `path` column")
            return table.column("path").to_pylist()
        return [line.strip() for line in file.read().decode().splitlines() if line.strip()]


def _filesystem(path: str):
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    from pyarrow import fs

    if not _is_uri(path):
        return fs.LocalFileSystem(), str(Path(path).resolve())
    return fs.FileSystem.from_uri(path)


# ---------------------------------------------------------------- the two stages


@functools.cache
def _predictor(bundle: str | None):
    """One Predictor per worker process, made on its first batch (Ray reuses worker processes)."""
    from facescope.inference.predictor import Predictor

    return Predictor(bundle, threads=1, workers=1)


def _read_source(name: str):
    """What `Predictor` reads for `name`: the path itself when local (so reading, and every error
    message, is the CLI's), else the file's bytes through its pyarrow filesystem."""
    if not _is_uri(name):
        return name
    from facescope.faces import ImageReadError

    try:
        filesystem, inner = _filesystem(name)
        with filesystem.open_input_file(inner) as file:
            return file.read()
    except (OSError, ValueError) as error:
        raise ImageReadError(f"{name}: cannot be read ({error})") from None


def prepare_batch(batch: dict[str, np.ndarray], bundle: str | None, aligned: bool) -> dict[str, list]:
    """Ray task: read, detect and align each photo of a batch of paths. Crops travel as raw bytes,
    detections as JSON (exact floats), so the network stage rebuilds what the CLI's predictor holds."""
    from facescope.faces import ImageReadError

    predictor = _predictor(bundle)
    out: dict[str, list] = {"result": [], "detections": [], "crops": []}
    for name in batch["path"]:
        try:
            source = _read_source(str(name))
        except ImageReadError as error:
            result, detections, crops = ImageResult(path=str(name), error=str(error)), [], []
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
    """Ray actor: loads the bundle once and estimates the crops of many photos in shared batches."""

    def __init__(self, bundle: str | None):
        self.predictor = _predictor(bundle)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        size = self.predictor.input_size
        pending = []
        for result, detections, crops in zip(batch["result"], batch["detections"], batch["crops"]):
            crops = np.frombuffer(crops, np.uint8).reshape(-1, size, size, 3)
            faces = [(tuple(box), score, np.array(marks)) for box, score, marks in json.loads(detections)]
            pending.append((ImageResult.model_validate_json(result), faces, [[crop] for crop in crops]))
        results = list(self.predictor.estimate_photos(pending))
        return {"path": [r.path for r in results], "record": [r.model_dump_json() for r in results]}


# ---------------------------------------------------------------- shards out


def _results_sink(output: str, shard_format: str):
    """A Ray Data datasink writing shards (`part-*.jsonl` or `*.parquet`) and counting files, faces and
    errors on the way, so the summary needs no second pass over the results."""
    from ray.data.datasource import BlockBasedFileDatasink

    class ResultsSink(BlockBasedFileDatasink):
        def __init__(self):
            super().__init__(output, file_format=shard_format)
            self.run = BatchRun()

        def write(self, blocks, ctx):
            blocks = list(blocks)
            run = BatchRun()
            for block in blocks:
                for record in block.column("record").to_pylist():
                    result = ImageResult.model_validate_json(record)
                    run.files, run.faces = run.files + 1, run.faces + len(result.faces)
                    if result.error:
                        run.failed += 1
                        if len(run.errors) < 20:
                            run.errors.append(result.error)
            super().write(blocks, ctx)
            return run

        def write_block_to_file(self, block, file):
            records = block.to_arrow().column("record").to_pylist()
            if shard_format == "jsonl":
                file.write("".join(r + "\n" for r in records).encode())
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                from facescope.cli.predict import CSV_COLUMNS, _csv_rows

                rows = [row for r in records for row in _csv_rows(ImageResult.model_validate_json(r))]
                pq.write_table(pa.Table.from_pylist([{c: row.get(c) for c in CSV_COLUMNS} for row in rows]), file)

        def on_write_complete(self, write_result):
            super().on_write_complete(write_result)
            for part in write_result.write_returns:
                if part is None:
                    continue
                self.run.files += part.files
                self.run.faces += part.faces
                self.run.failed += part.failed
                self.run.errors += part.errors[: max(0, 20 - len(self.run.errors))]

    return ResultsSink()


def predict_to_shards(paths: Iterable[str] = (), output: str = "results", *, manifest: str | None = None,
                      bundle: str | None = None, workers: int = 1, shard_format: str = "jsonl",
                      aligned: bool = False, recursive: bool = False, batch_size: int = 32,
                      photos_per_task: int = 64) -> BatchRun:
    """Predict every photo in `paths` (and/or `manifest`) on Ray; write shards to `output` (a folder or
    URI). Joins the Ray cluster at RAY_ADDRESS when set, else starts a local one (all cores).
    `workers` actors run the network (half a CPU each); detection tasks get the rest."""
    import ray

    if shard_format not in SHARD_FORMATS:
        raise ValueError(f"shard format must be one of {SHARD_FORMATS}")
    names = list_inputs(paths, manifest, recursive)
    if not names:
        raise ValueError("no files to predict")
    if not ray.is_initialized():
        ray.init(logging_level="WARNING", log_to_driver=False)
    # Checked here, and absolute: every worker opens the same bundle folder (on a cluster, it must be at
    # this path on every node, or be the default model that ships inside the package).
    from facescope.bundles import resolve_bundle

    bundle = None if bundle in (None, "default") else str(resolve_bundle(bundle).resolve())
    dataset = ray.data.from_items([{"path": n} for n in names],
                                  override_num_blocks=max(1, -(-len(names) // photos_per_task)))
    dataset = dataset.map_batches(prepare_batch, fn_kwargs={"bundle": bundle, "aligned": aligned},
                                  batch_size=photos_per_task, num_cpus=1)
    # The actors reserve memory for their network and batches (Ray's scheduler then never packs more on a
    # node than fit). Differing from the tasks' requests, it also keeps Ray Data from fusing detection into
    # the actors (it fuses only stages that ask for the same resources): fused, detection would run inside
    # the few actors instead of in tasks on every free CPU.
    dataset = dataset.map_batches(NetworkActor, fn_constructor_kwargs={"bundle": bundle}, batch_size=batch_size,
                                  concurrency=workers, num_cpus=NETWORK_CPUS, memory=ACTOR_MEMORY)
    sink = _results_sink(output, shard_format)
    dataset.write_datasink(sink)
    return sink.run


def predict_ray_command(paths: list[str], manifest: str | None, output: str, bundle: str | None, workers: int,
                        shard_format: str, aligned: bool, recursive: bool, batch_size: int) -> int:
    """`facescope predict --engine ray`: the CLI's closing summary on stderr; exit status 1 when some
    files could not be read, as the local engine."""
    import typer

    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'facescope[ray]'") from None
    run = predict_to_shards(paths, output, manifest=manifest, bundle=bundle, workers=workers,
                            shard_format=shard_format, aligned=aligned, recursive=recursive, batch_size=batch_size)
    typer.echo(f"{run.files} files, {run.faces} faces, {run.failed} unreadable; shards in {output}", err=True)
    for error in run.errors:
        typer.echo(f"  error: {error}", err=True)
    if run.failed > len(run.errors):
        typer.echo(f"  ... and {run.failed - len(run.errors)} more (records with an error in the shards)", err=True)
    return 1 if run.failed else 0
