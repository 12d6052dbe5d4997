"""`facescope predict PATH...`: every face in every photo, as JSON lines (or JSON, or CSV) on stdout.

stdout carries the results and nothing else; progress, the use notice and the summary go to stderr.
Exit status 0 when every file was read, 1 when some could not be.
"""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from pathlib import Path

import typer
from tqdm import tqdm

from facescope.inference.results import ImageResult


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"  # --engine ray only: shards of the csv columns


class Engine(str, Enum):
    local = "local"
    ray = "ray"


CSV_COLUMNS = ["path", "width", "height", "face", "x1", "y1", "x2", "y2", "score", "age_years", "age_bin",
               "gender", "gender_prob", "race", "race_prob", "error"]


def collect_files(paths: list[Path], recursive: bool) -> list[Path]:
    """The files to read: each file given, and the (non-hidden) files in each folder given, sorted.
    Every file in a folder is tried, so a broken or non-image file is reported rather than ignored."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            files += sorted(p for p in found if p.is_file() and not p.name.startswith("."))
        else:
            files.append(path)  # a missing file is reported by the reader, in order
    return files


def _csv_rows(result: ImageResult):
    base = {"path": result.path, "width": result.width, "height": result.height, "error": result.error}
    if not result.faces:
        yield base
    for index, face in enumerate(result.faces):
        yield base | {
            "face": index, "x1": face.box[0], "y1": face.box[1], "x2": face.box[2], "y2": face.box[3],
            "score": face.score, "age_years": face.age.years, "age_bin": face.age.bin,
            "gender": face.gender.label, "gender_prob": face.gender.probs[face.gender.label],
            "race": face.race.label, "race_prob": face.race.probs[face.race.label],
        }


def predict_command(
    paths: list[str] = typer.Argument(None, metavar="PHOTO", help="image files and/or folders; or one video file, "
                                      "stream URL or webcam index"),
    model: str | None = typer.Option(None, "--model", "-m", metavar="BUNDLE",
                                     help="bundle folder (default: the bundled model)"),
    format: OutputFormat = typer.Option(OutputFormat.jsonl, "--format", "-f",
                                        help="one JSON object per line, one JSON list, or one CSV row per face "
                                             "(parquet: --engine ray only)"),
    annotate: Path | None = typer.Option(None, "--annotate", metavar="DIR",
                                         help="write each photo with boxes and labels here (a video: this .mp4 file)"),
    aligned: bool = typer.Option(False, "--aligned", help="each image is one aligned face crop (no detection)"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="look into sub-folders"),
    batch_size: int = typer.Option(32, help="faces per network batch"),
    every: int = typer.Option(1, "--every", help="video: process every Nth frame"),
    fps: float | None = typer.Option(None, "--fps", help="video: process at most this many frames per second"),
    duration: float | None = typer.Option(None, "--duration", help="video: stop after this many seconds"),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local | ray: a Ray Data pipeline writing shards "
                                  "to --output (pip install 'facescope[ray]'; joins RAY_ADDRESS when set)"),
    output: str | None = typer.Option(None, "--output", "-o", help="--engine ray: folder or URI for the shards"),
    manifest: str | None = typer.Option(None, "--manifest", help="--engine ray: CSV/Parquet with a path column, "
                                        "or one path per line (local or a URI)"),
    workers: int = typer.Option(1, "--workers", help="--engine ray: network actors (detection tasks use the rest of the CPUs)"),
) -> None:
    """Estimate age, gender and race for every face in the given photos, or track faces in a video.

    Results go to stdout (one JSON object per photo and line, by default); the notice, progress and
    summary go to stderr. Exit status 1 when some file could not be read.

    \b
    Examples:
      facescope predict group.jpg
      facescope predict photos/ -r --format csv > faces.csv
      facescope predict group.jpg --annotate annotated/ > group.jsonl
      facescope predict clip.mp4 --every 3 --annotate clip.annotated.mp4 > clip.jsonl
      facescope predict photos/ --engine ray --output results/
    """
    from facescope.cli import NOTICE
    from facescope.inference.predictor import Predictor
    from facescope.inference.video import is_video_source

    typer.echo(f"note: {NOTICE}", err=True)
    paths = paths or []
    if engine is Engine.ray:
        from facescope.batch import predict_ray_command

        if output is None or format not in (OutputFormat.jsonl, OutputFormat.parquet):
            raise typer.BadParameter("--engine ray writes shards: give --output and --format jsonl or parquet")
        raise typer.Exit(predict_ray_command(paths, manifest, output, model, workers, format.value, aligned,
                                             recursive, batch_size))
    if not paths or format is OutputFormat.parquet or manifest or output:
        raise typer.BadParameter("give photos, folders or a video; --format parquet, --manifest and --output "
                                 "are for --engine ray")
    if any(is_video_source(p) for p in paths):
        from facescope.inference.video import predict_video_command

        if len(paths) > 1 or format is not OutputFormat.jsonl:
            raise typer.BadParameter("a video, stream or camera is read alone, with --format jsonl")
        raise typer.Exit(predict_video_command(paths[0], model, every, fps, duration, annotate))
    predictor = Predictor(model, batch_size=batch_size)
    files = collect_files([Path(p) for p in paths], recursive)
    if annotate is not None:
        from facescope.faces import read_image
        from facescope.serving.annotate import annotate_image

        annotate.mkdir(parents=True, exist_ok=True)
    results = predictor.predict_images(files, aligned=aligned, names=[str(f) for f in files])
    progress = tqdm(results, total=len(files), unit="img", desc="predicting", file=sys.stderr,
                    disable=len(files) < 2)
    out = sys.stdout
    writer = csv.DictWriter(out, CSV_COLUMNS) if format is OutputFormat.csv else None
    if writer:
        writer.writeheader()
    collected, failed, faces = [], [], 0
    for result in progress:
        faces += len(result.faces)
        if result.error:
            failed.append(result)
        if format is OutputFormat.jsonl:
            out.write(result.model_dump_json() + "\n")
            out.flush()
        elif writer:
            writer.writerows(_csv_rows(result))
        else:
            collected.append(result.model_dump())
        if annotate is not None and not result.error:
            # Read again rather than kept: the predictor works ahead on many photos, and holding each
            # full-size photo until its turn here could take gigabytes.
            annotated = annotate_image(read_image(result.path), result.faces)
            annotated.save(annotate / f"{Path(result.path).stem}.annotated.jpg", quality=92)
    if format is OutputFormat.json:
        json.dump(collected, out, indent=2)
        out.write("\n")
    typer.echo(f"{len(files)} files, {faces} faces, {len(failed)} unreadable", err=True)
    for result in failed:
        typer.echo(f"  error: {result.error}", err=True)
    raise typer.Exit(1 if failed else 0)
