"""Seconds per training step (forward, loss, backward, AdamW step) in each memory layout, through the
training loop's own `training_step`.

    .venv/bin/python benchmarks/train_step.py --size 160 --batch 64

Random images and labels (the timing does not depend on the pixels), random-initialised network (no
weights needed). The median of --steps timed steps after --warmup untimed ones, per layout; run it on
an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from facescope import labels
from facescope.data.records import FaceRecord
from facescope.heads import standard_heads
from facescope.model.network import BACKBONES, MultiTaskNet
from facescope.training.config import TrainConfig
from facescope.training.train import Targets, training_step

LAYOUTS = {"channels-first (NCHW)": torch.contiguous_format, "channels-last (NHWC)": torch.channels_last}


def step_seconds(backbone: str, size: int, batch: int, layout: torch.memory_format, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = MultiTaskNet(backbone, standard_heads("utkface5"), pretrained=False).train().to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = (torch.rand(batch, 3, size, size) * 255).contiguous(memory_format=layout)
    generator = torch.Generator().manual_seed(0)
    records = [FaceRecord(f"{n}.jpg", float(torch.randint(0, labels.MAX_AGE + 1, (1,), generator=generator)), None,
                          labels.GENDERS[n % 2], labels.UTKFACE5.labels[n % 5], "utkface5", f"{n}.jpg")
               for n in range(batch)]
    targets = Targets.from_records(records, model.outputs)
    config = TrainConfig()
    times = []
    for index in range(warmup + steps):
        started = time.perf_counter()
        training_step(model, optimizer, images, targets, config)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenet_v2", choices=sorted(BACKBONES))
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.backbone}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads")
    results = {name: step_seconds(args.backbone, args.size, args.batch, layout, args.steps, args.warmup)
               for name, layout in LAYOUTS.items()}
    for name, seconds in results.items():
        print(f"{name:<24}{seconds:>7.2f} s/step")
    first, last = results.values()
    print(f"channels-last speed-up: {first / last:.2f}x")


if __name__ == "__main__":
    main()
