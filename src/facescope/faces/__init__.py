"""Faces: read an image (intake), find faces and their landmarks (detect), warp each onto a model's
framing (align), the one pipeline from an image to aligned faces (pipeline), and a data set's cached
crops (crops)."""

from facescope.faces.align import CANONICAL, Framing, align_face
from facescope.faces.detect import DetectedFace, FaceDetector
from facescope.faces.intake import ImageReadError, read_image
from facescope.faces.pipeline import FACE_RULES, AlignedFace, find_faces

__all__ = [
    "CANONICAL", "Framing", "align_face", "DetectedFace", "FaceDetector", "ImageReadError", "read_image",
    "FACE_RULES", "AlignedFace", "find_faces",
]
