"""Inference: the ONNX predictor (no PyTorch) and its typed results."""

from facescope.inference.predictor import Predictor
from facescope.inference.results import AgeEstimate, FaceResult, ImageResult, LabelEstimate

__all__ = ["Predictor", "AgeEstimate", "FaceResult", "ImageResult", "LabelEstimate"]
