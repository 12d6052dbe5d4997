"""Reading images as a real photo collection delivers them: any mode, any orientation, some broken.

`read_image` returns an upright 8-bit RGB array or raises `ImageReadError` with a message that says
what is wrong with that one file; callers report it and go on with the next.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A 12,000 x 12,000 photo is far beyond any camera's; more pixels than this is treated as a
# decompression bomb (a small file that would expand to gigabytes in memory).
MAX_PIXELS = 144_000_000


class ImageReadError(ValueError):
    """One image could not be read; the message says why."""


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale the used range to 8 bits instead of clipping it to white.
        grey = np.asarray(image, dtype=np.float64)
        low, high = float(grey.min()), float(grey.max())
        scaled = (grey - low) * (255.0 / (high - low)) if high > low else np.zeros_like(grey)
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels become white, as an image viewer shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def read_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file, bytes or stream into an upright HxWx3 uint8 RGB array."""
    name = str(source) if isinstance(source, (str, Path)) else "upload"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{name}: {width}x{height} pixels is over the limit of {max_pixels:,} "
                        "(possible decompression bomb)"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                return np.asarray(_to_rgb(image))
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{name}: is a folder, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{name}: too many pixels (possible decompression bomb)") from None
    except UnidentifiedImageError:
        empty = isinstance(source, (str, Path)) and Path(source).stat().st_size == 0
        raise ImageReadError(f"{name}: {'empty file' if empty else 'not an image file'}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{name}: unreadable or truncated image ({error})") from None
