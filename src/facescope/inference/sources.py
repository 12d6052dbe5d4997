"""Where photos come from: the paths given on a command line or in a manifest, folders listed the one
way every engine lists them (the local engine and the Ray engine name and order their files alike).

Light: the standard library only, so `facescope predict -h` and the Ray driver import it freely.
"""

from __future__ import annotations

import os
from pathlib import Path

STDIN = "-"
# Suffixes of image files: in a folder, the files read (others are passed over and counted), and the
# folders reported rather than ignored (`album.jpg/`).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".avif", ".jp2"}


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

