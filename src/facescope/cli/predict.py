"""`facescope predict PATH...`: every face in every photo, as JSON lines (or JSON, or CSV) on stdout.

stdout carries the results and nothing else; progress, the use notice and the summary go to stderr.
Every path given or found gets exactly one record, in order, written as soon as it is computed: a run
stopped half-way keeps every record already written (in JSON, the document is closed on the way out).
Exit status: 0 every file read, 1 some could not be (each has its error record) or the output could not
be written (a full disk), 2 a usage error (a bad option, a bad model bundle, an --annotate folder that
cannot be written), 3 an internal error (a bug: please report it); 128 + the signal's number when stopped
by SIGINT (Ctrl-C), SIGTERM or SIGHUP, after the JSON document is closed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import json
import os
import signal
import sys
import tempfile
import threading
from enum import Enum
from pathlib import Path

import typer
from tqdm import tqdm

from facescope.heads import DEFAULT_THRESHOLDS, Head
from facescope.inference.results import ImageResult, csv_columns
from facescope.inference.sources import STDIN, collect_files

EXIT_UNREADABLE = 1
EXIT_INTERNAL_ERROR = 3


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"  # --engine ray only: shards of the csv columns


class Engine(str, Enum):
    local = "local"
    ray = "ray"


# Signals that stop a run the way Ctrl-C does: what was written is kept and a JSON document closed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# Where an annotated photo is written before it takes its final name (hidden: a later run over the
# folder passes it over), with the writer's process id, so a copy left by a killed run can be told apart.
PARTIAL_PREFIX = ".facescope-partial-"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class Stopped(Exception):
    """A stop signal arrived (Ctrl-C, SIGTERM, SIGHUP): raised between two records, never inside one."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Writer:
    """Writes each result as it comes, in the chosen format; `close` ends a JSON document, and is called
    however the run ends, so what was written stays valid. A stop signal that arrives while a record is
    being written is held until the record is whole."""

    def __init__(self, out, format: OutputFormat, heads: tuple[Head, ...]):
        self.out, self.format, self.count, self.heads = out, format, 0, heads
        self.busy, self.stop_signal = False, None
        self.csv = csv.DictWriter(out, csv_columns(heads)) if format is OutputFormat.csv else None
        if self.csv:
            self.csv.writeheader()
        elif format is OutputFormat.json:
            out.write("[")

    def write(self, result: ImageResult) -> None:
        self.busy = True
        try:
            if self.csv:
                self.csv.writerows(result.csv_rows(self.heads))
            elif self.format is OutputFormat.jsonl:
                self.out.write(result.model_dump_json() + "\n")
            else:
                self.out.write(("," if self.count else "") + "\n" + result.model_dump_json(indent=2))
            self.count += 1
            self.out.flush()
        finally:
            self.busy = False
        if self.stop_signal is not None:
            raise Stopped(self.stop_signal)

    def close(self) -> None:
        self.busy = True  # the document's end is written whatever arrives meanwhile
        if self.format is OutputFormat.json:
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()

    def on_signal(self, signum, _frame) -> None:
        if self.busy:
            self.stop_signal = signum
        else:
            raise Stopped(signum)


