"""Reading images as a real photo collection delivers them: any mode, any orientation, some broken,
some hostile.

`read_photo` takes whatever people have (a path, bytes, a binary file object, a PIL image, a numpy array)
and returns a `Photo`: an upright 8-bit RGB array at most `max_side` pixels on its longer side, with the
photo's own size beside it. Anything it cannot read raises `ImageReadError`, whose message says what is
wrong with that one input; callers report it and go on with the next. A wrong *type* of argument is a
programming error and raises `TypeError` instead.

Bounded work per photo, whatever the bytes:
- a path is opened without blocking and read only when it is a regular file (a named pipe, a socket or a
  device is an error, never a hang);
- the pixel count is read from the header and checked against `MAX_PIXELS` before any pixel is decoded;
- a JPEG larger than `max_side` is decoded reduced (DCT scaling, Pillow's draft mode); other formats are
  decoded in their own mode and shrunk at once, so the full-size RGB copy is never made.
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The one pixel limit. 120 megapixels is above the largest photo a shipping camera takes (about 100 MP,
# medium format); more is treated as a decompression bomb (a small file that expands to gigabytes).
MAX_PIXELS = 120_000_000
# Pillow's own check is set to the same number: it raises at twice the limit, and its warning above the
# limit is silenced because `read_photo` refuses those photos itself, right after reading the header.
# (Turning the warning into an error per call would need warnings.catch_warnings, which is not thread-safe.)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Pillow warns about a damaged file ("Corrupt EXIF data", "Truncated File Read") without naming it: each
# such warning is shown for every file it concerns (not once per process), prefixed with the file's name
# (the decoding thread's current file; see _naming_warnings).
warnings.filterwarnings("always", category=UserWarning, module=r"PIL\.", append=True)  # the program's own win
_decoding = threading.local()
# Photos are analysed at most this many pixels on the longer side: detection works on a smaller copy
# still, and a face that fills 1/40 of the longer side keeps about 100 px for alignment.
WORKING_SIDE = 4096

Channels = Literal["RGB", "BGR"]
ACCEPTED_TYPES = ("a path (str or pathlib.Path), bytes, bytearray, memoryview, a binary file object, "
                  "a PIL image or a numpy array")
_FILE_KINDS = {
    stat.S_IFDIR: "is a folder, not an image",
    stat.S_IFIFO: "is a named pipe (FIFO), not a regular file",
    stat.S_IFSOCK: "is a socket, not a regular file",
    stat.S_IFCHR: "is a character device, not a regular file",
    stat.S_IFBLK: "is a block device, not a regular file",
}


class PixelBudget:
    """At most `capacity` pixels being decoded at once, across threads; a photo over the capacity counts
    as the whole of it. Decoding costs up to ~7 bytes a pixel (benchmarks/memory_per_photo.py)."""

    def __init__(self, capacity: int):
        self.capacity, self.free = capacity, capacity
        self._condition = threading.Condition()

    @contextmanager
    def take(self, pixels: int):
        pixels = min(max(pixels, 1), self.capacity)
        with self._condition:
            self._condition.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            with self._condition:
                self.free += pixels
                self._condition.notify_all()


# Shared by every decode in the process (the predictor's worker threads, the server's requests): however
# many huge photos arrive together, decoding holds at most one limit-sized photo's worth of memory.
DECODING = PixelBudget(MAX_PIXELS)


class ImageReadError(ValueError):
    """One image could not be read; the message says why."""


@dataclass(frozen=True)
class Photo:
    """An upright RGB photo as analysed, and the size of the photo it came from."""

    pixels: np.ndarray  # H x W x 3 uint8 RGB, at most `max_side` px on the longer side
    width: int  # the upright photo's own size, in its pixels (boxes are reported in these)
    height: int
    frames: int = 1  # for a multi-frame file (GIF, TIFF, WebP): how many it has; the first is used

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from `pixels` coordinates to the photo's own."""
        return self.width / self.pixels.shape[1], self.height / self.pixels.shape[0]


def display_name(path: str | Path) -> str:
    """A file name as it can be printed and put in JSON: bytes that are not UTF-8 become `\\xNN`."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file, bytes or stream into an upright HxWx3 uint8 RGB array, at full size."""
    return read_photo(source, max_pixels=max_pixels, max_side=None).pixels


