"""The bundle contract: what model.json declares about a model, and the checks that it tells the truth.

A bundle is a folder with model.onnx and model.json. Like torchvision's `Weights` entries, one object,
`BundleInfo`, knows a model's face framing, its input (size, colour order, normalisation, tensor name),
its outputs (one per declared head, facescope.heads: tensor name, kind, labels), its training data and licences, its figures
and its card text. The predictor executes what it declares and nothing else; `load_bundle` refuses a
bundle whose JSON and graph disagree. PyTorch-free: `facescope.model.export` writes bundles, this reads them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facescope.faces.align import CANONICAL, Framing
from facescope.heads import Head

BUNDLE_FORMAT = "facescope-bundle/3"
# Format 2 named exactly three outputs by task (gender, race, age) with a race taxonomy and an age mode;
# it is read as the three heads it declared.
FORMAT_2 = "facescope-bundle/2"

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

    @classmethod
    def from_json(cls, values: dict) -> "ModelOutput":
        values = dict(values)
        return cls(values.pop("tensor"), Head.from_json(values))

    @classmethod
    def from_format_2(cls, values: dict) -> "ModelOutput":
        task = values["task"]
        if task == "age":
            head = Head("age", "age_years" if values.get("age_mode") == "years" else "age_bins")
        else:
            head = Head(task, "label", "gender" if task == "gender" else values.get("taxonomy"))
        return cls(values["name"], head)


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
    def from_json(cls, text: str, source: str = "model.json") -> "BundleInfo":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise BundleError(f"{source}: not JSON ({error})") from None
        if not isinstance(values, dict) or values.get("format") not in (FORMAT_2, BUNDLE_FORMAT):
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise BundleError(f"{source}: not a {BUNDLE_FORMAT} (or {FORMAT_2}) model.json (format {found!r})")
        try:
            read_output = ModelOutput.from_format_2 if values["format"] == FORMAT_2 else ModelOutput.from_json
            values["format"] = BUNDLE_FORMAT
            values["framing"] = Framing.from_json(values["framing"])
            values["input"] = ModelInput(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in values["input"].items()})
            values["outputs"] = tuple(read_output(o) for o in values["outputs"])
            for key in ("must_not_be_used_for", "limitations"):
                values[key] = tuple(values.get(key, ()))
            info = cls(**values)
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"{source}: {type(error).__name__}: {error}") from None
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
    if not path.is_file():
        raise BundleError(f"{folder} is not a model bundle: it has no model.json")
    return BundleInfo.from_json(path.read_text(), str(path))


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
    # A graph whose shapes are all symbolic is checked by running it once on a blank crop.
    probe = np.zeros((1, size, size, 3), dtype=np.uint8)
    try:
        values = session.run([o.tensor for o in info.outputs], {info.input.name: info.input.prepare(probe)})
    except Exception as error:
        raise BundleError(f"{graph}: fails on a {size} px input as model.json declares "
                          f"({str(error).strip().splitlines()[0][:200]})") from None
    for output, value in zip(info.outputs, values):
        if value.shape != (1, len(output.labels)):
            raise BundleError(f"{graph}: output {output.tensor!r} gives shape {value.shape}, but model.json declares "
                              f"{len(output.labels)} {output.name} classes")
