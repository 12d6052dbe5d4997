"""A corpus of odd, broken and hostile inputs, written into a folder, each with the one outcome facescope
must give it (tests/test_bad_inputs.py checks them through the CLI, the Python API and the server).

    from tests.bad_inputs import named_cases, write_corpus
    cases = write_corpus(folder, face_photo)   # face_photo: a real face crop (a UTKFace file)
    named = named_cases(folder)                # paths given by name that no folder scan meets
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str  # the entry's name in the folder (str; surrogate-escaped where it is not UTF-8)
    outcome: str  # "face": at least one face; "no face": read, no face; "error": one error record
    reason: str = ""  # for "error": words the error message must contain
    frames: int | None = None  # for a multi-frame file: how many the result must report
    regular: bool = True  # a regular file: the server can be sent its bytes


def png_bomb(side: int) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: a few kB per 10,000 px of side, side² pixels decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def corrupt_exif(image: Image.Image) -> bytes:
    """A JPEG whose EXIF block points past its end: Pillow reads the pixels and warns "Corrupt EXIF data"."""
    exif = image.getexif()
    exif[0x010F] = "maker"
    data = bytearray(_encode(image, "JPEG", exif=exif.tobytes()))
    at = data.find(b"Exif")
    data[at + 10:at + 14] = b"\xff\xff\xff\xff"
    return bytes(data)


def named_cases(folder: Path) -> list[tuple[str, Case]]:
    """(path, case) for paths given by name, on the command line or to the API, after write_corpus(folder):
    each is one error record, and the other inputs are read."""
    return [
        (str(folder / ("x" * 300 + ".jpg")), Case("x" * 300 + ".jpg", "error", "longer than the file system allows",
                                                  regular=False)),
        (str(folder / "good.jpg" / "inside.jpg"), Case("good.jpg/inside.jpg", "error", "Not a directory", regular=False)),
        (str(folder / "missing.jpg"), Case("missing.jpg", "error", "no such file", regular=False)),
    ]


def write_corpus(folder: Path, face_photo: Path) -> list[Case]:
    """Writes every case into `folder` (which must exist) and returns them, sorted by name as bytes."""
    face = face_photo.read_bytes()
    face_image = Image.open(io.BytesIO(face)).convert("RGB")
    files: dict[str, tuple[bytes, Case]] = {
        "good.jpg": (face, Case("good.jpg", "face")),
        "empty.jpg": (b"", Case("empty.jpg", "error", "empty file")),
        "notes.jpg": (b"not a photo at all\n", Case("notes.jpg", "error", "not an image")),
        "truncated.jpg": (face[: len(face) // 3], Case("truncated.jpg", "error", "truncated")),
        "header-only.png": (_encode(face_image, "PNG")[:60], Case("header-only.png", "error", "")),
        "=HYPERLINK(\"http---x\").jpg": (b"=1+1", Case("=HYPERLINK(\"http---x\").jpg", "error", "not an image")),
        "wide-800x1.png": (_encode(Image.new("RGB", (800, 1), (90, 90, 90)), "PNG"), Case("wide-800x1.png", "no face")),
        "wide-1279x1.png": (_encode(Image.new("RGB", (1279, 1)), "PNG"), Case("wide-1279x1.png", "no face")),
        "wide-4000x5.png": (_encode(Image.new("RGB", (4000, 5)), "PNG"), Case("wide-4000x5.png", "no face")),
        "wide-65535x1.png": (_encode(Image.new("L", (65535, 1)), "PNG"), Case("wide-65535x1.png", "no face")),
        "tall-1x4000.png": (_encode(Image.new("RGB", (1, 4000)), "PNG"), Case("tall-1x4000.png", "no face")),
        "one-pixel.png": (_encode(Image.new("RGB", (1, 1)), "PNG"), Case("one-pixel.png", "no face")),
        "bomb-144mp.png": (png_bomb(12_000), Case("bomb-144mp.png", "error", "over the limit")),
        "bomb-400mp.png": (png_bomb(20_000), Case("bomb-400mp.png", "error", "over the limit")),
        "large-36mp.png": (png_bomb(6_000), Case("large-36mp.png", "no face")),
        "sixteen-bit.png": (_encode(Image.fromarray(np.full((40, 60), 40_000, np.uint16)), "PNG"),
                            Case("sixteen-bit.png", "no face")),
        "cmyk.jpg": (_encode(face_image.convert("CMYK"), "JPEG"), Case("cmyk.jpg", "face")),
        "transparent.png": (_encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), "PNG"), Case("transparent.png", "no face")),
        "animated.gif": (_encode(face_image, "GIF", save_all=True, append_images=[Image.new("RGB", face_image.size)]),
                         Case("animated.gif", "face", frames=2)),
        "pages.tiff": (_encode(face_image, "TIFF", save_all=True, append_images=[face_image.rotate(90)]),
                       Case("pages.tiff", "face", frames=2)),
        "face.png.jpg": (_encode(face_image, "PNG"), Case("face.png.jpg", "face")),  # a PNG named .jpg
        "corrupt-exif.jpg": (corrupt_exif(face_image), Case("corrupt-exif.jpg", "face")),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    cases = [case for _, case in files.values()]
    # A name that is not UTF-8 (a Latin-1 "é"), holding a good photo.
    latin1 = os.fsdecode(b"caf\xe9.jpg")
    (folder / latin1).write_bytes(face)
    cases.append(Case(latin1, "face"))
    # Entries that are not regular files: none may block, each is one error record.
    os.mkfifo(folder / "pipe.jpg")
    cases.append(Case("pipe.jpg", "error", "named pipe", regular=False))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "socket.jpg"))
    listener.close()
    cases.append(Case("socket.jpg", "error", "socket", regular=False))
    (folder / "device.jpg").symlink_to("/dev/zero")
    cases.append(Case("device.jpg", "error", "character device", regular=False))
    (folder / "loop-a.jpg").symlink_to("loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to("loop-a.jpg")
    cases += [Case("loop-a.jpg", "error", "symbolic link loop", regular=False),
              Case("loop-b.jpg", "error", "symbolic link loop", regular=False)]
    (folder / "dangling.jpg").symlink_to("no-such-target.jpg")
    cases.append(Case("dangling.jpg", "error", "dangling symbolic link", regular=False))
    (folder / "album.jpg").mkdir()
    cases.append(Case("album.jpg", "error", "is a folder", regular=False))
    (folder / "link-to-good.jpg").symlink_to("good.jpg")
    cases.append(Case("link-to-good.jpg", "face"))
    if os.geteuid() != 0:  # root reads any file: an unreadable file needs an ordinary user
        locked = folder / "locked.jpg"
        shutil.copy(face_photo, locked)
        locked.chmod(0)
        cases.append(Case("locked.jpg", "error", "permission denied", regular=False))
    return sorted(cases, key=lambda case: os.fsencode(case.name))
