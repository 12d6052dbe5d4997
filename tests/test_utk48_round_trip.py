"""The UTK 48x48 grey CSV round trip: written from real crops, trained on, and evaluated on its own
test split (a split manifest of CSV rows reads the pixels back from the CSV)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from facescope.data import load_dataset  # noqa: E402
from facescope.faces.crops import write_utk48_csv  # noqa: E402
from facescope.training.config import TrainConfig  # noqa: E402
from facescope.training.train import train  # noqa: E402


def test_a_48x48_csv_trains_and_evaluates_its_own_test_split(utkface_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FACESCOPE_CACHE", str(tmp_path / "cache"))
    records = load_dataset(utkface_dir).records[::200][:80]
    written, missed = write_utk48_csv(records, tmp_path / "utk48.csv")
    assert written + missed == 80 and written >= 70
    csv48 = load_dataset(tmp_path / "utk48.csv")
    assert csv48.format == "utk48csv" and len(csv48) == written
    assert csv48.records[0].pixels.shape == (48, 48)

    run = tmp_path / "run"
    train(TrainConfig(data=str(tmp_path / "utk48.csv"), output=str(run), backbone="small_cnn", epochs=1,
                      batch_size=16, max_steps_per_epoch=3, pretrained=False))
    # The split manifest names CSV rows; loading it back gives their pixels, so the run's own test split
    # is evaluated (the bug was: rows without pixels, nothing to evaluate).
    manifest = load_dataset(run / "splits.csv")
    assert all(r.pixels is not None and r.pixels.shape == (48, 48) for r in manifest.records)
    evaluation = json.loads((run / "bundle" / "model.json").read_text())["evaluation"]
    test_rows = sum(r.partition == "test" for r in manifest.records)
    assert evaluation["split"] == "test" and evaluation["faces"] == test_rows > 0
