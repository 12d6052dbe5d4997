"""Faces: read an image (intake), find faces and their landmarks (detect), warp each onto a model's
framing (align), the one pipeline from an image to aligned faces (pipeline), a data set's cached crops
(crops), and the detection options declared once (options).

Each name is imported from its module on first use, so the light modules (options) load without
onnxruntime or OpenCV.
"""

import importlib

_HOMES = {
    "CANONICAL": "align", "Framing": "align", "align_face": "align",
    "DetectedFace": "detect", "FaceDetector": "detect",
    "ImageReadError": "intake", "Photo": "intake", "read_image": "intake", "read_photo": "intake",
    "FACE_RULES": "pipeline", "AlignedFace": "pipeline", "find_faces": "pipeline",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
