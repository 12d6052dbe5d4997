"""Training on several data sets with partial labels: per-data-set splits (by person where a data set
names people), masked losses (a head learns only from photos with its label), and a short real run on
UTKFace, All-Age-Faces, LFW and FairFace photos together that lowers every head's loss."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facescope.data import load_dataset  # noqa: E402
from facescope.data.splits import assign_splits  # noqa: E402
from facescope.faces.crops import build_crops  # noqa: E402
from facescope.data.records import FaceRecord  # noqa: E402
from facescope.heads import standard_heads  # noqa: E402
from facescope.model.network import MultiTaskNet, to_network_input  # noqa: E402
from facescope.training.config import TrainConfig  # noqa: E402
from facescope.training.data import TrainingData  # noqa: E402
from facescope.training.train import Targets, multitask_loss  # noqa: E402


@pytest.fixture(scope="module")
def shared(utkface_dir):
    return utkface_dir.parent


def test_lfw_is_split_by_person_and_each_data_set_on_its_own(shared):
    lfw = load_dataset(shared / "lfw")
    assert lfw.format == "lfw" and all(r.person and r.race is None and r.age_years is None for r in lfw.records)
    splits = assign_splits(lfw.records)
    people = defaultdict(set)
    for record, split in zip(lfw.records, splits):
        people[record.person].add(split)
    assert max(len(s) for s in people.values()) == 1  # nobody is in two splits
    several = [p for p in people if sum(r.person == p for r in lfw.records) > 1]
    assert several and {s for p in several for s in people[p]} == {"train", "val", "test"}
    assert 0.08 < splits.count("test") / len(splits) < 0.12
    # Adding a data set moves nothing in another's split: the same seed splits each on its own.
    aaf = load_dataset(shared / "aaf")
    assert aaf.format == "aaf" and all(r.age_years is not None and r.race is None for r in aaf.records)
    assert assign_splits(lfw.records) == splits


def test_a_head_without_labels_in_the_batch_gets_no_gradient():
    torch.manual_seed(0)
    model = MultiTaskNet("small_cnn", standard_heads("utkface5"), pretrained=False)
    images = torch.rand(4, 3, 48, 48) * 255
    # LFW-like photos: gender only. Race and age are unknown.
    records = [FaceRecord(f"{n}.jpg", None, None, gender, None, "utkface5", f"{n}.jpg")
               for n, gender in enumerate(["Female", "Male", "Male", "Female"])]
    targets = Targets.from_records(records, model.outputs)
    loss, parts = multitask_loss(model(to_network_input(images, model.input_spec)), targets, TrainConfig(), model.outputs)
    loss.backward()
    assert parts["race"] == 0 and parts["age"] == 0 and parts["gender"] > 0
    heads = model.heads
    assert torch.count_nonzero(heads["race"].weight.grad) == 0 and torch.count_nonzero(heads["age"].weight.grad) == 0
    assert torch.count_nonzero(heads["gender"].weight.grad) > 0


def test_gender_weights_balance_women_and_men_within_each_data_set(shared):
    records = load_dataset(shared / "lfw").records[:300] + load_dataset(shared / "aaf").records[::60]
    data = TrainingData(records, ["train"] * len(records), {})
    weights = data.gender_weights(list(range(len(records))))
    for dataset in ("lfw", "aaf"):
        by_gender = defaultdict(float)
        for record, weight in zip(records, weights.tolist()):
            if record.dataset == dataset:
                by_gender[record.gender] += weight
        assert by_gender["Female"] == pytest.approx(by_gender["Male"])
        assert sum(by_gender.values()) == pytest.approx(sum(r.dataset == dataset for r in records))


def test_a_short_run_on_four_data_sets_lowers_every_loss(shared, tmp_path):
    """UTKFace (exact ages, 5 races), All-Age-Faces (exact ages), LFW (gender only) and FairFace (age groups,
    7 races) in one batch: the seven-race head learns from both race taxonomies, the age head from exact
    ages and from groups."""
    records = []
    for name in ("utkface", "aaf", "lfw", "fairface"):
        records += load_dataset(shared / name).records[::397][:16]
    aligned = build_crops(records, 64, cache_dir=tmp_path, workers=1)
    crops, found = aligned.only_found()
    kept = [records[i] for i in found]
    assert len(kept) >= 52 and {r.dataset for r in kept} == {"utkface", "aaf", "lfw", "fairface"}
    heads = TrainingData(kept, ["train"] * len(kept), {}).heads(list(range(len(kept))))
    assert {h.name: h.taxonomy for h in heads} == {"gender": "gender", "race": "fairface7", "age": None}
    torch.manual_seed(0)
    model = MultiTaskNet("mobilenet_v2", heads)
    targets = Targets.from_records(kept, model.outputs)
    images = to_network_input(torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float(), model.input_spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(10):
        model.train()
        loss, parts = multitask_loss(model(images), targets, TrainConfig(), model.outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(parts)
    for head in ("gender", "race", "age"):
        assert history[-1][head] < 0.8 * history[0][head], (head, history[0], history[-1])
