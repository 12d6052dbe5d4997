"""Annotated photos: labels beside faces that have room, a numbered legend strip for a crowd."""

from __future__ import annotations

import numpy as np

from facescope.inference.results import AgeEstimate, FaceResult, LabelEstimate
from facescope.inference.draw import BOX_COLOURS, LEGEND_BACKGROUND, annotate_image


def face_at(x1: float, y1: float, size: float) -> FaceResult:
    return FaceResult(
        box=[x1, y1, x1 + size, y1 + size], score=0.99, landmarks=[[0, 0]] * 5,
        age=AgeEstimate(years=34.0, bin="30-39", bin_probs={"30-39": 0.6}),
        gender=LabelEstimate(label="Female", probs={"Female": 0.9, "Male": 0.1}),
        race=LabelEstimate(label="Indian", probs={"Indian": 0.4, "White": 0.3}),
    )


def colour(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_faces_with_room_get_their_labels_beside_them_and_the_photo_keeps_its_size():
    photo = np.full((400, 900, 3), 128, dtype=np.uint8)
    faces = [face_at(100, 120, 160), face_at(550, 120, 160)]
    annotated = np.asarray(annotate_image(photo, faces))
    assert annotated.shape == photo.shape
    # Each label sits above its box: its colour fills the band just above the box's top edge.
    for face, hex_colour in zip(faces, BOX_COLOURS):
        x1, y1 = int(face.box[0]), int(face.box[1])
        band = annotated[y1 - 12:y1 - 2, x1 + 2:x1 + 60].reshape(-1, 3)
        assert (np.abs(band.astype(int) - colour(hex_colour)).sum(axis=1) < 30).mean() > 0.3


def test_a_crowd_gets_numbers_on_the_boxes_and_a_legend_strip():
    photo = np.full((300, 600, 3), 128, dtype=np.uint8)
    # 4 x 8 small faces, 8 px apart: no label has room beside its face.
    faces = [face_at(8 + 74 * column, 8 + 74 * row, 66) for row in range(4) for column in range(8)][:20]
    annotated = annotate_image(photo, faces)
    assert annotated.width == 600 and annotated.height > 300
    strip = np.asarray(annotated)[300:]
    assert (strip.reshape(-1, 3) == LEGEND_BACKGROUND).all(axis=1).mean() > 0.2
    for hex_colour in BOX_COLOURS:  # every box colour appears in the legend, on its label
        assert (np.abs(strip.reshape(-1, 3).astype(int) - colour(hex_colour)).sum(axis=1) < 10).any()
    # A video frame keeps its size: numbers only, no strip.
    assert annotate_image(photo, faces, legend=False).size == (600, 300)


def test_a_narrow_photo_legend_fits_its_width():
    photo = np.full((120, 90, 3), 128, dtype=np.uint8)
    faces = [face_at(2, 2, 40), face_at(46, 2, 40), face_at(2, 46, 40), face_at(46, 46, 40)]
    annotated = np.asarray(annotate_image(photo, faces))
    strip = annotated[120:]
    assert strip.shape[1] == 90
    # The labels end before the strip's right edge: its last columns are background only.
    assert (strip[:, -2:].reshape(-1, 3) == LEGEND_BACKGROUND).all()
