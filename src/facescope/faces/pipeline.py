"""The one face pipeline: an image (a photo, a video frame, a data set's crop) in, aligned faces out.

Prediction, the server, evaluation, training crops and batch engines all call `find_faces`, so a model
is trained and scored on exactly the crops it is given at prediction time. Which face a data set's
labels belong to is a `rule`; a photo where that face is not found gives no face (the caller counts it
as missed), never a silent substitute such as the whole image resized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facescope.faces.align import CANONICAL, Framing, align_face
from facescope.faces.detect import DetectedFace, FaceDetector

# "all": every face, largest first (prediction); "largest"; "centre": the face whose box centre is
# nearest the image's centre (data sets that label the centred person: FairFace, LFW);
# "aligned": the image is already a crop in facescope's canonical framing (UTKFace crops, the 48x48 CSV,
# `predict --aligned`): one face, no detection.
FACE_RULES = ("all", "largest", "centre", "aligned")


@dataclass(frozen=True)
class AlignedFace:
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # 5 x 2, in the image's pixels
    crop: np.ndarray  # size x size x 3 uint8 RGB, in the requested framing


def find_faces(image: np.ndarray, size: int, framing: Framing = CANONICAL, rule: str = "all",
               detector: FaceDetector | None = None, box: tuple[float, float, float, float] | None = None,
               max_faces: int | None = None, **detection) -> tuple[list[AlignedFace], int]:
    """(faces, how many were found): the faces of an RGB uint8 image chosen by `rule` (or the detected face
    that overlaps `box` most), at most `max_faces`, aligned to `framing` at size x size px. `detection`:
    FaceDetector.detect's per-call options (max_side, score_threshold, min_face_size)."""
    if rule not in FACE_RULES:
        raise ValueError(f"unknown face rule {rule!r}; known: {FACE_RULES}")
    height, width = image.shape[:2]
    if rule == "aligned" and box is None:
        landmarks = CANONICAL.landmarks_in(width, height)
        return [AlignedFace((0.0, 0.0, float(width), float(height)), 1.0, landmarks,
                            align_face(image, landmarks, size, framing))], 1
    if detector is None:
        raise ValueError(f"face rule {rule!r} needs a detector")
    faces = detector.detect(image, **detection)
    found = len(faces)
    if box is not None:
        faces = _best_overlap(faces, box)
    elif rule == "largest":
        faces = faces[:1]
    elif rule == "centre":
        faces = sorted(faces, key=lambda f: _centre_distance(f, width, height))[:1]
    if max_faces is not None:
        faces = faces[:max_faces]
    return [AlignedFace(f.box, f.score, f.landmarks, align_face(image, f.landmarks, size, framing)) for f in faces], found


def _centre_distance(face: DetectedFace, width: int, height: int) -> float:
    x1, y1, x2, y2 = face.box
    return float(np.hypot((x1 + x2 - width) / 2, (y1 + y2 - height) / 2))


def _best_overlap(faces: list[DetectedFace], box: tuple[float, float, float, float]) -> list[DetectedFace]:
    """The face whose box overlaps `box` most (intersection over union at least 0.3), or none."""
    def iou(face: DetectedFace) -> float:
        x1, y1 = max(face.box[0], box[0]), max(face.box[1], box[1])
        x2, y2 = min(face.box[2], box[2]), min(face.box[3], box[3])
        inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        union = face.area + (box[2] - box[0]) * (box[3] - box[1]) - inter
        return inter / union if union > 0 else 0.0

    scored = [(iou(f), f) for f in faces]
    best = max(scored, key=lambda s: s[0], default=(0.0, None))
    return [best[1]] if best[0] >= 0.3 else []
