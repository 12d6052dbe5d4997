"""A bundle's trained weights read back from its ONNX graph, so a new run can start from an installed model.

The exporter keeps PyTorch's parameter names for the graph's initializers (`network.<parameter>`). A
float graph holds them as they are; an int8 graph (facescope.model.quantize, onnxruntime's QOperator
format) holds each convolution as `<parameter>_quantized` with per-channel `_scale` and `_zero_point`,
and its bias in int32 at the scale input scale x weight scale. Both are turned back into float tensors:
the int8 rounding stays (fine-tuning starts from the weights the bundle actually runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PREFIX = "network."


def _dequantized(weights: dict[str, np.ndarray], graph) -> dict[str, np.ndarray]:
    out = {}
    for node in graph.node:
        if node.op_type != "QLinearConv":
            continue
        x_scale, w, w_scale, w_zero = node.input[1], node.input[3], node.input[4], node.input[5]
        channels = (-1,) + (1,) * (weights[w].ndim - 1)
        name = w.removesuffix("_quantized")
        out[name] = (weights[w].astype(np.float32) - weights[w_zero].reshape(channels)) * weights[w_scale].reshape(channels)
        if len(node.input) > 8 and node.input[8]:
            bias = node.input[8]
            out[bias.removesuffix("_quantized")] = weights[bias].astype(np.float32) * weights[x_scale] * weights[w_scale]
    return out


def read_onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The network's parameters by PyTorch name (without the export wrapper's prefix), as float32."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    params = {k: v for k, v in weights.items() if k.startswith(PREFIX) and v.dtype == np.float32
              and not k.endswith(("_scale", "_zero_point"))}
    params.update(_dequantized(weights, model.graph))
    return {k.removeprefix(PREFIX): v for k, v in params.items()}
