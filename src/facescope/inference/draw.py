"""Drawing predictions onto a photo: a numbered box per face and a short label, legible in a crowd.

Used by the API (`/api/v1/predict?annotate=true`), by `facescope predict --annotate` (both through
`ImageResult.draw`) and by the annotated video; the numbers match the order of `faces` in the result
(face 1 is the first, the largest). A face's label is its estimates in a few words, whatever outputs its
model has (`FaceResult.short_label`).

Each label goes where it covers no other label and no face: above its box, below it, or (last) just
inside its own box's top edge. When some label has no such place (a crowd), every box gets only its
number, and the labels are listed in a legend strip below the photo, in the boxes' colours. Sizes follow
the photo, so labels stay legible on large photos and do not swamp small ones.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:  # results draw themselves through this module: it needs their type for annotations only
    from facescope.inference.results import FaceResult

# Okabe-Ito colours: told apart by colour-blind readers too.
BOX_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
LEGEND_BACKGROUND = (32, 32, 32)

Rect = tuple[float, float, float, float]


def _text_colour(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 110 else "white"


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _tag_size(draw: ImageDraw.ImageDraw, text: str, font, pad: int) -> tuple[int, int, int, int]:
    """(width, height, left, top) of `text` on a tag with `pad` pixels around it."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left + 2 * pad, bottom - top + 2 * pad, left, top


def _draw_tag(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, colour: str, font, pad: int) -> None:
    width, height, left, top = _tag_size(draw, text, font, pad)
    draw.rectangle((x, y, x + width, y + height), fill=colour)
    draw.text((x + pad - left, y + pad - top), text, fill=_text_colour(colour), font=font)


def _place_labels(draw, faces: list[FaceResult], texts: list[str], font, pad: int, size: tuple[int, int]):
    """A top-left corner for each label clear of the other labels and faces, or None if some has none."""
    width, height = size
    boxes = [tuple(face.box) for face in faces]
    placed: list[Rect] = []
    for index, ((x1, y1, x2, y2), text) in enumerate(zip(boxes, texts)):
        label_width, label_height, _, _ = _tag_size(draw, text, font, pad)
        others = [box for other, box in enumerate(boxes) if other != index]
        candidates = [(x1, y1 - label_height), (x1, y2), (x2 - label_width, y1 - label_height),
                      (x2 - label_width, y2), (x1, y1)]  # the last: inside its own box, over the forehead
        for x, y in candidates:
            rect = (x, y, x + label_width, y + label_height)
            inside = 0 <= x and 0 <= y and rect[2] <= width and rect[3] <= height
            if inside and not any(_overlaps(rect, r) for r in placed + others):
                placed.append(rect)
                break
        else:
            return None
    return placed


def annotate_photo(source, faces: list[FaceResult], max_side: int | None = None) -> Image.Image:
    """The photo `source` (anything facescope.faces.read_photo takes) read again and annotated with
    `faces` (boxes in the photo's own pixels). With `max_side`, drawn on a copy at most that many pixels
    on its longer side, the boxes scaled to it: the canvas then costs at most 3 x max_side² bytes,
    however large the photo (the server's bound on annotation memory)."""
    from facescope.faces import read_photo

    photo = read_photo(source, max_side=max_side)
    to_canvas_x, to_canvas_y = (1 / factor for factor in photo.scale)
    if (to_canvas_x, to_canvas_y) != (1, 1):
        faces = [face.model_copy(update={"box": [face.box[0] * to_canvas_x, face.box[1] * to_canvas_y,
                                                 face.box[2] * to_canvas_x, face.box[3] * to_canvas_y]})
                 for face in faces]
    return annotate_image(photo.pixels, faces)


def annotate_image(rgb_array: np.ndarray, faces: list[FaceResult], legend: bool = True,
                   numbers: list[int] | None = None) -> Image.Image:
    """A copy of an HxWx3 uint8 RGB photo with face i's box, its number i and its short label drawn.

    When the labels would collide, the boxes carry their numbers only and the labels go to a legend
    strip added below the photo (so the image grows); `legend=False` keeps the photo's size (frames of a
    video) and leaves the numbers only. `numbers` replaces 1, 2, ... (a video passes track ids, so a
    person keeps number and colour from frame to frame).
    """
    numbers = numbers or list(range(1, len(faces) + 1))
    image = Image.fromarray(rgb_array, "RGB")
    draw = ImageDraw.Draw(image)
    short_side = min(image.size)
    line_width = max(2, round(short_side / 250))
    font = ImageFont.load_default(size=max(11, round(short_side / 35)))
    pad = max(2, line_width)
    texts = [f"{number}: {face.short_label()}" for number, face in zip(numbers, faces)]
    colours = [BOX_COLOURS[(number - 1) % len(BOX_COLOURS)] for number in numbers]
    for face, colour in zip(faces, colours):
        draw.rectangle(tuple(face.box), outline=colour, width=line_width)

    places = _place_labels(draw, faces, texts, font, pad, image.size)
    if places is not None:
        for (x, y, _, _), text, colour in zip(places, texts, colours):
            _draw_tag(draw, x, y, text, colour, font, pad)
        return image

    # A crowd: numbers on the boxes, sized to the smallest box so they stay inside it.
    smallest = min(min(face.box[2] - face.box[0], face.box[3] - face.box[1]) for face in faces)
    number_font = ImageFont.load_default(size=max(10, min(font.size, round(smallest / 4))))
    for number, face, colour in zip(numbers, faces, colours):
        _draw_tag(draw, face.box[0] + line_width, face.box[1] + line_width, str(number), colour, number_font, pad)
    if not legend:
        return image
    return _with_legend(image, texts, colours, font, pad)


def _with_legend(image: Image.Image, texts: list[str], colours: list[str], font, pad: int) -> Image.Image:
    """The photo with a strip below it listing the labels in columns, each on its box's colour."""
    measure = ImageDraw.Draw(image)
    cell_width = max(_tag_size(measure, text, font, pad)[0] for text in texts) + 2 * pad
    if cell_width > image.width:  # a narrow photo: a smaller font, so the longest label fits its width
        font = ImageFont.load_default(size=max(8, math.floor(font.size * image.width / cell_width)))
        cell_width = max(_tag_size(measure, text, font, pad)[0] for text in texts) + 2 * pad
    cell_height = max(_tag_size(measure, text, font, pad)[1] for text in texts) + pad
    columns = max(1, min(len(texts), image.width // cell_width))
    rows = math.ceil(len(texts) / columns)
    strip = Image.new("RGB", (image.width, rows * cell_height + 2 * pad), LEGEND_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for index, (text, colour) in enumerate(zip(texts, colours)):
        # Column-major, so the numbers read downwards like a list.
        column, row = divmod(index, rows)
        _draw_tag(draw, pad + column * cell_width, pad + row * cell_height, text, colour, font, pad)
    combined = Image.new("RGB", (image.width, image.height + strip.height))
    combined.paste(image, (0, 0))
    combined.paste(strip, (0, image.height))
    return combined
