"""Drawing predictions onto a photo: a numbered box and a short label per face.

Used by the API (`/api/v1/predict?annotate=true`) and by `facescope predict --annotate`; the numbers
match the order of `faces` in the result (face 1 is the first, the largest).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facescope.inference.results import FaceResult

# Okabe-Ito colours: told apart by colour-blind readers too.
BOX_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")


def short_label(face: FaceResult) -> str:
    """`34y Female White`, or the age bin for a model that predicts bins only."""
    age = f"{face.age.years:.0f}y" if face.age.years is not None else face.age.bin
    return f"{age} {face.gender.label} {face.race.label}"


def _text_colour(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 110 else "white"


def annotate_image(rgb_array: np.ndarray, faces: list[FaceResult], numbers: list[int] | None = None) -> Image.Image:
    """A copy of an HxWx3 uint8 RGB photo with face i's box, its number i and its short label drawn.
    `numbers` replaces 1, 2, ... (a video passes track ids, so a person keeps number and colour)."""
    image = Image.fromarray(rgb_array, "RGB")
    draw = ImageDraw.Draw(image)
    short_side = min(image.size)
    # Sizes follow the photo so labels stay legible on large photos and don't swamp small ones.
    line_width = max(2, round(short_side / 250))
    font = ImageFont.load_default(size=max(11, round(short_side / 35)))
    for number, face in zip(numbers or range(1, len(faces) + 1), faces):
        colour = BOX_COLOURS[(number - 1) % len(BOX_COLOURS)]
        x1, y1, x2, y2 = face.box
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line_width)
        text = f"{number}: {short_label(face)}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(2, line_width)
        label_width, label_height = right - left + 2 * pad, bottom - top + 2 * pad
        # Above the box where there is room, else just inside its top edge; never off the right side.
        label_x = max(0.0, min(x1, image.width - label_width))
        label_y = y1 - label_height if y1 >= label_height else y1
        draw.rectangle((label_x, label_y, label_x + label_width, label_y + label_height), fill=colour)
        draw.text((label_x + pad - left, label_y + pad - top), text, fill=_text_colour(colour), font=font)
    return image
