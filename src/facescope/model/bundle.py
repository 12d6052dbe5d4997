"""The inference bundle: a folder with model.onnx and model.json. No PyTorch needed to read it.

model.json is the one place that knows a model's input size, preprocessing, label order, training data
and figures, as torchvision's Weights enums do for their models. Everything that uses a model (the
predictor, the API, the CLI, the model card) reads it from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from facescope import labels

BUNDLE_FORMAT = "facescope-bundle/1"
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"

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
    "commercial use of a model trained on UTKFace (its licence is non-commercial research only)",
)


@dataclass
class BundleInfo:
    name: str
    backbone: str
    input_size: int
    race_taxonomy: str
    age_mode: str  # "years": age output is a distribution over 0..MAX_AGE; "bins": over the 9 bins
    licence: str
    training_data: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    # Outputs averaged over the crop and its mirror image. True where model.json does not say: the
    # first bundles were all exported that way.
    test_time_mirror: bool = True
    format: str = BUNDLE_FORMAT
    preprocessing: dict = field(
        default_factory=lambda: {
            "alignment": "5-point similarity transform onto facescope.faces.align.TEMPLATE (200 px), "
            "then area-resized to input_size",
            "input": "float32 RGB, 0..255, N x 3 x input_size x input_size (normalisation is in the graph)",
            "outputs": "gender, race, age probabilities (see test_time_mirror)",
        }
    )
    intended_use: str = INTENDED_USE
    must_not_be_used_for: tuple[str, ...] = MUST_NOT_BE_USED_FOR

    @property
    def race_labels(self) -> tuple[str, ...]:
        return labels.taxonomy(self.race_taxonomy).labels

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "BundleInfo":
        values = json.loads(text)
        if values.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"not a {BUNDLE_FORMAT} model.json (format {values.get('format')!r})")
        values["must_not_be_used_for"] = tuple(values.get("must_not_be_used_for", MUST_NOT_BE_USED_FOR))
        return cls(**values)


def resolve_bundle(path: str | Path | None) -> Path:
    """The bundle folder for a path, or the bundled default model for None / "default"."""
    folder = DEFAULT_BUNDLE if path in (None, "default") else Path(path)
    if folder.is_file():
        folder = folder.parent
    for name in ("model.onnx", "model.json"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder} is not a model bundle: it has no {name}")
    return folder


def read_bundle_info(path: str | Path | None) -> BundleInfo:
    return BundleInfo.from_json((resolve_bundle(path) / "model.json").read_text())