def check_annotation_folder(folder: Path) -> None:
    """Makes the --annotate folder, and proves a file can be made in it, before any photo is read: a
    path that is a file, lies under a file, or may not be written is one line on stderr (ValueError)."""
    from facescope.faces.intake import display_name

    where = f"--annotate {display_name(folder)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"{where}: is a file, not a folder") from None
    except NotADirectoryError:
        raise ValueError(f"{where}: a part of the path is a file, not a folder") from None
    except OSError as error:
        raise ValueError(f"{where}: cannot create the folder ({error.strerror})") from None
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=PARTIAL_PREFIX):
            pass
    except OSError as error:
        raise ValueError(f"{where}: cannot write into the folder ({error.strerror})") from None
    for left in folder.glob(f"{PARTIAL_PREFIX}*"):  # copies a killed run was writing: never finished
        pid = left.name[len(PARTIAL_PREFIX):].partition("-")[0]
        if pid.isdigit() and not _is_running(int(pid)):
            left.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _annotate(result: ImageResult, source, folder: Path, used: set[str]) -> tuple[Path, str]:
    """Writes the annotated photo under a name no other file has: `face.annotated.jpg`, or
    `face.annotated-2.jpg` and so on when that is taken (by another photo of this run, or already
    there); the copy of an earlier run of the same photo, byte for byte the same, is kept as it is.
    Returns (its path, "written", "renamed" or "already there").

    Atomic: the JPEG is written under a hidden temporary name, then linked to its final name, which
    fails rather than replace a file already there; an interrupted run leaves no partial file under
    a final name."""
    import io

    # Read again rather than kept: the predictor works ahead on many photos, and holding each full-size
    # photo until its turn here could take gigabytes.
    buffer = io.BytesIO()
    result.draw(source).save(buffer, format="JPEG", quality=92)
    data = buffer.getvalue()
    stem = "stdin" if isinstance(source, bytes) else Path(source).stem
    descriptor, partial = tempfile.mkstemp(dir=folder, prefix=f"{PARTIAL_PREFIX}{os.getpid()}-")
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())  # as an ordinary new file (mkstemp makes it private)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        for number in range(1, 100_000):
            target = folder / f"{stem}.annotated{'' if number == 1 else f'-{number}'}.jpg"
            if target.name in used:
                continue
            if _holds(target, data):
                used.add(target.name)
                return target, "already there"
            try:
                os.link(partial, target)
            except FileExistsError:
                continue
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                # A file system without hard links (FAT, some network shares): a rename, checked first.
                if target.exists():
                    continue
                os.rename(partial, target)
            used.add(target.name)
            return target, "renamed" if number > 1 else "written"
    finally:
        Path(partial).unlink(missing_ok=True)
    raise FileExistsError(f"no free name for {stem}.annotated.jpg in {folder}")


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _holds(target: Path, data: bytes) -> bool:
    try:
        return target.stat().st_size == len(data) and target.read_bytes() == data
    except OSError:
        return False


