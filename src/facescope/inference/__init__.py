"""Inference: the ONNX predictor (no PyTorch) and its typed results.

The predictor is imported on first use, so the results' schema (what the CLI's help and the API's
models need) loads without onnxruntime or OpenCV.
"""

from facescope.inference.results import AgeEstimate, FaceResult, ImageResult, LabelEstimate

__all__ = ["Predictor", "AgeEstimate", "FaceResult", "ImageResult", "LabelEstimate"]


def __getattr__(name: str):
    if name == "Predictor":
        from facescope.inference.predictor import Predictor

        return Predictor
    raise AttributeError(name)
