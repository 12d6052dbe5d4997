"""Outputs as data: heads declared once, coarse labels teaching fine heads, age groups teaching ages in years."""

import math
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facescope import labels  # noqa: E402
from facescope.data.records import FaceRecord  # noqa: E402
from facescope.heads import Head, describe_thresholds, labels_by_output, standard_heads  # noqa: E402
from facescope.training.config import TrainConfig  # noqa: E402
from facescope.training.data import TrainingData  # noqa: E402
from facescope.training.train import Targets, age_bin_probabilities, multitask_loss, seeded_sample  # noqa: E402

NO_SMOOTHING = TrainConfig(label_smoothing=0.0)


def _record(**labels_) -> FaceRecord:
    values = {"age_years": None, "age_bin": None, "gender": None, "race": None, "taxonomy": "utkface5"}
    values.update(labels_)
    return FaceRecord(source="x.jpg", original="x.jpg", **values)


def _gradient(head: Head, record: FaceRecord, logits: torch.Tensor, config: TrainConfig = NO_SMOOTHING) -> torch.Tensor:
    """The gradient of the head's loss for `record` with respect to its logits."""
    logits = logits.clone().requires_grad_(True)
    loss, _ = multitask_loss({head.name: logits}, Targets.from_records([record], (head,)), config, (head,))
    loss.backward()
    return logits.grad[0]


def _step(head: Head, record: FaceRecord, logits: torch.Tensor, rate: float = 0.5) -> torch.Tensor:
    """The head's probabilities after one gradient step on its loss for `record`."""
    return (logits - rate * _gradient(head, record, logits)).softmax(1)[0]


def test_a_utkface_asian_face_moves_east_and_southeast_asian_together_and_no_other():
    head = Head("race", "label", "fairface7")
    asian = [head.labels.index("East Asian"), head.labels.index("Southeast Asian")]
    others = [i for i in range(7) if i not in asian]
    torch.manual_seed(0)
    for logits in (torch.zeros(1, 7), torch.randn(1, 7)):
        gradient = _gradient(head, _record(race="Asian", taxonomy="utkface5"), logits)
        assert (gradient[asian] < 0).all() and (gradient[others] > 0).all()  # both fine classes up, every other down
        before, after = logits.softmax(1)[0], _step(head, _record(race="Asian", taxonomy="utkface5"), logits)
        assert after[asian].sum() > before[asian].sum() + 0.01
    gradient = _gradient(head, _record(race="Asian", taxonomy="utkface5"), torch.zeros(1, 7))
    assert gradient[asian[0]] == gradient[asian[1]]  # no preference between the two: the label names neither
    # The same face labelled in FairFace's own taxonomy teaches one class only.
    gradient = _gradient(head, _record(race="East Asian", taxonomy="fairface7"), torch.zeros(1, 7))
    assert gradient[asian[0]] < 0 and gradient[asian[1]] > 0


def test_a_fine_label_teaches_only_its_own_class():
    head = Head("race", "label", "fairface7")
    logits = torch.zeros(1, 7)
    after = _step(head, _record(race="Southeast Asian", taxonomy="fairface7"), logits)
    assert int(after.argmax()) == head.labels.index("Southeast Asian")
    assert after[head.labels.index("East Asian")] < 1 / 7


def test_an_age_group_teaches_the_years_inside_it():
    head = Head("age", "age_years")
    logits = torch.zeros(1, labels.MAX_AGE + 1)
    after = _step(head, _record(age_bin="30-39"), logits, rate=20.0)
    inside = after[30:40]
    assert inside.sum() > 10 / 101 + 0.05  # more mass inside the group
    assert torch.allclose(inside, inside[0].expand(10))  # spread evenly: a group says nothing about the year
    assert torch.allclose(after[:30], after[0].expand(30))
    bins = age_bin_probabilities(head, after[None].log())
    assert labels.AGE_BIN_LABELS[int(bins.argmax())] == "30-39"


def test_an_exact_age_wins_over_its_group_and_missing_labels_teach_nothing():
    heads = standard_heads("fairface7")
    records = [_record(age_years=34.0, age_bin="30-39", gender="Female"), _record()]
    targets = Targets.from_records(records, heads)
    assert targets.masks["race"].any(1).tolist() == [False, False]
    assert targets.masks["gender"][:, labels.GENDERS.index("Female")].tolist() == [True, False]
    outputs = {h.name: torch.zeros(2, len(h.labels), requires_grad=True) for h in heads}
    loss, parts = multitask_loss(outputs, targets, NO_SMOOTHING, heads)
    loss.backward()
    assert parts["race"] == 0 and outputs["race"].grad.abs().sum() == 0
    assert outputs["age"].grad[1].abs().sum() == 0 and outputs["age"].grad[0].abs().sum() > 0


