"""The schema of model.json, checked before anything is built from it.

`parse_model_json` turns the file's text into a validated `BundleDocument` or raises `SchemaError` with
one line naming the field and what is wrong with it ("input.size '160': should be a whole number").
It refuses, before any recursion can fail, a file over `MAX_JSON_BYTES` or nested deeper than
`MAX_DEPTH`, and anywhere in the document NaN or an infinity (JSON has neither; Python's reader accepts
them, and a server could not send them back) or a string with a lone surrogate (which no UTF-8 output
can hold).

Every value the predictor, the model card, `facescope models` and GET /api/v1/model read has its type
here, with the bounds that keep it usable: an input size from MIN_INPUT_SIZE to MAX_INPUT_SIZE px (the
load-time probe and every face run at that size), a framing of 5 finite landmarks near its reference
square, positive normalisation scales. Blocks that a later facescope may extend (training data,
evaluation, quantization, data sets, recipe stages) keep keys they do not know; the top level, the input
and format 3's outputs refuse them, as the loader always has.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facescope import labels
from facescope.heads import KINDS, Head

BUNDLE_FORMAT = "facescope-bundle/3"
# Format 2 named exactly three outputs by task (gender, race, age) with a race taxonomy and an age mode;
# it is read as the three heads it declared.
FORMAT_2 = "facescope-bundle/2"
MAX_JSON_BYTES = 4 * 1024 * 1024  # a model.json with every evaluation recorded is about 40 kB
MAX_DEPTH = 32  # the deepest a facescope model.json goes is 8 (evaluation.other_datasets.*.intervals...)
# A face is run at the input size in batches of up to 32, and checked at load at that size: a bound keeps
# a graph with symbolic sizes from costing gigabytes for a size it was never made for.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 512
MAX_REFERENCE_SIZE = 2048  # faces are warped at max(input size, reference size) px before resizing


class SchemaError(ValueError):
    """model.json does not follow the schema: one line, naming the field."""


class _Closed(BaseModel):
    """Exact JSON types (no "160" for 160, no true for 1), no NaN, no keys the loader does not know."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


class _Open(_Closed):
    """As _Closed, keeping keys it does not know (later versions may add them)."""

    model_config = ConfigDict(extra="allow")


Number = float  # strict float: a JSON integer or fraction, never a string or a boolean
Figure = Number | None  # a figure as evaluations record it: null where it could not be computed
Interval = Annotated[list[Number], Field(min_length=2, max_length=2)]
Text = Annotated[str, Field(min_length=1)]


class FramingSchema(_Open):
    reference_size: int = Field(ge=MIN_INPUT_SIZE, le=MAX_REFERENCE_SIZE)
    landmarks: Annotated[list[Annotated[list[Number], Field(min_length=2, max_length=2)]],
                         Field(min_length=5, max_length=5)]

    @model_validator(mode="after")
    def _usable(self) -> "FramingSchema":
        size = self.reference_size
        if any(not -size <= v <= 2 * size for point in self.landmarks for v in point):
            raise ValueError(f"landmarks must lie within {-size} to {2 * size} (the reference square of {size} px "
                             "and a square's width around it)")
        if max(math.dist(p, q) for p in self.landmarks for q in self.landmarks) < 1:
            raise ValueError("landmarks all at one point: no face can be aligned to them")
        return self


class InputSchema(_Closed):
    name: Text = "images"
    size: int = Field(160, ge=MIN_INPUT_SIZE, le=MAX_INPUT_SIZE)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: Annotated[list[Number], Field(min_length=3, max_length=3)] = [0.0, 0.0, 0.0]
    std: Annotated[list[Annotated[Number, Field(gt=0)]], Field(min_length=3, max_length=3)] = [1.0, 1.0, 1.0]


def _known_taxonomy(name: str | None) -> str | None:
    if name is not None and name != labels.GENDER.name and name not in labels.TAXONOMIES:
        raise ValueError(f"unknown taxonomy; known: {sorted([labels.GENDER.name, *labels.TAXONOMIES])}")
    return name


