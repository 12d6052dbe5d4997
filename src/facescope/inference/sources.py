"""Where inputs come from, the one place that tells what an input is and opens it.

An argument (`facescope predict ARG...`) is one `Kind`: a photo file, a folder of photos, `-` (one photo
on standard input), a URI (s3://, gs://, hdfs://...: a photo or a folder, through pyarrow), a video file
(local or a URL), a stream (rtsp://, http://...) or a camera (`0`); a manifest (`--manifest`) lists
photos. `classify` says which; `Inputs` is what an engine is given (facescope.engines); each engine
opens what it reads here: `list_inputs` names the photos in order (folders listed the one way every
engine lists them, so the local engine and the Ray engine name and order their files alike),
`read_input` gives a photo's path or bytes, `open_video` what the video decoder opens.

Light: the standard library only (pyarrow for URIs and manifests, imported when one is read), so
`facescope predict -h` and the Ray driver import it freely.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlparse

STDIN = "-"
STDIN_NAME = "<stdin>"
# Suffixes of image files: in a folder, the files read (others are passed over and counted), and the
# folders reported rather than ignored (`album.jpg/`).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".avif", ".jp2"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp"}
STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"}


class Kind(str, Enum):
    PHOTO = "photo file"
    FOLDER = "folder"
    STDIN = "standard input"
    URI = "URI"
    MANIFEST = "manifest"
    VIDEO = "video file"
    STREAM = "stream"
    CAMERA = "camera"


VIDEO_KINDS = frozenset({Kind.VIDEO, Kind.STREAM, Kind.CAMERA})


def classify(argument: str) -> Kind:
    """What `argument` is: `-` standard input; a number that names no file a camera; a stream URL a
    stream, or a video file when its path has a video suffix; a path or URI with a video suffix a video
    file; another URI a URI (a photo or a folder, read through pyarrow); a local folder a folder;
    anything else a photo file (one that cannot be read gets its error record)."""
    if argument == STDIN:
        return Kind.STDIN
    if argument.isdigit() and not Path(argument).exists():
        return Kind.CAMERA
    if urlparse(argument).scheme.lower() in STREAM_SCHEMES:
        return Kind.VIDEO if Path(urlparse(argument).path).suffix.lower() in VIDEO_SUFFIXES else Kind.STREAM
    if Path(argument).suffix.lower() in VIDEO_SUFFIXES:
        return Kind.VIDEO
    if is_uri(argument):
        return Kind.URI
    return Kind.FOLDER if _is_folder(Path(argument)) else Kind.PHOTO


def is_video_source(argument: str) -> bool:
    """A camera index (`0`), a stream URL, or a file with a video suffix."""
    return classify(argument) in VIDEO_KINDS


def is_live(argument: str) -> bool:
    """A camera or a stream (a URL that does not name a video file): frames arrive in real time, so the
    reader keeps only the newest one instead of queueing them."""
    return classify(argument) in (Kind.STREAM, Kind.CAMERA)


def is_uri(path: str) -> bool:
    return len(urlparse(path).scheme) > 1  # not a Windows drive letter


@dataclass(frozen=True)
class Inputs:
    """What an engine reads: the arguments as given, with how to read them."""

    arguments: tuple[str, ...] = ()
    manifest: str | None = None  # a CSV/Parquet file with a `path` column, or one path per line
    recursive: bool = False  # folders: look into sub-folders
    # Videos: which frames are read (every Nth, at most this many per second, for this many seconds).
    every: int = 1
    fps: float | None = None
    duration: float | None = None

    @property
    def kinds(self) -> frozenset[Kind]:
        return frozenset(map(classify, self.arguments)) | ({Kind.MANIFEST} if self.manifest else set())


def collect_files(paths: list[Path], recursive: bool) -> tuple[list[Path], dict[str, int]]:
    """The inputs to read, in order, and counts of what was passed over on purpose.

    Each path given is read as it is, except a folder, whose entries are taken sorted by name: every
    entry named like an image that is not a folder is tried (a FIFO, a socket, a broken link, a corrupt
    file: each gets its error record); hidden entries (`.name`) and files not named like an image
    (`notes.txt`, `clip.mp4`) are passed over and counted; sub-folders are searched with `recursive` (each
    folder once, links to folders included), else passed over and counted, except one named like an image
    (`x.jpg/`), which is reported."""
    files: list[Path] = []
    skipped = {"hidden": 0, "non-image files": 0, "sub-folders": 0}
    seen_folders: set[tuple[int, int]] = set()

    def scan(folder: Path) -> None:
        try:
            identity = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda entry: os.fsencode(entry.name))
        except OSError:
            files.append(folder)  # the reader says why it cannot be read (permission denied, ...)
            return
        seen_folders.add((identity.st_dev, identity.st_ino))
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                skipped["hidden"] += 1
            elif not _is_folder(entry):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(path)
                else:
                    skipped["non-image files"] += 1
            elif recursive:
                try:
                    info = path.stat()
                except OSError:  # gone, or no longer searchable, since it was listed
                    files.append(path)
                    continue
                if (info.st_dev, info.st_ino) not in seen_folders:  # a link back up would loop forever
                    scan(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
            else:
                skipped["sub-folders"] += 1

    for path in paths:
        if str(path) != STDIN and _is_folder(path):
            scan(path)
        else:
            files.append(path)  # the reader reports a missing or unreadable file, in order
    return files, skipped


def _is_folder(entry: os.DirEntry | Path) -> bool:
    """Follows links; a link loop, a dangling link, a path in a folder that may not be searched or a
    name longer than the file system allows is not a folder: the reader gives it its error record."""
    try:
        return entry.is_dir()
    except (OSError, ValueError):
        return False



def local_photos(inputs: Inputs) -> tuple[list[Path], list[str], dict[str, int]]:
    """The photos of local arguments, in order: (what the predictor reads, each one's name in its
    record, what was passed over). `-` is standard input, read here once, so the photo can be read
    again to be annotated."""
    from facescope.faces.intake import display_name

    files, skipped = collect_files([Path(p) for p in inputs.arguments], inputs.recursive)
    sources = [sys.stdin.buffer.read() if str(f) == STDIN else f for f in files]
    names = [STDIN_NAME if str(f) == STDIN else display_name(f) for f in files]
    return sources, names, skipped


def list_inputs(paths=(), manifest: str | None = None, recursive: bool = False) -> list[str]:
    """The files to read, named as the local engine names them: local folders are listed by the same
    `collect_files`; a URI folder (s3://bucket/photos/) by its pyarrow filesystem; a manifest is a CSV
    or Parquet file with a `path` column, or a text file with one path per line."""
    names: list[str] = []
    for path in paths:
        if not is_uri(path):
            names += [str(p) for p in collect_files([Path(path)], recursive)[0]]
            continue
        filesystem, inner = filesystem_of(path)
        from pyarrow import fs

        if filesystem.get_file_info(inner).type == fs.FileType.Directory:
            found = filesystem.get_file_info(fs.FileSelector(inner, recursive=recursive))
            scheme = urlparse(path).scheme
            names += sorted(f"{scheme}://{f.path}" for f in found
                            if f.type == fs.FileType.File and not f.base_name.startswith("."))
        else:
            names.append(path)
    if manifest is not None:
        names += read_manifest(manifest)
    return names


def read_manifest(manifest: str) -> list[str]:
    filesystem, inner = filesystem_of(manifest)
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


def filesystem_of(path: str):
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    from pyarrow import fs

    if not is_uri(path):
        return fs.LocalFileSystem(), str(Path(path).resolve())
    return fs.FileSystem.from_uri(path)


def read_input(name: str):
    """What the predictor reads for `name`: the path itself when local (so reading, and every error
    message, is the local engine's), else the file's bytes through its pyarrow filesystem."""
    if not is_uri(name):
        return name
    from facescope.faces import ImageReadError

    try:
        filesystem, inner = filesystem_of(name)
        with filesystem.open_input_file(inner) as file:
            return file.read()
    except (OSError, ValueError) as error:
        raise ImageReadError(f"{name}: cannot be read ({error})") from None


def open_video(argument: str) -> int | str:
    """What the video decoder opens for `argument`: a camera's index, or the file or URL. A local file
    must be a regular file (a FIFO or a device named .mp4 would block the decoder): else ImageReadError,
    before anything is opened."""
    if classify(argument) is Kind.CAMERA:
        return int(argument)
    if urlparse(argument).scheme.lower() not in STREAM_SCHEMES:
        from facescope.faces.intake import check_regular_file

        check_regular_file(Path(argument))
    return argument