def read_photo(source, *, name: str | None = None, channels: Channels = "RGB", max_pixels: int = MAX_PIXELS,
               max_side: int | None = WORKING_SIDE) -> Photo:
    """Any accepted input as a `Photo`. Arrays are H x W (grey), H x W x 3 or H x W x 4 (with alpha), in
    `channels` order ("BGR" for OpenCV's arrays), uint8 or float (in [0, 1] when no value is above 1,
    else in [0, 255]); `max_side=None` keeps the full size."""
    if channels not in ("RGB", "BGR"):
        raise ValueError(f'channels must be "RGB" or "BGR", not {channels!r}')
    if isinstance(source, np.ndarray):
        return _shrink(_array_to_rgb(source, channels, name or "array", max_pixels), max_side)
    if isinstance(source, Image.Image):
        return _decode(source, name or "image", max_pixels, max_side)
    if isinstance(source, (str, Path)):
        name = name or display_name(source)
        with _open_regular_file(Path(source), name) as stream:
            return _decode_stream(stream, name, max_pixels, max_side)
    if isinstance(source, memoryview):
        source = _memoryview_bytes(source, name or "upload")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_stream(io.BytesIO(source), name or "upload", max_pixels, max_side)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("a file object must be opened in binary mode ('rb')")
        return _decode_stream(io.BytesIO(data), name or getattr(source, "name", None) or "stream", max_pixels, max_side)
    raise TypeError(f"cannot read an image from {type(source).__name__}: pass {ACCEPTED_TYPES}")


def _memoryview_bytes(view: memoryview, name: str) -> memoryview | bytes:
    """The encoded bytes a memoryview holds: itself when contiguous, else a C-ordered copy (a strided
    view cannot be read in place); a released view is this input's error."""
    try:
        return view if view.contiguous else view.tobytes()
    except ValueError as error:  # "operation forbidden on released memoryview object"
        raise ImageReadError(f"{name}: the memoryview cannot be read ({error})") from None


def check_regular_file(path: Path) -> None:
    """Whether `path` is a regular file that is not empty, without blocking (a FIFO named like a video
    is refused, never opened for reading); ImageReadError saying what it is instead."""
    _open_regular_file(path, display_name(path)).close()


