"""The bundle contract: what model.json declares about a model, and the checks that it tells the truth.

A bundle is a folder with model.onnx and model.json. Like torchvision's `Weights` entries, one object,
`BundleInfo`, knows a model's face framing, its input (size, colour order, normalisation, tensor name),
its outputs (one per declared head, facescope.heads: tensor name, kind, labels), its training data and licences, its figures
and its card text. The predictor executes what it declares and nothing else. `read_info` validates
model.json against its schema (facescope.bundles.schema) before building anything from it; `load_bundle`
then refuses a bundle whose JSON and graph disagree, each in one line naming the file and the field.
PyTorch-free: `facescope.model.export` writes bundles, this reads them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facescope.bundles.schema import BUNDLE_FORMAT, MAX_JSON_BYTES, SchemaError, parse_model_json
from facescope.faces.align import CANONICAL, Framing
from facescope.heads import Head


INTENDED_USE = (
    "Research and teaching on automated face analysis, and auditing how such estimates differ across "
    "groups. The outputs are statistical estimates of apparent age, gender and race from a face's "
    "appearance, with known error rates that differ by group."
)
MUST_NOT_BE_USED_FOR = (
    "identity decisions or verification of any kind",
    "surveillance, tracking or profiling of people",
    "any decision about a person (hiring, lending, policing, access, pricing, medical care)",
    "treating an estimate of race or gender as a fact about a person: appearance is not identity",
    "any use its training data's licences forbid (see the licence)",
)


# The graph metadata key under which facescope's export records the input size a graph was made for.
SIZE_METADATA = "facescope.input_size"
PROBE_BATCH = 2


class BundleError(ValueError):
    """A bundle that cannot be used, with one line naming the file and the problem."""


@dataclass(frozen=True)
class ModelInput:
    """The input tensor: N x 3 x size x size float32, each pixel (0..255, in `channel_order`) turned into
    (pixel - mean) / std per channel. A graph that normalises inside declares mean 0 and std 1."""

    name: str = "images"
    size: int = 160
    channel_order: str = "RGB"  # or "BGR"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def prepare(self, crops: np.ndarray) -> np.ndarray:
        """N x size x size x 3 uint8 RGB crops as this input's float32 N x 3 x size x size tensor."""
        images = crops[..., ::-1] if self.channel_order == "BGR" else crops
        images = (images.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class ModelOutput:
    """One output tensor (N x classes probabilities, graph name `tensor`) and the head it answers."""

    tensor: str
    head: Head

    @property
    def name(self) -> str:
        return self.head.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.head.labels

    def to_json(self) -> dict:
        return {"tensor": self.tensor, **self.head.to_json()}


@dataclass
class BundleInfo:
    name: str
    backbone: str
    licence: str
    framing: Framing = CANONICAL
    input: ModelInput = field(default_factory=ModelInput)
    outputs: tuple[ModelOutput, ...] = ()
    version: str = "1"
    training_data: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    test_time_mirror: bool = False  # outputs averaged over the crop and its mirror image, inside the graph
    quantization: dict = field(default_factory=dict)  # empty: float32 weights; else how it was made int8
    intended_use: str = INTENDED_USE
    must_not_be_used_for: tuple[str, ...] = MUST_NOT_BE_USED_FOR
    limitations: tuple[str, ...] = ()
    format: str = BUNDLE_FORMAT

    @property
    def heads(self) -> tuple[Head, ...]:
        return tuple(output.head for output in self.outputs)

    def head(self, name: str) -> Head | None:
        """The head answering under `name`, or None where the model has none."""
        return next((h for h in self.heads if h.name == name), None)

    @property
    def input_size(self) -> int:
        return self.input.size

    @property
    def race_taxonomy(self) -> str | None:
        race = self.head("race")
        return race.taxonomy if race else None

    @property
    def race_labels(self) -> tuple[str, ...]:
        race = self.head("race")
        return race.labels if race else ()

    @property
    def age_mode(self) -> str | None:
        """"years" (an age in years and its groups), "bins" (age groups only), or None (no age output)."""
        age = self.head("age")
        return None if age is None else "years" if age.kind == "age_years" else "bins"

    def to_json(self) -> str:
        values = asdict(self)
        values["framing"] = self.framing.to_json()
        values["outputs"] = [output.to_json() for output in self.outputs]
        return json.dumps(values, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model.json") -> "BundleInfo":
        """The declarations of a model.json, validated against its schema (facescope.bundles.schema)
        first: a BundleError of one line naming the field where it does not follow it."""
        try:
            document, values = parse_model_json(text)
        except SchemaError as error:
            raise BundleError(f"{source}: {error}") from None
        framing = document.framing
        info = cls(
            name=document.name, backbone=document.backbone, licence=document.licence,
            framing=Framing(tuple(tuple(p) for p in framing.landmarks), framing.reference_size),
            input=ModelInput(document.input.name, document.input.size, document.input.channel_order,
                             tuple(document.input.mean), tuple(document.input.std)),
            outputs=tuple(ModelOutput(o.tensor, o.head()) for o in document.outputs),
            version=document.version,
            # The free-form blocks as written (validated above), keys a later version adds included.
            training_data=values.get("training_data") or {}, evaluation=values.get("evaluation") or {},
            quantization=values.get("quantization") or {}, test_time_mirror=document.test_time_mirror,
            intended_use=document.intended_use or INTENDED_USE,
            must_not_be_used_for=tuple(document.must_not_be_used_for or MUST_NOT_BE_USED_FOR),
            limitations=tuple(document.limitations),
        )
        info.check_fields(source)
        return info

    def check_fields(self, source: str = "model.json") -> None:
        """Refuse declarations no predictor could execute."""
        problems = []
        names = [o.name for o in self.outputs]
        if not names or len(set(names)) != len(names):
            problems.append(f"outputs must be at least one, each with its own name, not {names}")
        if self.input.channel_order not in ("RGB", "BGR"):
            problems.append(f"input channel_order {self.input.channel_order!r} is not RGB or BGR")
        if len(self.input.mean) != 3 or len(self.input.std) != 3 or not all(s > 0 for s in self.input.std):
            problems.append("input mean and std need 3 values each, std positive")
        if self.input.size < 16:
            problems.append(f"input size {self.input.size} is too small")
        if problems:
            raise BundleError(f"{source}: " + "; ".join(problems))


@dataclass
class LoadedBundle:
    """A checked bundle: its declarations and its onnxruntime session."""

    folder: Path
    info: BundleInfo
    session: object  # onnxruntime.InferenceSession

    def run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Each task's probabilities (N x classes) for N x S x S x 3 uint8 RGB crops in the bundle's framing."""
        tensors = [o.tensor for o in self.info.outputs]
        values = self.session.run(tensors, {self.info.input.name: self.info.input.prepare(crops)})
        return {o.name: v for o, v in zip(self.info.outputs, values)}


def read_info(folder: Path) -> BundleInfo:
    path = Path(folder) / "model.json"
    try:
        if not path.is_file():
            raise BundleError(f"{folder} is not a model bundle: it has no model.json")
        with path.open("rb") as file:
            text = file.read(MAX_JSON_BYTES + 1)  # a longer one is refused without reading it all
    except OSError as error:
        raise BundleError(f"{path}: cannot be read ({error.strerror or error})") from None
    return BundleInfo.from_json(text, str(path))


def load_bundle(folder: Path, threads: int = 0) -> LoadedBundle:
    """Read model.json, open model.onnx, and check that the graph is what the JSON says it is."""
    import onnxruntime as ort

    folder = Path(folder)
    info = read_info(folder)
    graph = folder / "model.onnx"
    if not graph.is_file():
        raise BundleError(f"{folder} is not a model bundle: it has no model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle network threads would otherwise spin waiting for work, burning the cores that the workers
    # need to read, detect and align the next photos.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # a broken graph is reported below in one line, not by the runtime's log
    try:
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for every kind of bad graph
        reason = str(error).strip().splitlines()[0][:200]
        raise BundleError(f"{graph}: not a usable ONNX graph ({reason})") from None
    _check_graph(info, session, graph)
    return LoadedBundle(folder, info, session)


def _check_graph(info: BundleInfo, session, graph: Path) -> None:
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if info.input.name not in inputs:
        raise BundleError(f"{graph}: has no input {info.input.name!r} (it has {sorted(inputs)})")
    shape = inputs[info.input.name]
    size = info.input.size
    if len(shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(shape[1:], (3, size, size))):
        raise BundleError(f"{graph}: input {info.input.name!r} is {shape}, but model.json declares N x 3 x {size} x {size}")
    outputs = {o.name: o.shape for o in session.get_outputs()}
    for output in info.outputs:
        if output.tensor not in outputs:
            raise BundleError(f"{graph}: has no output {output.tensor!r} for {output.name} (it has {sorted(outputs)})")
        classes = outputs[output.tensor][-1]
        if isinstance(classes, int) and classes != len(output.labels):
            raise BundleError(f"{graph}: output {output.tensor!r} has {classes} classes, but model.json declares "
                              f"{len(output.labels)} for {output.name}")
    # A graph whose input size is symbolic says the size it was made for only where its exporter recorded
    # it (facescope's export does, in the graph's metadata); a graph that records none is run below at the
    # size model.json declares, which schema.MAX_INPUT_SIZE bounds.
    exported = session.get_modelmeta().custom_metadata_map.get(SIZE_METADATA)
    if exported is not None and exported != str(size):
        raise BundleError(f"{graph}: was exported for {exported[:20]} px inputs (its {SIZE_METADATA} metadata), "
                          f"but model.json declares {size}")
    if isinstance(shape[0], int):
        raise BundleError(f"{graph}: input {info.input.name!r} is {shape}: a fixed batch of {shape[0]}, but faces "
                          "are run in batches of any number (export it with a dynamic batch axis)")
    # Symbolic shapes are checked by running the graph once on blank crops, more than one: a graph that
    # only works for one face at a time would otherwise fail on every photo with two faces.
    probe = np.zeros((PROBE_BATCH, size, size, 3), dtype=np.uint8)
    try:
        values = session.run([o.tensor for o in info.outputs], {info.input.name: info.input.prepare(probe)})
    except Exception as error:
        raise BundleError(f"{graph}: fails on a {size} px input as model.json declares (a batch of {PROBE_BATCH}: "
                          f"{str(error).strip().splitlines()[0][:200]})") from None
    for output, value in zip(info.outputs, values):
        if value.shape != (PROBE_BATCH, len(output.labels)):
            raise BundleError(f"{graph}: output {output.tensor!r} gives shape {value.shape} for a batch of "
                              f"{PROBE_BATCH}, but model.json declares {len(output.labels)} {output.name} classes")
        sums = value.sum(axis=1) if np.issubdtype(value.dtype, np.floating) else None
        if sums is None or not np.isfinite(value).all() or value.min() < 0 or np.abs(sums - 1).max() > 1e-2:
            raise BundleError(f"{graph}: output {output.tensor!r} ({output.name}) is not probabilities "
                              f"(finite, 0 to 1, summing to 1 for each face) on a blank {size} px crop")