class _HeadDeclaration(_Closed):
    """An output that declares a head: a known taxonomy, and a valid head (`head()`, each format's own)."""

    taxonomy: str | None = None

    @field_validator("taxonomy")
    @classmethod
    def _taxonomy(cls, name: str | None) -> str | None:
        return _known_taxonomy(name)

    @model_validator(mode="after")
    def _is_a_head(self) -> "_HeadDeclaration":
        self.head()  # a label head without a taxonomy, an age head with one: a ValueError naming the head
        return self

    def head(self) -> Head:
        raise NotImplementedError


class OutputSchema(_HeadDeclaration):
    """Format 3: one output tensor and the head it answers."""

    tensor: Text
    name: Text
    kind: Literal[KINDS]
    truth: str | None = None

    def head(self) -> Head:
        return Head(self.name, self.kind, self.taxonomy, self.truth)


class Format2OutputSchema(_HeadDeclaration):
    """Format 2: outputs named by task; `name` is the tensor's."""

    model_config = ConfigDict(extra="allow")  # as _Open: later keys kept
    task: Literal["gender", "race", "age"]
    name: Text
    age_mode: Literal["years", "bins"] | None = None

    @property
    def tensor(self) -> str:
        return self.name

    def head(self) -> Head:
        if self.task == "age":
            return Head("age", "age_years" if self.age_mode == "years" else "age_bins")
        return Head(self.task, "label", labels.GENDER.name if self.task == "gender" else self.taxonomy)


class DatasetSchema(_Open):
    name: str
    title: str
    licence: str
    splits: dict[str, Annotated[int, Field(ge=0)]]
    people: Annotated[int, Field(ge=0)] | None = None
    train_by_gender: dict[str, Annotated[Number, Field(ge=0)]] | None = None
    train_by_race: dict[str, Annotated[Number, Field(ge=0)]] | None = None
    train_by_age_bin: dict[str, Annotated[Number, Field(ge=0)]] | None = None
    weight: Number | None = None


class RecipeStageSchema(_Open):
    backbone: str
    input_size: int
    start: str
    epochs_run: int
    best_epoch: int | None
    batch_size: int
    lr: Number
    balance: str | None
    augment: bool
    minutes: Number | None


class TrainingDataSchema(_Open):
    datasets: list[DatasetSchema] = []
    recipe: list[RecipeStageSchema] = []


class QuantizationSchema(_Open):
    """Empty for float32 weights; else all four fields."""

    weights: str | None = None
    method: str | None = None
    calibration: str | None = None
    calibration_crops: int | None = None

    @model_validator(mode="after")
    def _all_or_none(self) -> "QuantizationSchema":
        given = [self.weights, self.method, self.calibration, self.calibration_crops]
        if any(v is not None for v in given) and any(v is None for v in given):
            raise ValueError("a quantized model names its weights, method, calibration and calibration_crops")
        return self


class GroupFigures(_Open):
    """One group's figures: its number of faces `n` and figures by name."""

    __pydantic_extra__: dict[str, Figure] = Field(init=False)
    n: Annotated[Number, Field(ge=0)] = 0


class IntervalsSchema(_Open):
    bootstrap_resamples: int | None = None
    unit: str | None = None
    overall: dict[str, Interval] = {}
    by_race: dict[str, dict[str, Interval]] = {}
    by_race_gender: dict[str, dict[str, Interval]] = {}


class GapSchema(_Open):
    grouping: str
    metric: str
    lowest_group: str
    lowest: Figure
    highest_group: str
    highest: Figure
    difference: Figure
    difference_low: Figure = None
    difference_high: Figure = None

    @model_validator(mode="after")
    def _both_ends(self) -> "GapSchema":
        if (self.difference_low is None) != (self.difference_high is None):
            raise ValueError("difference_low and difference_high come together")
        return self


class StandardisedGapSchema(_Open):
    metric: str
    raw_gap: Figure
    standardised_gap: Figure


class EvaluationSchema(_Open):
    dataset: str | None = None
    source_dataset: str | None = None
    split: str | None = None
    faces: Annotated[int, Field(ge=0)] | None = None
    date: str | None = None
    command: str | None = None
    min_group_size: int | None = None
    overall: dict[str, Figure] = {}
    intervals: IntervalsSchema = IntervalsSchema()
    by_race: dict[str, GroupFigures] = {}
    by_race_gender: dict[str, GroupFigures] = {}
    gaps: list[GapSchema] = []
    equalized_odds_difference: Figure = None
    age_standardised_gaps: list[StandardisedGapSchema] | None = None
    other_datasets: dict[str, "EvaluationSchema"] = {}