def _open_regular_file(path: Path, name: str) -> BinaryIO:
    """The file opened for reading, or an ImageReadError saying what the path is instead. Opened
    non-blocking, so a named pipe with no writer cannot hang the reader; read only if regular."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except ValueError:  # the one path no file system accepts
        raise ImageReadError(f"{name}: the path contains a NUL byte") from None
    except FileNotFoundError:
        reason = "dangling symbolic link (its target does not exist)" if path.is_symlink() else "no such file"
        raise ImageReadError(f"{name}: {reason}") from None
    except PermissionError:
        raise ImageReadError(f"{name}: permission denied") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ImageReadError(f"{name}: symbolic link loop") from None
        if error.errno == errno.ENAMETOOLONG:
            raise ImageReadError(f"{name}: the name is longer than the file system allows") from None
        try:  # a socket cannot be opened at all (ENXIO): say what it is
            kind = _FILE_KINDS.get(stat.S_IFMT(os.stat(path).st_mode))
        except OSError:
            kind = None
        raise ImageReadError(f"{name}: {kind or f'cannot be opened ({error.strerror})'}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        raise ImageReadError(f"{name}: {_FILE_KINDS.get(stat.S_IFMT(info.st_mode), 'is not a regular file')}")
    if info.st_size == 0:
        os.close(descriptor)
        raise ImageReadError(f"{name}: empty file")
    return os.fdopen(descriptor, "rb")


def _decode_stream(stream: BinaryIO, name: str, max_pixels: int, max_side: int | None) -> Photo:
    if stream.seekable() and stream.seek(0, io.SEEK_END) == 0:
        raise ImageReadError(f"{name}: empty file")
    stream.seek(0)
    try:
        with _naming_warnings(name):
            image = Image.open(stream)
    except Image.DecompressionBombError:
        raise ImageReadError(_too_many_pixels(name, None, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image file") from None
    except Exception as error:  # a decoder fed hostile bytes can raise anything: it is this file's error
        raise ImageReadError(f"{name}: unreadable image header ({type(error).__name__}: {error})") from None
    with image:
        return _decode(image, name, max_pixels, max_side)


def _too_many_pixels(name: str, size: tuple[int, int] | None, max_pixels: int) -> str:
    dimensions = f"{size[0]}x{size[1]} pixels is" if size else "the image has"
    return f"{name}: {dimensions} over the limit of {max_pixels:,} pixels (possible decompression bomb)"


def _decode(image: Image.Image, name: str, max_pixels: int, max_side: int | None) -> Photo:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageReadError(_too_many_pixels(name, (width, height), max_pixels))
    if width == 0 or height == 0:
        raise ImageReadError(f"{name}: the image has no pixels ({width}x{height})")
    with DECODING.take(width * height), _naming_warnings(name):
        return _decode_within_budget(image, name, width, height, max_side)


@contextmanager
def _naming_warnings(name: str):
    """Warnings raised on this thread while decoding name the file (see _show_warning)."""
    previous, _decoding.name = getattr(_decoding, "name", None), name
    try:
        yield
    finally:
        _decoding.name = previous


def _show_warning(message, category, filename, lineno, file=None, line=None):
    name = getattr(_decoding, "name", None)
    if name is not None and not str(message).startswith(f"{name}: "):
        message = category(f"{name}: {message}")
    _show_without_file_name(message, category, filename, lineno, file, line)


# Wraps whatever shows warnings (Python's own, or a hook set before facescope was imported): a thread
# that decodes a photo sets its name, so the warning names it whichever thread raised it.
_show_without_file_name, warnings.showwarning = warnings.showwarning, _show_warning


def _decode_within_budget(image: Image.Image, name: str, width: int, height: int, max_side: int | None) -> Photo:
    try:
        frames = getattr(image, "n_frames", 1)
        rotated = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap the sides
        if max_side and max(width, height) > max_side:
            ratio = max_side / max(width, height)
            # A JPEG is decoded reduced (DCT scaling by 1/2, 1/4 or 1/8, to no less than the target size);
            # other formats ignore this and are decoded whole, in their own mode.
            image.draft(None, (max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio))))
            image.load()
            factor = max(image.size) // max_side
            if factor >= 2 and image.mode in ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "I", "F"):
                image = image.reduce(factor)  # a box filter straight from the decoded pixels: no extra copy
            try:
                image.thumbnail((max_side, max_side))
            except ValueError:  # a mode Pillow cannot resample (16-bit grey): convert first
                image = _to_rgb(image)
                image.thumbnail((max_side, max_side))
        else:
            image.load()
        pixels = np.asarray(_to_rgb(ImageOps.exif_transpose(image)))
    except MemoryError:
        raise ImageReadError(f"{name}: not enough memory to decode it") from None
    except Exception as error:  # as above: a broken or hostile file's own error, whatever the decoder raised
        raise ImageReadError(f"{name}: unreadable or truncated image ({type(error).__name__}: {error})") from None
    if rotated:
        width, height = height, width
    return Photo(pixels, width, height, frames)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit grey: scale the used range to 8 bits instead of clipping it to white.
        grey = np.asarray(image, dtype=np.float64)
        low, high = float(grey.min()), float(grey.max())
        scaled = (grey - low) * (255.0 / (high - low)) if high > low else np.zeros_like(grey)
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as an image viewer shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _array_to_rgb(array: np.ndarray, channels: Channels, name: str, max_pixels: int) -> np.ndarray:
    shape = "x".join(map(str, array.shape))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageReadError(f"{name}: an image array must be H x W (grey), H x W x 3 (RGB or BGR) or "
                             f"H x W x 4 (with alpha), uint8 or float; got shape {shape}")
    if array.size == 0:
        raise ImageReadError(f"{name}: the array has no pixels (shape {shape})")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise ImageReadError(_too_many_pixels(name, (array.shape[1], array.shape[0]), max_pixels))
    array = _to_uint8(array, name)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if channels == "BGR":
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    if array.shape[2] == 4:
        # Transparent pixels become white, as for a file.
        alpha = array[:, :, 3:].astype(np.float32) / 255.0
        array = np.rint(array[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ImageReadError(f"{name}: integer pixel values must be in 0..255 (uint8); got "
                                 f"{array.min()}..{array.max()} in a {array.dtype} array")
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(f"{name}: the float array has NaN or infinite values")
        scale = 255.0 if array.max() <= 1.0 else 1.0  # [0, 1] or [0, 255]
        return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    raise ImageReadError(f"{name}: pixel type {array.dtype} is not an image's; use uint8 or float")


def _shrink(pixels: np.ndarray, max_side: int | None) -> Photo:
    height, width = pixels.shape[:2]
    if max_side and max(height, width) > max_side:
        image = Image.fromarray(pixels, "RGB")
        image.thumbnail((max_side, max_side))
        return Photo(np.asarray(image), width, height)
    return Photo(pixels, width, height)
