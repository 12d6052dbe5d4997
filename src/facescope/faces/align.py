"""Face alignment: a 5-point similarity transform onto a model's framing.

A `Framing` says where the 5 landmarks (eyes, nose tip, mouth corners) sit in a square reference crop:
the face crop a model was trained on. A bundle declares its framing, and training crops and photos at
prediction time both go through `align_face` with it, so the model sees the same framing in both.

facescope's canonical framing (`CANONICAL`) is UTKFace's own "aligned & cropped" one: in a 200x200
reference square the eyes sit at (58, 58.5) and (138, 58.5), the nose tip at (98, 105) and the mouth
corners at (62, 134) and (134, 134) (RetinaFace landmarks averaged over 600 UTKFace crops, made
left-right symmetric). That leaves about a quarter of the width as margin beside each eye and shows the
whole head with a little hair and neck.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Framing:
    """The 5 landmarks' places (x, y) in a `reference_size` px square crop."""

    landmarks: tuple[tuple[float, float], ...]
    reference_size: int = 200

    @property
    def points(self) -> np.ndarray:
        return np.array(self.landmarks, dtype=np.float64)

    def zoomed(self, factor: float) -> "Framing":
        """The same framing with the face `factor` times larger about the crop's centre (tighter crop)."""
        centre = self.reference_size / 2
        return Framing(tuple(tuple(float(centre + (v - centre) * factor) for v in p) for p in self.landmarks),
                       self.reference_size)

    def landmarks_in(self, width: int, height: int) -> np.ndarray:
        """Where the landmarks sit in an image that is already a crop in this framing, at width x height."""
        return self.points * np.array([width, height]) / self.reference_size

    def to_json(self) -> dict:
        return {"reference_size": self.reference_size, "landmarks": [list(p) for p in self.landmarks]}

    @classmethod
    def from_json(cls, values: dict) -> "Framing":
        points = np.asarray(values["landmarks"], dtype=np.float64)
        if points.shape != (5, 2):
            raise ValueError(f"a framing has 5 (x, y) landmarks, not {points.shape}")
        return cls(tuple(tuple(float(v) for v in p) for p in points), int(values["reference_size"]))


CANONICAL = Framing(((58.0, 58.5), (138.0, 58.5), (98.0, 105.0), (62.0, 134.0), (134.0, 134.0)))


def alignment_matrix(landmarks: np.ndarray, framing: Framing = CANONICAL) -> np.ndarray:
    """The 2x3 similarity transform taking 5 landmarks onto the framing's reference square."""
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, dtype=np.float32), framing.points.astype(np.float32), method=cv2.LMEDS
    )
    if matrix is None:
        raise ValueError("landmarks are degenerate; no similarity transform fits them")
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int, framing: Framing = CANONICAL) -> np.ndarray:
    """The size x size crop, in `framing`, of the face whose 5 landmarks are given (RGB uint8 in and out).

    The warp is done at the reference size (or `size`, if larger) and then area-resized: warping straight
    to a small size would alias (warpAffine only interpolates, it does not average).
    """
    warp_size = max(size, framing.reference_size)
    matrix = alignment_matrix(landmarks, framing) * (warp_size / framing.reference_size)
    crop = cv2.warpAffine(image, matrix, (warp_size, warp_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return resize_crop(crop, size)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """An image at size x size px, area-resized (for shrinking, the one that averages)."""
    if crop.shape[:2] == (size, size):
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
