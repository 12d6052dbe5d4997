"""Export a trained network as an inference bundle (model.onnx + model.json, per facescope.bundles).

Everything model.json says comes from the network (its input convention) and its checkpoint (design,
input size, framing, data sets with licences, recipe); the ONNX graph's tensor names are the ones the
JSON declares, and the bundle is loaded and checked once written.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from facescope import labels
from facescope.bundles.contract import SIZE_METADATA, BundleInfo, ModelInput, ModelOutput, load_bundle
from facescope.faces.align import Framing
from facescope.model.network import BACKBONES, MultiTaskNet, ProbabilityNet
from facescope.model.quantize import quantize_graph

log = logging.getLogger(__name__)
INPUT_NAME = "images"
LIMITATIONS = (
    "young children (0-2, 3-9): gender is hard to tell from a face at these ages, for people and models alike",
    "the very old (70+): few training images, and age error grows with age",
    "poor light, strong shadows, blur and low resolution",
    "heavy make-up, face paint, sunglasses, masks and other occlusion",
    "profile views and strong head rotation (alignment assumes both eyes are visible)",
)
UTKFACE_OTHERS = ("the 'Others' race group of UTKFace, which mixes Hispanic, Latino, Middle Eastern and more, is the "
                  "least accurate race class")


def export_onnx(model: MultiTaskNet, path: Path, input_size: int, mirror: bool = False) -> Path:
    # The wrapper itself in eval mode: the exporter puts the module back in the mode it found it in, and a
    # fresh wrapper is in training mode, which would leave the caller's network in it (BatchNorm on batch stats).
    probabilities = ProbabilityNet(model, mirror).eval()
    example = torch.zeros(2, 3, input_size, input_size)
    torch.onnx.export(
        probabilities, (example,), str(path), input_names=[INPUT_NAME],
        output_names=[head.name for head in model.outputs], dynamic_axes={INPUT_NAME: {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    return path


def record_input_size(graph: Path, input_size: int) -> None:
    """Write into the graph's metadata the input size it was made for, which load_bundle holds model.json
    to even where the graph's own input shape is symbolic."""
    import onnx

    model = onnx.load(str(graph))
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, SIZE_METADATA: str(input_size)})
    onnx.save(model, str(graph))


def bundle_licence(datasets: list[dict], pretraining_terms: str) -> str:
    """Every restriction the model inherits: its training data sets' and its pretrained weights'."""
    named = " ".join(f"{d['title']}: {d['licence']}" for d in datasets) or (
        "Training data unknown: check the licences of the images it was trained on.")
    count = f"{len(datasets)} data set{'s' * (len(datasets) != 1)}"
    return f"Inherits every restriction of its {count} and its pretrained weights. {named} {pretraining_terms}".strip()


def export_bundle(model: MultiTaskNet, folder: Path, checkpoint: dict, name: str | None = None,
                  mirror: bool = False, calibration_crops: np.ndarray | None = None) -> Path:
    """Write model.onnx and model.json for `model` trained as `checkpoint` (its JSON state) says; with
    `calibration_crops` (N x S x S x 3 uint8 RGB in the checkpoint's framing), an int8 model.onnx."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    input_size = checkpoint["input_size"]
    spec = model.input_spec
    model_input = ModelInput(INPUT_NAME, input_size, spec.channel_order, spec.mean, spec.std)
    quantization = {}
    if calibration_crops is None:
        export_onnx(model, folder / "model.onnx", input_size, mirror)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            float_graph = export_onnx(model, Path(scratch) / "float.onnx", input_size, mirror)
            quantization = quantize_graph(float_graph, folder / "model.onnx", calibration_crops, model_input)
    record_input_size(folder / "model.onnx", input_size)
    datasets = checkpoint.get("provenance", [])
    taxonomies = [head.taxonomy for head in model.outputs if head.taxonomy not in (None, labels.GENDER.name)]
    info = BundleInfo(
        name=name or "-".join(["facescope", model.backbone_name, *taxonomies]),
        backbone=model.backbone_name,
        licence=bundle_licence(datasets, BACKBONES[model.backbone_name].pretraining_terms),
        framing=Framing.from_json(checkpoint["framing"]),
        input=model_input,
        outputs=tuple(ModelOutput(head.name, head) for head in model.outputs),
        training_data={"datasets": datasets, "recipe": checkpoint.get("recipe", [])},
        test_time_mirror=mirror,
        quantization=quantization,
        limitations=LIMITATIONS + ((UTKFACE_OTHERS,) if "utkface5" in taxonomies else ()),
    )
    (folder / "model.json").write_text(info.to_json())
    load_bundle(folder)  # what was written must pass the same checks as any bundle a user loads
    log.info("exported bundle to %s", folder)
    return folder
