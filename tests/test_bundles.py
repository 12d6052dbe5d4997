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
