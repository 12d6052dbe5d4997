"""Sinks: where an engine's records go (facescope.engines).

`StreamSink`: records written onto a text stream (standard output) as they come, as JSON lines, one JSON
document or CSV, and each photo's annotated copy into a folder (a video's into one .mp4 file).
`ShardSink`: shards written to a folder or URI (the Ray engine: JSON lines or Parquet, facescope.batch).

Light: no model library, so `facescope predict -h` imports it freely.
"""

from __future__ import annotations

import csv
import errno
import functools
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from facescope.heads import Head
from facescope.inference.results import ImageResult, csv_columns

if TYPE_CHECKING:
    from pydantic import BaseModel


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"  # shards only: the csv columns


# Where an annotated photo is written before it takes its final name (hidden: a later run over the
# folder passes it over), with the writer's process id, so a copy left by a killed run can be told apart.
PARTIAL_PREFIX = ".facescope-partial-"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class StreamSink:
    """Records onto a text stream (standard output when `out` is None), and annotated copies."""

    format: OutputFormat = OutputFormat.jsonl
    annotate: Path | None = None  # photos: a folder for each one's annotated copy; a video: its .mp4 file
    overwrite: bool = False  # a video: replace the --annotate file if it exists
    out: TextIO | None = None

    def open(self, heads: tuple[Head, ...]) -> RecordWriter:
        return RecordWriter(self.out or sys.stdout, self.format, heads)


@dataclass(frozen=True)
class ShardSink:
    """Shards (`part-*.jsonl` or `part-*.parquet`) in a folder or URI, each written whole or not at all."""

    output: str
    format: OutputFormat = OutputFormat.jsonl


class Stopped(Exception):
    """A stop signal arrived (Ctrl-C, SIGTERM, SIGHUP): raised between two records, never inside one."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RecordWriter:
    """Writes each record as it comes, in the chosen format; `close` ends a JSON document, and is called
    however the run ends, so what was written stays valid. A stop signal that arrives while a record is
    being written (with `on_signal` as its handler) is held until the record is whole."""

    def __init__(self, out: TextIO, format: OutputFormat, heads: tuple[Head, ...]):
        self.out, self.format, self.count, self.heads = out, format, 0, heads
        self.busy, self.stop_signal = False, None
        self.csv = csv.DictWriter(out, csv_columns(heads)) if format is OutputFormat.csv else None
        if self.csv:
            self.csv.writeheader()
        elif format is OutputFormat.json:
            out.write("[")

    def write(self, result: ImageResult | BaseModel) -> None:
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


def describe_write_error(error: OSError) -> str:
    if error.errno in FULL_DISK:
        return "no space left on device"
    return error.strerror or str(error)


# ---------------------------------------------------------------- annotated photos


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


def write_annotated_copy(result: ImageResult, source, folder: Path, used: set[str]) -> tuple[Path, str]:
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
