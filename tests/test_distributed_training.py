"""Training in 2 processes (DistributedDataParallel, gloo on CPU) matches one process with the same
global batch: the loop's own `fit` on real crops, and `facescope train` under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facescope.data import load_dataset  # noqa: E402
from facescope.faces.crops import build_crops  # noqa: E402
from facescope.heads import standard_heads  # noqa: E402
from facescope.model.network import MultiTaskNet  # noqa: E402
from facescope.training import distributed  # noqa: E402
from facescope.training.config import TrainConfig  # noqa: E402
from facescope.training.train import Targets, fit, group_weights  # noqa: E402

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_fit(crops: np.ndarray, records: list) -> list[dict]:
    """Three heads-only steps then three whole-network steps, race x gender balanced twice over (the
    sampler draws balanced batches and the loss weighs groups), with dropout off: the figures depend
    only on the data, the seed and the arithmetic."""
    torch.manual_seed(0)
    model = MultiTaskNet("mobilenet_v2", standard_heads("utkface5"), pretrained=False, dropout=0.0)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([{"params": model.parameters(), "lr_scale": 1.0}], lr=1e-3)
    config = TrainConfig(batch_size=16, epochs=2, max_steps_per_epoch=3, frozen_backbone_epochs=1, patience=5)
    targets = Targets.from_records(records, model.outputs)
    weights = group_weights(targets.group)
    state = {"epoch": 0, "step": 0, "best_score": float("inf"), "best_epoch": 0, "history": []}
    val = slice(0, 16)
    for state in fit(distributed.wrap(model), optimizer, state, config, crops, targets, crops[val],
                     Targets.from_records(records[val], model.outputs), np.array(["utkface"] * 16), weights, weights, "cpu"):
        pass
    return state["history"]


def _worker(rank: int, port: int, crops: np.ndarray, records: list, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    with distributed.session():
        history = run_fit(crops, records)
    if rank == 0:
        with open(out, "w") as file:
            json.dump(history, file)


@pytest.fixture(scope="module")
def real_subset(utkface_dir, tmp_path_factory):
    records = load_dataset(utkface_dir).records[::300][:48]
    crops = build_crops(records, 64, cache_dir=tmp_path_factory.mktemp("crops"), workers=1).images
    return records, np.asarray(crops)


def test_two_processes_match_one_with_the_same_global_batch(real_subset, tmp_path):
    records, crops = real_subset
    single = run_fit(crops, records)
    out = tmp_path / "history.json"
    torch.multiprocessing.spawn(_worker, args=(_free_port(), crops, records, str(out)), nprocs=2)
    double = json.loads(out.read_text())
    for one, two in zip(single, double, strict=True):
        # Heads first (frozen backbone: batch norm on running statistics): the same up to float noise.
        # Then the backbone trains, and batch norm (no SyncBatchNorm on CPU) normalises each process's
        # half batch: close, not equal.
        tolerance = 1e-4 if one["epoch"] == 1 else 0.1
        for key in ("train_loss", "val_loss"):
            assert two[key] == pytest.approx(one[key], rel=tolerance), (one["epoch"], key)


def test_torchrun_facescope_train_matches_and_only_rank_0_writes(utkface_dir, tmp_path):
    cache = tmp_path / "cache"
    config = tmp_path / "config.yaml"
    config.write_text(f"data: {utkface_dir}\ninput_size: 64\nepochs: 1\nbatch_size: 16\nmax_images: 64\n"
                      "max_steps_per_epoch: 2\nfrozen_backbone_epochs: 1\nbalance: sampler\ntest_fraction: 0.0\n")
    env = os.environ | {"FACESCOPE_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "import sys; from facescope.cli import main; sys.argv[0] = 'facescope'; main()",
               "train", "--config", str(config)]
    subprocess.run(command + ["-o", str(tmp_path / "one")], env=env, check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--no-python", *command[:3], *command[3:], "-o", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / run / "history.json").read_text()) for run in ("one", "two"))
    # Heads only, dropout on: each process draws its own dropout masks, so close rather than equal.
    assert two[0]["train_loss"] == pytest.approx(one[0]["train_loss"], rel=0.05)
    assert two[0]["val_loss"] == pytest.approx(one[0]["val_loss"], rel=0.05)
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("epoch 1:") == 1  # one process wrote the log
    assert (tmp_path / "two" / "bundle" / "model.onnx").exists()
