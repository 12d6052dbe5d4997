"""Batch augmentation on CPU tensors: mirror, scale and shift (with a small rotation), colour, grey,
blur, low resolution and occlusion: what real photos do to a face that aligned data set crops do not.

Done on the whole batch with one affine warp instead of per image in worker processes: on a 2-core
machine that keeps both cores on the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def augment_batch(images: torch.Tensor, generator: torch.Generator, scale: float = 0.1, shift: float = 0.06,
                  rotate_degrees: float = 10.0, blur_probability: float = 0.15, low_resolution_probability: float = 0.15,
                  occlusion_probability: float = 0.2) -> torch.Tensor:
    """Augmented copy of N x 3 x S x S float images in 0..255."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    zoom = uniform(1 - scale, 1 + scale)
    angle = uniform(-rotate_degrees, rotate_degrees) * math.pi / 180
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, uniform(-shift, shift) * 2], 1),
            torch.stack([sin * mirror, cos, uniform(-shift, shift) * 2], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # Colour: brightness, contrast and saturation, each per image.
    brightness = uniform(0.7, 1.3).view(n, 1, 1, 1)
    contrast = uniform(0.7, 1.3).view(n, 1, 1, 1)
    saturation = uniform(0.6, 1.4).view(n, 1, 1, 1)
    out = out * brightness
    grey = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1)
    out = grey + (out - grey) * saturation
    mean = grey.mean(dim=(2, 3), keepdim=True)
    out = mean + (out - mean) * contrast
    # Some photos are grey: a few training images are too.
    to_grey = torch.rand(n, generator=generator) < 0.05
    out[to_grey] = grey[to_grey].expand(-1, 3, -1, -1) if to_grey.any() else out[to_grey]

    blur = torch.rand(n, generator=generator) < blur_probability
    if blur.any():
        out[blur] = TF.gaussian_blur(out[blur], kernel_size=[5, 5], sigma=[1.2, 1.2])

    # Low resolution: a small face in a photo, enlarged by the aligner (2 to 4 times fewer pixels a side).
    low = torch.rand(n, generator=generator) < low_resolution_probability
    if low.any():
        side = images.shape[-1]
        small = max(8, int(side / (2 + 2 * float(torch.rand(1, generator=generator)))))
        out[low] = F.interpolate(F.interpolate(out[low], size=(small, small), mode="area"), size=(side, side),
                                 mode="bilinear", align_corners=False)

    # Occlusion: a hand, a scarf, a microphone; a grey rectangle of 5 to 25% of the crop, anywhere.
    for i in torch.nonzero(torch.rand(n, generator=generator) < occlusion_probability).flatten().tolist():
        side = images.shape[-1]
        height, width = (int(side * float(v)) for v in uniform_pair(generator, 0.2, 0.5))
        top, left = (int(float(torch.rand(1, generator=generator)) * (side - extent)) for extent in (height, width))
        out[i, :, top:top + height, left:left + width] = float(torch.rand(1, generator=generator)) * 255
    return out.clamp(0, 255)


def uniform_pair(generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(2, generator=generator)