class BundleDocument(_Closed):
    """A model.json of format 3."""

    format: Literal["facescope-bundle/3"]
    name: Text
    backbone: Text
    licence: str
    framing: FramingSchema
    input: InputSchema
    outputs: Annotated[list[OutputSchema], Field(min_length=1)]
    version: str = "1"
    training_data: TrainingDataSchema = TrainingDataSchema()
    evaluation: EvaluationSchema = EvaluationSchema()
    test_time_mirror: bool = False
    quantization: QuantizationSchema = QuantizationSchema()
    intended_use: str | None = None
    must_not_be_used_for: list[str] | None = None
    limitations: list[str] = []



class Format2Document(BundleDocument):
    """A model.json of format 2: exactly the outputs gender, race and age, named by task."""

    format: Literal["facescope-bundle/2"]
    outputs: Annotated[list[Format2OutputSchema], Field(min_length=1)]


DOCUMENTS = {BUNDLE_FORMAT: BundleDocument, FORMAT_2: Format2Document}


def parse_model_json(text: str | bytes) -> tuple[BundleDocument, dict]:
    """The validated document and the raw values it was read from (the free-form blocks keep their keys
    and their order from the raw values)."""
    if len(text) > MAX_JSON_BYTES:
        raise SchemaError(f"{len(text):,} bytes, over the limit of {MAX_JSON_BYTES:,} for a model.json")
    try:
        values = json.loads(text)
    except RecursionError:
        raise SchemaError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise SchemaError(f"not JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise SchemaError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    _check_plain(values)
    found = values.get("format") if isinstance(values, dict) else type(values).__name__
    if not isinstance(found, str) or found not in DOCUMENTS:
        raise SchemaError(f"not a {BUNDLE_FORMAT} (or {FORMAT_2}) model.json (format {found!r})")
    try:
        return DOCUMENTS[found].model_validate(values), values
    except ValidationError as error:
        problems = [_describe(e) for e in error.errors(include_url=False)]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise SchemaError("; ".join(problems[:3]) + more) from None


def _check_plain(values: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH and NaN or infinities anywhere, naming where (no recursion)."""
    stack = [(values, (), 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SchemaError(f"{_location(where)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError(f"{_location(where)} {value}: should be a finite number (JSON has no NaN or infinity)")
        if isinstance(value, str) and not _is_unicode(value):
            raise SchemaError(f"{_location(where)}: a string with a lone surrogate (\\ud800 to \\udfff), not text")
        if isinstance(value, dict):
            for key in value:
                if not _is_unicode(key):
                    raise SchemaError(f"{_location(where)}: a key with a lone surrogate "
                                      "(\\ud800 to \\udfff), not text")
            stack.extend((v, (*where, k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*where, i), depth + 1) for i, v in enumerate(value))


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_PLAIN_MESSAGES = {
    "int_type": "should be a whole number", "int_from_float": "should be a whole number",
    "float_type": "should be a number", "string_type": "should be a string", "bool_type": "should be true or false",
    "dict_type": "should be a JSON object", "model_type": "should be a JSON object",
    "model_attributes_type": "should be a JSON object", "list_type": "should be a list",
    "finite_number": "should be a finite number",
}


def _describe(error: dict) -> str:
    where = _location(error["loc"])
    if error["type"] == "missing":
        return f"{where}: missing (KeyError: {error['loc'][-1]!r})"
    if error["type"] == "extra_forbidden":
        return f"{where}: not a field of model.json here"
    message = _PLAIN_MESSAGES.get(error["type"]) or error["msg"].removeprefix("Value error, ").replace(
        "Input should", "should")
    message = message[0].lower() + message[1:]
    value = error.get("input")
    if isinstance(value, (dict, list)) and error["type"] not in _PLAIN_MESSAGES:
        return f"{where}: {message}"  # a check of the whole block: its value says nothing more
    return f"{where} {_shown(value)}: {message}"


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the document"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "(an object)"
    if isinstance(value, list):
        return "(a list)"
    shown = json.dumps(value) if isinstance(value, bool) or value is None else repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
