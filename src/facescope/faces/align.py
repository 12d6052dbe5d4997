"""Face alignment: a 5-point similarity transform onto one canonical crop.

The canonical crop is UTKFace's own "aligned & cropped" framing: in a 200x200 reference square the
eyes sit at (58, 58.5) and (138, 58.5), the nose tip at (98, 105) and the mouth corners at (62, 134) and
(134, 134) (RetinaFace landmarks averaged over 600 UTKFace crops, made left-right symmetric). That
leaves about a quarter of the width as margin beside each eye and shows the whole head with a little
hair and neck. Training crops and photos at prediction time both go through `align_face`, so the model
sees the same framing in both.
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SIZE = 200
TEMPLATE = np.array([[58.0, 58.5], [138.0, 58.5], [98.0, 105.0], [62.0, 134.0], [134.0, 134.0]])


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking 5 landmarks onto the 200 px template."""
    target = TEMPLATE
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, dtype=np.float32), target.astype(np.float32), method=cv2.LMEDS
    )
    if matrix is None:
        raise ValueError("landmarks are degenerate; no similarity transform fits them")
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = REFERENCE_SIZE) -> np.ndarray:
    """The size x size canonical crop of the face whose 5 landmarks are given (RGB uint8 in and out).

    The warp is done at the 200 px reference size and then area-resized: warping straight to a small
    size would alias (warpAffine only interpolates, it does not average).
    """
    crop = cv2.warpAffine(
        image, alignment_matrix(landmarks), (REFERENCE_SIZE, REFERENCE_SIZE),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )
    return resize_crop(crop, size)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """An image already in the canonical framing (an aligned crop, a UTKFace crop) at size x size px."""
    if crop.shape[:2] == (size, size):
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