def test_the_heads_a_run_learns_are_the_labels_its_data_carries():
    fairface = _record(race="Black", taxonomy="fairface7", gender="Male", age_bin="20-29")
    utkface = _record(race="Others", taxonomy="utkface5", gender="Female", age_years=41.0, age_bin="40-49")
    lfw = _record(gender="Male")
    data = TrainingData([fairface, utkface, lfw], ["train"] * 3, {})
    assert data.heads([0, 1, 2]) == standard_heads("fairface7", "age_years")
    assert data.heads([0]) == standard_heads("fairface7", "age_bins")
    assert data.heads([2]) == (Head("gender", "label", "gender"),)  # no race or age head from gender-only data
    deepface_like = _record(race="White", taxonomy="fairface4")
    with pytest.raises(ValueError, match="no one race head"):
        TrainingData([deepface_like, utkface], ["train"] * 2, {}).heads([0, 1])


def test_gender_sampler_draws_women_and_men_equally_within_each_data_set():
    men = [_record(gender="Male", race="White", taxonomy="fairface7") for _ in range(90)]
    women = [_record(gender="Female", race="White", taxonomy="fairface7") for _ in range(10)]
    records = men + women
    records = [FaceRecord(**{**r.__dict__, "dataset": "fairface"}) for r in records]
    data = TrainingData(records, ["train"] * 100, {})
    weights = data.sample_weights(list(range(100)), "gender_sampler").numpy()
    assert weights[90:].sum() == pytest.approx(weights[:90].sum())
    assert np.allclose(weights[:90], weights[0]) and np.allclose(weights[90:], weights[90])


def test_a_seven_race_network_starts_from_the_five_race_bundle_with_its_answers_kept(utkface_files):
    """`train --init faceres-utkface5`: the backbone and gender and age heads from the bundle's int8 graph,
    the 7-race head from its 5-race one; summed back to 5 races, the network answers as the bundle does."""
    from facescope.bundles import resolve_bundle
    from facescope.faces import read_image
    from facescope.faces.align import resize_crop
    from facescope.inference.predictor import Predictor
    from facescope.model.network import MultiTaskNet, ProbabilityNet, to_network_input
    from facescope.training.checkpoints import start_from

    predictor = Predictor("faceres-utkface5")
    size = predictor.input_size
    model = MultiTaskNet("faceres", standard_heads("fairface7"), pretrained=False).eval()
    state = start_from(model, resolve_bundle("faceres-utkface5"))
    assert state["input_size"] == size and state["recipe"]
    crops = np.stack([resize_crop(read_image(path), size) for path in utkface_files[:4]])
    images = to_network_input(torch.from_numpy(crops).permute(0, 3, 1, 2).float(), model.input_spec)
    with torch.no_grad():
        gender, race, age = ProbabilityNet(model)(images)
    agreeing = 0
    for n, bundle_answer in enumerate(predictor.estimate_crops(crops)):
        fine = dict(zip(labels.FAIRFACE7.labels, race[n].tolist()))
        coarse = labels.coarse_probabilities(fine, "fairface7", "utkface5")
        # The int8 graph also rounds every activation to 8 bits: near, not equal.
        np.testing.assert_allclose(list(coarse.values()), list(bundle_answer.race.probs.values()), atol=0.15)
        np.testing.assert_allclose(gender[n].numpy(), list(bundle_answer.gender.probs.values()), atol=0.15)
        agreeing += max(coarse, key=coarse.get) == bundle_answer.race.label
        years = float((age[n] * torch.arange(labels.MAX_AGE + 1)).sum())
        assert abs(years - bundle_answer.age.years) < 3
        east, southeast = fine["East Asian"], fine["Southeast Asian"]
        assert east == pytest.approx(southeast, rel=1e-4)  # the coarse class split evenly until training says otherwise
    assert agreeing >= 3


def test_max_images_is_a_seeded_sample_across_the_whole_split():
    # A split sorted by age as AAF's files are: the first 300 are two-year-olds.
    ages = sorted(np.random.default_rng(0).integers(2, 80, 3000).tolist())
    index = list(range(3000))
    sample = seeded_sample(index, 300, seed=0)
    assert len(set(sample)) == 300 and sample == sorted(sample)
    assert sample == seeded_sample(index, 300, seed=0) and sample != seeded_sample(index, 300, seed=1)
    sampled_ages = [ages[i] for i in sample]
    assert min(sampled_ages) <= 5 and max(sampled_ages) >= 75  # young and old, not the first 300
    assert abs(np.median(sampled_ages) - np.median(ages)) <= 5
    assert seeded_sample(index, None, 0) == index and seeded_sample(index[:10], 300, 0) == index[:10]


