"""Faces: read an image (intake), find faces and their landmarks (detect), warp each onto the
canonical crop (align), and cache a dataset's aligned crops (crops)."""

from facescope.faces.align import REFERENCE_SIZE, TEMPLATE, align_face
from facescope.faces.detect import DetectedFace, FaceDetector
from facescope.faces.intake import ImageReadError, Photo, read_image, read_photo

__all__ = [
    "REFERENCE_SIZE", "TEMPLATE", "align_face", "DetectedFace", "FaceDetector", "ImageReadError", "Photo",
    "read_image", "read_photo",
]
