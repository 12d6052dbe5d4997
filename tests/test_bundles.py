"""The bundle contract: what model.json declares is what the predictor executes, and a bundle that lies
about its graph is refused at load with one line naming the file and the problem."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from facescope.bundles import BundleError, load_bundle, resolve_bundle  # noqa: E402
from facescope.faces import read_image  # noqa: E402
from facescope.faces.align import CANONICAL, resize_crop  # noqa: E402
from facescope.inference.predictor import Predictor  # noqa: E402
from facescope.model.export import export_bundle  # noqa: E402
from facescope.heads import standard_heads  # noqa: E402
from facescope.model.network import MultiTaskNet, ProbabilityNet, to_network_input  # noqa: E402


def _checkpoint_state(size: int, zoom: float = 1.0) -> dict:
    return {"input_size": size, "framing": CANONICAL.zoomed(zoom).to_json(), "provenance": [], "recipe": []}


def _pytorch_probabilities(model: MultiTaskNet, crops: np.ndarray):
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return ProbabilityNet(model).eval()(to_network_input(images, model.input_spec))


@pytest.mark.parametrize("backbone,size", [("small_cnn", 48), ("faceres", 64)])
def test_a_bundle_with_its_own_size_and_normalisation_runs_as_declared(backbone, size, tmp_path, utkface_files):
    # small_cnn: RGB, mean 127.5 and std 127.5 outside the graph; faceres: BGR minus the caffe mean pixel.
    torch.manual_seed(0)
    # FaceRes without its weights (no batch norm) gives the same answer for every input: an empty check.
    model = MultiTaskNet(backbone, standard_heads("fairface7", "age_bins"), pretrained=backbone == "faceres").eval()
    for head in model.heads.values():  # large weights: answers that differ by input
        torch.nn.init.normal_(head.weight, std=10.0)
    bundle = export_bundle(model, tmp_path / backbone, _checkpoint_state(size, zoom=1.2))
    info = load_bundle(bundle).info
    assert info.input.size == size and info.input.channel_order == model.input_spec.channel_order
    assert info.input.mean == model.input_spec.mean and info.framing == CANONICAL.zoomed(1.2)
    crops = np.stack([resize_crop(read_image(path), size) for path in utkface_files[:3]])
    gender, race, age = _pytorch_probabilities(model, crops)
    assert float(race.std(0).max()) > 1e-3  # the answers depend on the input
    for estimate, g, r, a in zip(Predictor(bundle).estimate_crops(crops), gender, race, age):
        np.testing.assert_allclose(list(estimate.gender.probs.values()), g.numpy(), atol=1e-4)
        np.testing.assert_allclose(list(estimate.race.probs.values()), r.numpy(), atol=1e-4)
        np.testing.assert_allclose(list(estimate.age.bin_probs.values()), a.numpy(), atol=1e-4)
    # Channel order matters: the same crops read as RGB by a BGR network give other answers.
    if info.input.channel_order == "BGR":
        flipped = _pytorch_probabilities(model, np.ascontiguousarray(crops[..., ::-1]))[0]
        assert not torch.allclose(flipped, gender, atol=1e-4)


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle") / "good"
    model = MultiTaskNet("small_cnn", standard_heads("utkface5"), pretrained=False).eval()
    return export_bundle(model, folder, _checkpoint_state(48))


def _lying_copy(good_bundle, tmp_path, change) -> object:
    folder = tmp_path / "lying"
    shutil.copytree(good_bundle, folder)
    info = json.loads((folder / "model.json").read_text())
    change(info)
    (folder / "model.json").write_text(json.dumps(info))
    return folder


@pytest.mark.parametrize("change,message", [
    (lambda i: i["input"].update(size=64), "declares N x 3 x 64 x 64"),
    (lambda i: i["input"].update(name="pixels"), "has no input 'pixels'"),
    (lambda i: i["outputs"][1].update(taxonomy="fairface7"), "declares 7 for race"),
    (lambda i: i["outputs"][2].update(tensor="years"), "has no output 'years'"),
    (lambda i: i["outputs"][2].update(name="gender"), "each with its own name"),
    (lambda i: i["outputs"][2].update(kind="age_decades"), "kind 'age_decades'"),
    (lambda i: i["outputs"][1].update(taxonomy="klingon9"), "unknown taxonomy"),
    (lambda i: i.pop("framing"), "KeyError"),
    (lambda i: i["input"].update(channel_order="RGBA"), "channel_order"),
    (lambda i: i.update(format="facescope-bundle/1"), "not a facescope-bundle/3"),
])
def test_a_bundle_whose_json_lies_is_refused_in_one_line(good_bundle, tmp_path, change, message):
    folder = _lying_copy(good_bundle, tmp_path, change)
    with pytest.raises(BundleError, match=message) as refused:
        Predictor(folder)
    assert "\n" not in str(refused.value) and "model." in str(refused.value)


def test_a_broken_graph_is_refused_in_one_line(good_bundle, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(good_bundle, folder)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes()[:5000])
    with pytest.raises(BundleError, match="model.onnx: not a usable ONNX graph") as refused:
        load_bundle(folder)
    assert "\n" not in str(refused.value)


def test_models_are_found_by_name_and_several_run_on_one_detection_pass(good_bundle, tmp_path, monkeypatch,
                                                                       utkface_files):
    monkeypatch.setenv("FACESCOPE_CACHE", str(tmp_path))
    shutil.copytree(good_bundle, tmp_path / "models" / "tiny")
    assert resolve_bundle("tiny") == tmp_path / "models" / "tiny"
    with pytest.raises(BundleError, match="no model 'nothing'"):
        resolve_bundle("nothing")
    both = Predictor("default", also=["tiny"])
    alone = Predictor("tiny")
    photo = utkface_files[3]
    faces = both.predict(photo)
    # Keyed by the name passed, whatever the bundle's model.json calls itself.
    assert alone.info.name != "tiny"
    assert len(faces) == 1 and list(faces[0].by_model) == ["tiny"]
    assert faces[0].gender == Predictor("default").predict(photo)[0].gender
    tiny_alone = alone.predict(photo)[0]
    assert faces[0].by_model["tiny"].gender.probs == pytest.approx(tiny_alone.gender.probs, abs=1e-4)
    by_path = Predictor("default", also=[tmp_path / "models" / "tiny"]).predict(photo)[0]
    assert list(by_path.by_model) == [str(tmp_path / "models" / "tiny")]


@pytest.mark.parametrize("verb", ["predict", "serve"])
def test_the_cli_refuses_a_lying_bundle_in_one_line(good_bundle, tmp_path, utkface_files, verb):
    import subprocess
    import sys

    folder = _lying_copy(good_bundle, tmp_path, lambda i: i["input"].update(size=64))
    args = [str(utkface_files[0]), "--model", str(folder)] if verb == "predict" else ["--model", str(folder), "--port", "0"]
    done = subprocess.run([sys.executable, "-m", "facescope", verb, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2  # serve never starts; predict reads nothing
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {folder / 'model.onnx'}: input 'images' is ['batch', 3, 48, 48], but model.json "
                      "declares N x 3 x 64 x 64"]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_an_int8_bundle_keeps_the_float_bundles_answers_on_real_faces(tmp_path, utkface_files):
    # The shipped model's path: FaceRes, its convolutions quantized with ranges from real face crops.
    torch.manual_seed(0)
    model = MultiTaskNet("faceres", standard_heads("utkface5"), pretrained=True).eval()
    for head in (model.heads["gender"], model.heads["race"]):
        torch.nn.init.normal_(head.weight, std=0.02)
    crops = np.stack([resize_crop(read_image(path), 64) for path in utkface_files[:48]])
    float_bundle = load_bundle(export_bundle(model, tmp_path / "float", _checkpoint_state(64)))
    int8_bundle = load_bundle(export_bundle(model, tmp_path / "int8", _checkpoint_state(64),
                                            calibration_crops=crops[:32]))
    assert int8_bundle.info.quantization["weights"] == "int8" and not float_bundle.info.quantization
    assert int8_bundle.info.quantization["calibration_crops"] == 32
    graph_ops = Counter(node.op_type for node in onnx.load(tmp_path / "int8" / "model.onnx").graph.node)
    assert graph_ops["QLinearConv"] == 27 and graph_ops["Conv"] == 0  # every convolution, none left in float
    # Activations stay int8 from the first convolution to the last (ReLU6 and padding included): one
    # conversion in, one out before the pooling. Float ops between convolutions cost the speed int8 buys.
    assert graph_ops["QuantizeLinear"] == 1 and graph_ops["DequantizeLinear"] == 1
    held_out = crops[32:]  # faces the calibration never saw
    floats, int8s = float_bundle.run(held_out), int8_bundle.run(held_out)
    assert float(floats["race"].std(0).max()) > 0.02  # the answers depend on the face
    for task in ("gender", "race", "age"):
        assert np.abs(int8s[task] - floats[task]).max() < 0.05, task
    years = np.arange(floats["age"].shape[1])
    assert np.abs(int8s["age"] @ years - floats["age"] @ years).max() < 2.0


# A model.json is checked against its schema before anything is built from it: every field of the wrong
# type or out of its bounds is refused at load in one line that names it, instead of a traceback or a
# bundle that loads and then fails on every photo.
@pytest.mark.parametrize("change,message", [
    (lambda i: i.update(input=[48, 48]), r"input \(a list\): should be a JSON object"),
    (lambda i: i["input"].update(size="48"), "input.size '48': should be a whole number"),
    (lambda i: i["input"].update(size=48.0), "input.size 48.0: should be a whole number"),
    (lambda i: i["input"].update(size=True), "input.size true: should be a whole number"),
    (lambda i: i["input"].update(size=600), "input.size 600: should be less than or equal to 512"),
    (lambda i: i["input"].update(mean="127"), "input.mean '127': should be a list"),
    (lambda i: i["input"].update(std=[127.5, 0, 127.5]), r"input.std\[1\] 0: should be greater than 0"),
    (lambda i: i["framing"]["landmarks"][0].__setitem__(0, float("nan")), r"framing.landmarks\[0\]\[0\] nan"),
    (lambda i: i["framing"].update(reference_size=0), "framing.reference_size 0"),
    (lambda i: i["framing"].update(reference_size=200.5), "framing.reference_size 200.5: should be a whole number"),
    (lambda i: i["framing"].update(landmarks=[[98, 98]] * 5), "framing: landmarks all at one point"),
    (lambda i: i["framing"].update(landmarks=[[1e300, 0]] * 5), "framing: landmarks must lie within"),
    (lambda i: i["framing"].update(landmarks=[[1, 2]] * 4), "framing.landmarks: list should have at least 5"),
    (lambda i: i.update(outputs={"gender": "gender"}), r"outputs \(an object\): should be a list"),
    (lambda i: i.update(name=7), "name 7: should be a string"),
    (lambda i: i.update(evaluation=["accuracy", 0.9]), r"evaluation \(a list\): should be a JSON object"),
    (lambda i: i.update(evaluation={"overall": {"gender_accuracy": "high"}}),
     "evaluation.overall.gender_accuracy 'high': should be a number"),
    (lambda i: i.update(evaluation={"equalized_odds_difference": float("inf")}),
     "evaluation.equalized_odds_difference inf: should be a finite number"),
    (lambda i: i.update(evaluation={"gaps": [{"grouping": "race"}]}), r"evaluation.gaps\[0\].metric: missing"),
    (lambda i: i.update(training_data="UTKFace"), "training_data 'UTKFace': should be a JSON object"),
    (lambda i: i["training_data"].update(datasets=[{"name": "utkface"}]), r"training_data.datasets\[0\].title"),
    (lambda i: i.update(quantization={"weights": "int8"}), "quantization: a quantized model names"),
    (lambda i: i.update(must_not_be_used_for="surveillance"), "must_not_be_used_for 'surveillance': should be a list"),
    (lambda i: i.update(test_time_mirror="no"), "test_time_mirror 'no': should be true or false"),
    (lambda i: i["outputs"][0].update(tensor=["gender"]), r"outputs\[0\].tensor \(a list\): should be a string"),
])
def test_a_model_json_of_the_wrong_shape_is_refused_at_load_naming_the_field(good_bundle, tmp_path, change, message):
    folder = _lying_copy(good_bundle, tmp_path, change)
    with pytest.raises(BundleError, match=message) as refused:
        load_bundle(folder)
    assert str(refused.value).startswith(f"{folder / 'model.json'}: ") and "\n" not in str(refused.value)


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
    ('{"format": "facescope-bundle/3", "evaluation": ' + '{"a": ' * 40 + "1" + "}" * 41, "nested deeper than 32"),
    ("{" + " " * (5 * 1024 * 1024) + "}", "over the limit of 4,194,304"),
    (b'{"name": "\xff\xfe"}', "not UTF-8 text"),
    ('["facescope-bundle/3"]', r"not a facescope-bundle/3 .* \(format 'list'\)"),
    ('{"format": ["facescope-bundle/3"]}', r"\(format \['facescope-bundle/3'\]\)"),
    ("{'format': 3}", "not JSON"),
    ('{"format": "facescope-bundle/3", "licence": "\\ud800"}', "licence: a string with a lone surrogate"),
    ('{"format": "facescope-bundle/3", "evaluation": {"\\udfff": 1}}', "evaluation: a key with a lone surrogate"),
])
def test_a_model_json_that_is_not_a_document_is_refused_before_it_is_parsed_deeper(good_bundle, tmp_path, text,
                                                                                   message):
    folder = tmp_path / "odd"
    shutil.copytree(good_bundle, folder)
    path = folder / "model.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(BundleError, match=message) as refused:
        load_bundle(folder)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)
    assert len(str(refused.value)) < 400


def _export_graph(module, path, size: int, batch: int = 2, dynamic: dict | None = None):
    torch.onnx.export(module.eval(), (torch.zeros(batch, 3, size, size),), str(path), input_names=["images"],
                      output_names=["gender", "race", "age"], dynamic_axes=dynamic, opset_version=17, dynamo=False)


def test_a_graph_with_symbolic_sizes_is_held_to_the_size_it_was_exported_for(good_bundle, tmp_path):
    from facescope.model.export import record_input_size

    model = MultiTaskNet("small_cnn", standard_heads("utkface5"), pretrained=False)
    assert load_bundle(good_bundle).session.get_modelmeta().custom_metadata_map["facescope.input_size"] == "48"
    # The same network with symbolic height and width: it runs at any size, so only the size its export
    # recorded can tell that model.json's 64 is not the 48 px it was made for.
    folder = _lying_copy(good_bundle, tmp_path, lambda i: i["input"].update(size=64))
    _export_graph(ProbabilityNet(model), folder / "model.onnx", 48,
                  dynamic={"images": {0: "batch", 2: "height", 3: "width"}})
    record_input_size(folder / "model.onnx", 48)
    with pytest.raises(BundleError, match=r"model.onnx: was exported for 48 px inputs \(its facescope.input_size "
                                          r"metadata\), but model.json declares 64") as refused:
        load_bundle(folder)
    assert "\n" not in str(refused.value)
    # At the size it records it loads, and runs one face or several at a time.
    (folder / "model.json").write_text((good_bundle / "model.json").read_text())
    bundle = load_bundle(folder)
    assert bundle.session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert {name: value.shape for name, value in bundle.run(np.zeros((3, 48, 48, 3), np.uint8)).items()} == {
        "gender": (3, 2), "race": (3, 5), "age": (3, 101)}
    # A size far beyond any face model's is refused by the schema, before the graph is run at it.
    huge = _lying_copy(folder, tmp_path / "huge", lambda i: i["input"].update(size=2048))
    with pytest.raises(BundleError, match="input.size 2048: should be less than or equal to 512"):
        load_bundle(huge)


class _Doubled(torch.nn.Module):
    """Outputs that are not probabilities: each head's twice over."""

    def __init__(self, network):
        super().__init__()
        self.probabilities = ProbabilityNet(network)

    def forward(self, images):
        return tuple(2 * p for p in self.probabilities(images))


