"""`facescope predict PATH...`: every face in every photo, as JSON lines (or JSON, or CSV) on stdout.

stdout carries the results and nothing else; progress, the use notice and the summary go to stderr.
This command picks what is read (facescope.inference.sources), the engine that reads it
(facescope.engines: local, video or Ray) and where the records go (facescope.inference.sinks); the
engine does the rest and says how it ended. Exit status: 0 every file read, 1 some could not be (each
has its error record) or the output could not be written (a full disk), 2 a usage error (a bad option,
a bad model bundle, an --annotate folder that cannot be written), 3 an internal error (a bug: please
report it); 128 + the signal's number when stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP, after the JSON
document is closed.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from facescope.cli.options import with_detection_options
from facescope.engines import ENGINES, PredictorSpec, choose, load
from facescope.heads import DEFAULT_THRESHOLDS, parse_thresholds
from facescope.inference.sinks import OutputFormat, ShardSink, StreamSink
from facescope.inference.sources import Inputs

EngineName = Enum("EngineName", {name: name for name in ENGINES}, type=str)  # --engine: the registry's names


@with_detection_options()
def predict_command(
    # Strings, not paths: a stream URL (rtsp://...) is not a path. An unreadable file is one error record.
    paths: list[str] = typer.Argument(None, metavar="PHOTO", help="image files and/or folders (- reads one photo "
                                      "from stdin); or one video file, stream URL or webcam index"),
    model: str | None = typer.Option(None, "--model", "-m", metavar="MODEL",
                                     help="installed model name (facescope models) or bundle folder "
                                          "(default: the bundled model)"),
    format: OutputFormat = typer.Option(OutputFormat.jsonl, "--format", "-f", help="jsonl | json | csv; "
                                        "each streams, one record per file as it is done (parquet: --engine ray only)"),
    annotate: Path | None = typer.Option(None, "--annotate", metavar="DIR", help="write each photo with boxes "
                                         "and labels here (never overwriting: NAME.annotated-2.jpg when taken); "
                                         "a video: this .mp4 file"),
    overwrite: bool = typer.Option(False, "--overwrite", help="video: replace the --annotate file if it exists"),
    aligned: bool = typer.Option(False, "--aligned", help="each image is one aligned face crop (no detection)"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="look into sub-folders"),
    batch_size: int = typer.Option(32, min=1, help="faces per network batch"),
    detection: dict | None = None,  # the detection options' flags (facescope.cli.options)
    every: int = typer.Option(1, "--every", help="video: process every Nth frame"),
    fps: float | None = typer.Option(None, "--fps", help="video: process at most this many frames per second"),
    duration: float | None = typer.Option(None, "--duration", help="video: stop after this many seconds"),
    engine: EngineName | None = typer.Option(None, "--engine", help="; ".join(
        f"{name}: {engine.summary}" for name, engine in ENGINES.items()) + " (default: the first that reads the inputs)"),
    output: str | None = typer.Option(None, "--output", "-o", help="--engine ray: folder or URI for the shards"),
    manifest: str | None = typer.Option(None, "--manifest", help="--engine ray: CSV/Parquet with a path column, "
                                        "or one path per line (local or a URI)"),
    workers: int = typer.Option(1, "--workers", help="--engine ray: network actors (detection tasks use the rest of the CPUs)"),
    threshold: list[str] | None = typer.Option(None, "--threshold", metavar="HEAD=P", help="answer \"uncertain\" "
                                               "where a head's top probability is below P (repeat per head; "
                                               "\"none\": always answer; age: its age group's); default "
                                               + ", ".join(f"{h}={p:g}" for h, p in DEFAULT_THRESHOLDS.items())),
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

    typer.echo(f"note: {NOTICE}", err=True)
    source = Inputs(tuple(paths or ()), manifest, recursive, every, fps, duration)
    sink = ShardSink(output, format) if output is not None else StreamSink(format, annotate, overwrite)
    predictor = PredictorSpec(model, batch_size, aligned, detection, workers, _thresholds(threshold))
    try:
        name = choose(engine and engine.value, source, sink)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    raise typer.Exit(load(name)(source, predictor, sink))


def _thresholds(given: list[str] | None) -> tuple[str, ...] | None:
    """--threshold's items, their form and values checked now, before any model is loaded; None when not
    given. Their heads are checked by the engine against the model it loads (PredictorSpec.answer_thresholds),
    which reads model.json once."""
    if not given:
        return None
    try:
        parse_thresholds(given)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--threshold") from None
    return tuple(given)
