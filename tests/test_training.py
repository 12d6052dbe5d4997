"""Training on real crops: the loss falls, checkpoints resume, and the exported ONNX bundle agrees with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from facescope import labels  # noqa: E402
from facescope.cli import app  # noqa: E402

from facescope.data import load_dataset  # noqa: E402
from facescope.inference.predictor import Predictor  # noqa: E402
from facescope.bundles import read_bundle_info  # noqa: E402
from facescope.bundles.card import render_model_card  # noqa: E402
from facescope.model.export import export_bundle  # noqa: E402
from facescope.heads import standard_heads  # noqa: E402
from facescope.model.network import MultiTaskNet, ProbabilityNet, to_network_input  # noqa: E402
from facescope.data.records import FaceRecord  # noqa: E402
from facescope.training.augment import augment_batch  # noqa: E402
from facescope.training.config import TrainConfig  # noqa: E402
from facescope.faces.crops import build_crops  # noqa: E402
from facescope.training.checkpoints import read_state  # noqa: E402
from facescope.training.train import Targets, load_trained_model, multitask_loss, recipe_stage, train  # noqa: E402


@pytest.fixture(scope="module")
def real_subset(utkface_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("crops")
    records = load_dataset(utkface_dir).records[::300][:48]
    crops = build_crops(records, 64, cache_dir=cache, workers=1).images
    return records, crops


def test_a_few_steps_lower_the_loss_on_real_faces(real_subset):
    records, crops = real_subset
    torch.manual_seed(0)
    model = MultiTaskNet("mobilenet_v2", standard_heads("utkface5"))
    targets = Targets.from_records(records, model.outputs)
    images = to_network_input(torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float(), model.input_spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = TrainConfig()
    losses = []
    for _ in range(8):
        model.train()
        loss, parts = multitask_loss(model(images), targets, config, model.outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert set(parts) == {"gender", "race", "age"}
    assert losses[-1] < 0.7 * losses[0], losses


def test_age_loss_prefers_the_true_age():
    config = TrainConfig()
    heads = standard_heads("utkface5")
    targets = Targets.from_records([FaceRecord("a.jpg", 30.0, "30-39", "Female", "White", "utkface5", "a.jpg")], heads)
    logits = {"gender": torch.zeros(1, 2), "race": torch.zeros(1, 5)}
    peaked_at = lambda year: torch.nn.functional.one_hot(torch.tensor([year]), 101).float() * 10  # noqa: E731
    near, _ = multitask_loss(dict(logits, age=peaked_at(31)), targets, config, heads)
    far, _ = multitask_loss(dict(logits, age=peaked_at(60)), targets, config, heads)
    assert near < far


def test_augmentation_changes_images_but_keeps_range_and_shape():
    images = torch.rand(6, 3, 32, 32) * 255
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert (out - images).abs().mean() > 5
    again = augment_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded: reproducible


def test_train_checkpoint_resume_export_round_trip(utkface_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FACESCOPE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    config = TrainConfig(data=str(utkface_dir), output=str(run), backbone="mobilenet_v2", input_size=64,
                         epochs=2, batch_size=16, max_images=64, max_steps_per_epoch=3, patience=5)
    train(config)
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for name in ("config.yaml", "splits.csv", "train.log", "curves.png", "checkpoints/last.safetensors",
                 "checkpoints/best.json", "bundle/model.onnx", "bundle/model.json"):
        assert (run / name).exists(), name

    # Resume: one more epoch continues from the saved state instead of starting again.
    config.epochs = 3
    train(config, resume=True)
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert "resumed from epoch 2" in (run / "train.log").read_text()

    info = read_bundle_info(run / "bundle")
    assert (info.input_size, info.race_taxonomy, info.age_mode) == (64, "utkface5", "years")
    # The run evaluated its bundle on its own held-out test split (each data set's in its own folder) and
    # wrote the figures into it.
    assert info.evaluation["split"] == "test" and info.evaluation["faces"] == 32
    assert 0 <= info.evaluation["overall"]["gender_accuracy"] <= 1
    assert (run / "evaluation" / "utkface" / "report.md").exists() and (run / "bundle" / "MODEL_CARD.md").exists()
    (utkface,) = info.training_data["datasets"]
    assert sum(utkface["train_by_race"].values()) == utkface["splits"]["train"]

    # The ONNX bundle and the PyTorch model give the same probabilities on real aligned crops.
    model, _ = load_trained_model(run / "checkpoints" / "best")
    records = load_dataset(utkface_dir).records[5::2000]
    crops = build_crops(records, 64).images
    # Both bundle kinds: one pass per crop (what training exports) and the mirror average (`export --mirror`).
    mirrored = export_bundle(model, tmp_path / "mirrored", read_state(run / "checkpoints" / "best"), mirror=True)
    assert read_bundle_info(mirrored).test_time_mirror and not read_bundle_info(run / "bundle").test_time_mirror
    for bundle, mirror in ((run / "bundle", False), (mirrored, True)):
        with torch.no_grad():
            gender, race, age = ProbabilityNet(model, mirror)(to_network_input(
                torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float(), model.input_spec))
        estimates = Predictor(bundle).estimate_crops(np.asarray(crops))
        for estimate, g, r, a in zip(estimates, gender, race, age):
            np.testing.assert_allclose(list(estimate.gender.probs.values()), g.numpy(), atol=1e-3)
            np.testing.assert_allclose(list(estimate.race.probs.values()), r.numpy(), atol=1e-3)
            # The expected age, kept inside the most likely age group (one decision; labels.years_inside_bin).
            expected_years = labels.years_inside_bin(float((a * torch.arange(101)).sum()), estimate.age.bin)
            assert abs(estimate.age.years - expected_years) < 0.05

    # `export --int8` calibrates on crops of the run's own training split (its splits.csv), and says so.
    int8 = tmp_path / "int8"
    exported = CliRunner().invoke(app, ["export", str(run / "checkpoints" / "best"), "-o", str(int8), "--int8",
                                        "--calibration-crops", "12"])
    assert exported.exit_code == 0, exported.output
    quantization = read_bundle_info(int8).quantization
    assert quantization["weights"] == "int8" and quantization["calibration_crops"] == 12
    assert "| precision | int8: onnxruntime static quantization" in render_model_card(read_bundle_info(int8))
    int8_gender = np.array([list(e.gender.probs.values()) for e in Predictor(int8).estimate_crops(np.asarray(crops))])
    float_gender = np.array([list(e.gender.probs.values()) for e in Predictor(run / "bundle").estimate_crops(np.asarray(crops))])
    assert np.abs(int8_gender - float_gender).max() < 0.1
    no_splits = tmp_path / "copied"
    (no_splits / "checkpoints").mkdir(parents=True)
    for path in (run / "checkpoints").glob("best.*"):
        (no_splits / "checkpoints" / path.name).write_bytes(path.read_bytes())
    refused = CliRunner().invoke(app, ["export", str(no_splits / "checkpoints" / "best"), "-o", str(tmp_path / "x"),
                                       "--int8"])
    assert refused.exit_code == 2 and "splits.csv is missing" in refused.output

    # Another run can start from these weights at a larger input size (progressive resizing): with a
    # vanishing learning rate, its convolution weights are still the checkpoint's.
    tuned = tmp_path / "tuned"
    train(TrainConfig(splits=str(run / "splits.csv"), output=str(tuned), input_size=80, epochs=1, batch_size=16,
                      max_images=64, max_steps_per_epoch=1, lr=1e-12, init=str(run / "checkpoints" / "best")))
    start = load_file(str(run / "checkpoints" / "best.safetensors"))
    tuned_weights = load_file(str(tuned / "checkpoints" / "best.safetensors"))
    convolutions = [name for name, tensor in start.items() if tensor.ndim == 4]
    assert len(convolutions) > 20
    for name in convolutions:
        torch.testing.assert_close(tuned_weights[name], start[name], atol=1e-6, rtol=0)
    tuned_info = read_bundle_info(tuned / "bundle")
    assert tuned_info.input_size == 80
    # Trained from the first run's split manifest, it still knows its data: UTKFace, and its licence.
    assert [d["title"] for d in tuned_info.training_data["datasets"]] == ["UTKFace"]
    assert "non-commercial" in tuned_info.licence
    # Its bundle tells the whole history: the first run's stage, then the fine-tuning stage.
    recipe = tuned_info.training_data["recipe"]
    assert [(stage["input_size"], stage["epochs_run"]) for stage in recipe] == [(64, 3), (80, 1)]
    assert recipe[1]["start"] == f"weights of {run / 'checkpoints' / 'best'}"
    card = (tuned / "bundle" / "MODEL_CARD.md").read_text()
    assert "| 1 | mobilenet_v2 | 64 px |" in card and "| 2 | mobilenet_v2 | 80 px |" in card
    # A checkpoint of another design is refused rather than half-loaded.
    with pytest.raises(ValueError, match="is a mobilenet_v2 network; this run trains a small_cnn one"):
        train(TrainConfig(data=str(utkface_dir), output=str(tmp_path / "other"), backbone="small_cnn", epochs=1,
                          max_images=64, init=str(run / "checkpoints" / "best")))


def test_a_recipe_stage_keeps_each_data_sets_share_as_data():
    config = TrainConfig(data=["${FACESCOPE_DATA}/utkface", {"path": "${FACESCOPE_DATA}/aaf", "weight": 0.25}],
                         backbone="small_cnn", epochs=2)
    stage = recipe_stage(config, {"epoch": 2, "best_epoch": 1, "history": [{"seconds": 60}, {"seconds": 30}]},
                         init=None)
    assert stage["data"] == ["${FACESCOPE_DATA}/utkface", {"path": "${FACESCOPE_DATA}/aaf", "weight": 0.25}]
    assert json.loads(json.dumps(stage))["data"][1]["weight"] == 0.25 and stage["minutes"] == 1.5