def test_a_graph_for_one_face_at_a_time_or_without_probabilities_is_refused_at_load(good_bundle, tmp_path):
    model = MultiTaskNet("small_cnn", standard_heads("utkface5"), pretrained=False)
    one_at_a_time = tmp_path / "one"
    shutil.copytree(good_bundle, one_at_a_time)
    _export_graph(ProbabilityNet(model), one_at_a_time / "model.onnx", 48, batch=1)
    with pytest.raises(BundleError, match=r"input 'images' is \[1, 3, 48, 48\]: a fixed batch of 1"):
        load_bundle(one_at_a_time)
    doubled = tmp_path / "doubled"
    shutil.copytree(good_bundle, doubled)
    _export_graph(_Doubled(model), doubled / "model.onnx", 48, dynamic={"images": {0: "batch"}})
    with pytest.raises(BundleError, match=r"output 'gender' \(gender\) is not probabilities"):
        load_bundle(doubled)


def test_a_loaded_bundle_with_one_output_and_sparse_figures_is_served_and_listed(tmp_path, monkeypatch):
    """An age-only bundle whose evaluation could not compute every figure (nulls, as pandas writes NaN) and
    whose training data counted no labels: GET /api/v1/model answers 200 and `facescope models` lists it."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from facescope.cli import app
    from facescope.heads import Head
    from facescope.serving.app import create_app

    model = MultiTaskNet("small_cnn", (Head("age", "age_bins"),), pretrained=False).eval()
    folder = export_bundle(model, tmp_path / "models" / "ages", _checkpoint_state(48))
    info = json.loads((folder / "model.json").read_text())
    info["training_data"]["datasets"] = [{"name": "faces", "title": "Faces", "licence": "research", "splits":
                                          {"train": 0}, "train_by_age_bin": {"20-29": 0}}]
    info["evaluation"] = {
        "dataset": "faces", "split": "test", "faces": 40, "overall": {"age_bin_accuracy": None, "age_mae": 5.0},
        "by_race": {"A": {"n": 40, "age_bin_accuracy": None}}, "intervals": {"overall": {"age_mae": [4.0, 6.0]}},
        "gaps": [{"grouping": "race", "metric": "age_mae", "lowest_group": "A", "lowest": None,
                  "highest_group": "B", "highest": None, "difference": None}],
        "age_standardised_gaps": [{"metric": "age_mae", "raw_gap": None, "standardised_gap": None}],
    }
    (folder / "model.json").write_text(json.dumps(info))
    predictor = Predictor(folder)
    answer = TestClient(create_app(predictor=predictor)).get("/api/v1/model")
    assert answer.status_code == 200, answer.text
    card = answer.json()
    assert card["race_taxonomy"] is None and card["age_mode"] == "bins" and "race" not in card["labels"]
    assert card["evaluation"] == info["evaluation"]
    assert any(section["title"] == "Training data" for section in card["card"]["sections"])
    monkeypatch.setenv("FACESCOPE_CACHE", str(tmp_path))
    listed = CliRunner().invoke(app, ["models"])
    assert listed.exit_code == 0, listed.output
    assert "ages  (" in listed.output and "UNUSABLE" not in listed.output
