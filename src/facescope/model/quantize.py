"""Post-training int8 quantization of an exported graph, with onnxruntime's own static quantizer.

The convolutions are quantized with what lies between them (weights per output channel, activations
per tensor, ranges from calibration crops); the small dense heads and the softmaxes stay float, so the
probabilities keep their precision. The result is still a plain ONNX graph with standard QLinearConv ops: the bundle
contract is unchanged and `load_bundle` checks it like any other. On this project's CPU the FaceRes
network runs 3.3x as fast this way at 192 px (aligned crops/s in benchmarks/speed.py, float against int8
bundle); what it costs in accuracy is measured
by benchmarks/accuracy.py on the quantized bundle itself, which is the one that ships.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from facescope.bundles.contract import ModelInput

CALIBRATION_BATCH = 32
# The convolutions and what lies between them (ReLU6 clips, padding), so activations stay int8 from one
# convolution to the next; the dense heads and the softmax stay float.
QUANTIZED_OPS = ["Conv", "Clip", "Pad"]
# Activation ranges: the 99.99th percentile of each tensor's values over the calibration crops, not its
# min and max: a few outliers stretch a min-max range and coarsen every other value's step (docs/lab-notes.md
# records the probe that chose it; the shipped bundle's own figures come from benchmarks/accuracy.py).
CALIBRATION_PERCENTILE = 99.99


def quantize_graph(float_graph: Path, int8_graph: Path, calibration_crops: np.ndarray, model_input: ModelInput) -> dict:
    """Write an int8 copy of `float_graph`, its activation ranges calibrated on `calibration_crops`
    (N x S x S x 3 uint8 RGB, prepared as `model_input` says); returns how, for the bundle's model.json."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    if len(calibration_crops) == 0:
        raise ValueError("int8 quantization needs calibration crops, got none")

    class Crops(CalibrationDataReader):
        """The crops in batches, one range of batches at a time: onnxruntime's histogram calibrators hold
        every activation of what they are given at once (docs/lab-notes.md has the memory either way), and
        merge their histograms across calls, so they get one batch a call ("CalibStridedMinMax" below)."""

        def __init__(self) -> None:
            self.starts = list(range(0, len(calibration_crops), CALIBRATION_BATCH))
            self.pending = iter(self.starts)

        def __len__(self) -> int:
            return len(self.starts)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.pending = iter(self.starts[start_index:end_index])

        def get_next(self) -> dict | None:
            start = next(self.pending, None)
            if start is None:
                return None
            return {model_input.name: model_input.prepare(calibration_crops[start:start + CALIBRATION_BATCH])}

    with tempfile.TemporaryDirectory() as scratch:
        # Shape inference and graph clean-up first, as onnxruntime recommends before quantizing.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_graph), str(prepared))
        quantize_static(
            str(prepared), str(int8_graph), Crops(), quant_format=QuantFormat.QOperator,
            op_types_to_quantize=QUANTIZED_OPS, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": CALIBRATION_PERCENTILE, "CalibStridedMinMax": 1},
        )
    return {
        "weights": "int8",
        "method": "onnxruntime static quantization (QOperator): convolutions (with their ReLU6 and padding) int8, weights per channel; "
                  "dense heads and softmax float32",
        "calibration": f"{CALIBRATION_PERCENTILE}th percentile of each activation",
        "calibration_crops": int(len(calibration_crops)),
    }