def describe_write_error(error: OSError) -> str:
    if error.errno in FULL_DISK:
        return "no space left on device"
    return error.strerror or str(error)


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
    detection_size: int | None = typer.Option(None, min=32, max=8192, help="longer side photos are detected "
                                              "at, in px (default 960): larger finds smaller faces, slower"),
    score_threshold: float | None = typer.Option(None, min=0.0, max=1.0, help="lowest detector score kept "
                                                 "(default 0.7)"),
    min_face_size: float | None = typer.Option(None, min=0, help="smallest face kept, in px (default 20)"),
    max_faces: int | None = typer.Option(None, min=1, help="most faces analysed per photo, the largest "
                                         "first (default 50); each record says how many were found"),
    every: int = typer.Option(1, "--every", help="video: process every Nth frame"),
    fps: float | None = typer.Option(None, "--fps", help="video: process at most this many frames per second"),
    duration: float | None = typer.Option(None, "--duration", help="video: stop after this many seconds"),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local | ray: a Ray Data pipeline writing shards "
                                  "to --output (pip install 'facescope[ray]'; joins RAY_ADDRESS when set)"),
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
    from facescope.faces.intake import display_name
    from facescope.heads import parse_thresholds
    from facescope.inference.error_figures import withhold_uncertain_faces
    from facescope.inference.predictor import INTERNAL_ERROR, Predictor
    from facescope.inference.video import is_video_source

    typer.echo(f"note: {NOTICE}", err=True)
    paths = paths or []
    if engine is Engine.ray:
        from facescope.bundles import read_bundle_info
        from facescope.batch import predict_ray_command

        if output is None or format not in (OutputFormat.jsonl, OutputFormat.parquet):
            raise typer.BadParameter("--engine ray writes shards: give --output and --format jsonl or parquet")
        try:
            thresholds = parse_thresholds(threshold, read_bundle_info(model).heads if threshold else None)
        except ValueError as error:  # also a model that cannot be read
            raise typer.BadParameter(str(error), param_hint="--threshold") from None
        raise typer.Exit(predict_ray_command(paths, manifest, output, model, workers, format.value, aligned,
                                             recursive, batch_size, thresholds))
    if not paths or format is OutputFormat.parquet or manifest or output:
        raise typer.BadParameter("give photos, folders or a video; --format parquet, --manifest and --output "
                                 "are for --engine ray")
    if any(is_video_source(p) for p in paths):
        from facescope.inference.video import predict_video_command

        if len(paths) > 1 or format is not OutputFormat.jsonl:
            raise typer.BadParameter("a video, stream or camera is read alone, with --format jsonl")
        if threshold:
            raise typer.BadParameter("a video's tracks pool every frame's probabilities and answer with "
                                     "them; --threshold is for photos", param_hint="--threshold")
        raise typer.Exit(predict_video_command(paths[0], model, every, fps, duration, annotate, overwrite))
    detection = {"detection_size": detection_size, "score_threshold": score_threshold,
                 "min_face_size": min_face_size, "max_faces": max_faces}
    if annotate is not None:
        try:
            check_annotation_folder(annotate)
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
    predictor = Predictor(model, batch_size=batch_size, **{k: v for k, v in detection.items() if v is not None})
    try:
        thresholds = parse_thresholds(threshold, predictor.info.heads)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--threshold") from None
    files, skipped = collect_files([Path(p) for p in paths], recursive)

    # Standard input is read here, once, so the photo can be read again to annotate it.
    sources = [sys.stdin.buffer.read() if str(f) == STDIN else f for f in files]
    names = ["<stdin>" if str(f) == STDIN else display_name(f) for f in files]
    try:
        writer = _Writer(sys.stdout, format, predictor.info.heads)
    except OSError as error:  # not even the header could be written
        typer.echo(f"error: cannot write the results ({describe_write_error(error)})", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from None
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, writer.on_signal) for s in (signal.SIGINT, *STOP_SIGNALS)} if main_thread else {}
    results = predictor.predict_images(sources, aligned=aligned, names=names)
    progress = tqdm(zip(sources, results), total=len(files), unit="img", desc="predicting", file=sys.stderr,
                    disable=len(files) < 2)
    failed, internal, faces, annotated_names, kept = [], 0, 0, set(), 0
    try:
        for source, result in progress:
            faces += len(result.faces)
            withhold_uncertain_faces(result, thresholds)
            if result.error:
                failed.append(result.error)
                internal += result.error.startswith(INTERNAL_ERROR)
            writer.write(result)
            if annotate is not None and not result.error:
                try:
                    target, how = _annotate(result, source, annotate, annotated_names)
                    kept += how == "already there"
                    if how == "renamed":
                        typer.echo(f"{result.path}: annotated as {display_name(target)} (name taken)", err=True)
                except Exception as error:  # the results are written; one picture not drawn is an error
                    reason = describe_write_error(error) if isinstance(error, OSError) else error
                    failed.append(f"{result.path}: could not write its annotated copy ({reason})")
    except BrokenPipeError:  # the reader went away (`| head`): nothing more can be written
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_UNREADABLE if failed else 0) from None
    except (Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        _close_quietly(writer)
        typer.echo(f"stopped by {signal.Signals(signum).name}: {writer.count} of {len(files)} files written"
                   + (" (the JSON document is closed)" if format is OutputFormat.json else ""), err=True)
        raise typer.Exit(128 + signum) from None
    except OSError as error:  # the results could not be written: a full disk, a failing device
        with contextlib.suppress(OSError):
            writer.close()
        typer.echo(f"error: cannot write the results ({describe_write_error(error)}): stopped after {writer.count} "
                   f"of {len(files)} files", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from None
    except Exception as error:
        _close_quietly(writer)
        typer.echo(f"internal error after {writer.count} of {len(files)} files: {type(error).__name__}: {error}",
                   err=True)
        raise typer.Exit(EXIT_INTERNAL_ERROR) from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    written = _close_quietly(writer)
    typer.echo(f"{len(files)} files, {faces} faces, {len(failed)} unreadable", err=True)
    if kept:
        typer.echo(f"{kept} annotated copies were already there, the same as this run's: kept", err=True)
    passed_over = ", ".join(f"{count} {kind}" for kind, count in skipped.items() if count)
    if passed_over:
        typer.echo(f"passed over: {passed_over}" + (" (use --recursive)" if skipped["sub-folders"] else ""),
                   err=True)
    for error in failed:
        typer.echo(f"  error: {error}", err=True)
    raise typer.Exit(EXIT_INTERNAL_ERROR if internal else EXIT_UNREADABLE if failed or not written else 0)


def _close_quietly(writer: _Writer) -> bool:
    """Ends the document; when the output itself cannot be written (a full disk), says so (False)."""
    try:
        writer.close()
    except OSError as error:
        typer.echo(f"error: cannot write the results ({describe_write_error(error)})", err=True)
        return False
    return True