def test_a_model_whose_data_has_no_race_label_exports_and_answers_no_race(utkface_files, tmp_path):
    """LFW- or AAF-like data teaches no race head: the bundle has none, and no output shows a race."""
    import csv
    import io
    import json

    from typer.testing import CliRunner

    from facescope.bundles import read_bundle_info
    from facescope.cli import app
    from facescope.faces.align import CANONICAL
    from facescope.inference.results import csv_columns
    from facescope.model.export import export_bundle
    from facescope.model.network import MultiTaskNet

    data = TrainingData([_record(gender="Male", age_years=30.0, age_bin="30-39"), _record(gender="Female")],
                        ["train"] * 2, {})
    heads = data.heads([0, 1])
    assert [h.name for h in heads] == ["gender", "age"]
    torch.manual_seed(0)
    model = MultiTaskNet("small_cnn", heads, pretrained=False).eval()
    bundle = export_bundle(model, tmp_path / "no-race",
                           {"input_size": 48, "framing": CANONICAL.to_json(), "provenance": [], "recipe": []})
    assert [h.name for h in read_bundle_info(bundle).heads] == ["gender", "age"]

    photo = str(utkface_files[0])
    runner = CliRunner()
    as_json = runner.invoke(app, ["predict", photo, "--model", str(bundle), "--annotate", str(tmp_path / "drawn")])
    assert as_json.exit_code == 0, as_json.output
    (face,) = json.loads(as_json.stdout)["faces"]
    assert "race" not in face and {"gender", "age"} <= set(face)
    assert len(list((tmp_path / "drawn").iterdir())) == 1
    # (--threshold none: an untrained network's gender is near 50%, which the default threshold withholds)
    as_csv = runner.invoke(app, ["predict", photo, "--model", str(bundle), "-f", "csv", "--threshold", "none"])
    assert as_csv.exit_code == 0, as_csv.output
    (row,) = csv.DictReader(io.StringIO(as_csv.stdout))
    # The columns are the model's own outputs': no race columns for a model without a race head.
    assert list(row) == csv_columns(read_bundle_info(bundle).heads)
    assert "race" not in row and "race_prob" not in row and row["gender"] in labels.GENDERS and row["age_bin"]

    # The API's answer and model card say the same.
    from fastapi.testclient import TestClient

    from facescope.inference.predictor import Predictor
    from facescope.serving.app import create_app

    client = TestClient(create_app(predictor=Predictor(bundle)))
    with open(photo, "rb") as file:
        answer = client.post("/api/v1/predict", files={"file": ("face.jpg", file, "image/jpeg")})
    assert answer.status_code == 200 and all("race" not in face for face in answer.json()["faces"])
    card = client.get("/api/v1/model")
    assert card.status_code == 200, card.text
    assert card.json()["race_taxonomy"] is None and "race" not in card.json()["labels"]
    from facescope.bundles.card import render_model_card

    card_text = render_model_card(read_bundle_info(bundle))
    assert "two heads: gender (Female, Male), age;" in card_text
    assert "probabilities for each gender label, and an expected age in years" in card_text


def test_a_logit_shift_multiplies_one_labels_odds_and_moves_no_other_head():
    from facescope.model.network import MultiTaskNet

    torch.manual_seed(0)
    model = MultiTaskNet("small_cnn", standard_heads("fairface7"), pretrained=False).eval()
    images = torch.rand(4, 3, 48, 48)
    with torch.no_grad():
        before = {name: logits.softmax(1) for name, logits in model(images).items()}
        model.shift_logits({"gender": {"Female": 0.65}})
        after = {name: logits.softmax(1) for name, logits in model(images).items()}
    odds = lambda p: p[:, 0] / p[:, 1]  # Female / Male  # noqa: E731
    assert torch.allclose(odds(after["gender"]), odds(before["gender"]) * math.exp(0.65), rtol=1e-4)
    assert torch.equal(after["race"], before["race"]) and torch.equal(after["age"], before["age"])
    with pytest.raises(ValueError, match="no label 'Woman'"):
        model.shift_logits({"gender": {"Woman": 1.0}})
    with pytest.raises(ValueError, match="no head 'mood'"):
        model.shift_logits({"mood": {"happy": 1.0}})


def test_each_head_answers_with_its_labels_or_the_age_groups():
    gender, race, age = standard_heads("utkface5")
    assert gender.answers == ("Female", "Male") and race.answers == labels.UTKFACE5.labels
    assert age.answers == labels.AGE_BIN_LABELS
    assert labels_by_output((gender, age)) == {"gender": ["Female", "Male"], "age_bins": list(labels.AGE_BIN_LABELS)}
    assert describe_thresholds({"gender": 0.6, "age": 0.25}) == "gender 60%, age 25%"
