"""The typed answer for one image: what `facescope predict` prints as a JSON line and the API returns.

These pydantic models are the one schema of a prediction; the CLI serialises them, FastAPI documents
them in its OpenAPI page. A result also writes itself as CSV rows (`ImageResult.csv_rows`, the columns
from the model's heads: `csv_columns`) and draws itself on its photo (`ImageResult.draw`), so every
engine and the server write and draw the same way, and a new output (facescope.heads) gets its columns
and its words on the picture from its declaration alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Union

from pydantic import BaseModel, ConfigDict, Field

from facescope.document import spreadsheet_cell
from facescope.heads import Head

if TYPE_CHECKING:
    from PIL import Image


def _absent(value) -> bool:
    return value is None


class MeasuredError(BaseModel):
    """How often this model's estimate was right (or how far off) on the test faces it estimated like
    this one: the most specific group of estimates with enough test faces (facescope.inference.error_figures)."""

    figure: str = Field(description="gender_accuracy, race_accuracy, age_mae or age_bin_accuracy")
    value: float
    interval: list[float] | None = Field(default=None, description="95% bootstrap interval")
    faces: int = Field(description="test faces behind the figure")
    grouping: str = Field(description='which grouping of estimates the figure is from ("estimated age group", ...)')
    group: str = Field(description='the group, as the estimates name it ("0-2 / Female")')
    text: str = Field(description='the figure in words: "gender right 67% for faces estimated 0-2"')


class AgeEstimate(BaseModel):
    years: float | None = Field(description="expected age in years, kept inside `bin`'s range so that the two "
                                "never disagree (None for a model trained on age groups only)")
    bin: str = Field(description='most likely of the 9 FairFace age groups, or "uncertain" below the confidence '
                     "threshold (then `years` is withheld too)")
    bin_probs: dict[str, float]
    years_std: float | None = Field(default=None, description="spread of the age distribution: an uncertainty")
    measured: MeasuredError | None = Field(default=None, exclude_if=_absent)


class LabelEstimate(BaseModel):
    label: str = Field(description='the most likely label, or "uncertain" below the confidence threshold')
    probs: dict[str, float]
    measured: MeasuredError | None = Field(default=None, exclude_if=_absent)


class Estimates(BaseModel):
    """One model's answer for one face: one entry per output the model declares (facescope.heads), under
    the output's name. `age`, `gender` and `race` are the usual three; a model without one leaves it out,
    and a further output appears under its own name with the same shape (labels and probabilities)."""

    model_config = ConfigDict(extra="allow")
    # A further output's estimate, read back from JSON (an engine's shards) as the same typed estimate.
    __pydantic_extra__: dict[str, Union[AgeEstimate, LabelEstimate]] = Field(init=False)

    age: AgeEstimate | None = Field(default=None, exclude_if=_absent)
    gender: LabelEstimate | None = Field(default=None, exclude_if=_absent)
    race: LabelEstimate | None = Field(default=None, exclude_if=_absent)

    def estimates(self) -> dict[str, AgeEstimate | LabelEstimate]:
        """Each output's estimate by name: age, gender, race (those the model has), then further outputs
        in the model's order."""
        return {name: value for name, value in self if isinstance(value, (AgeEstimate, LabelEstimate))}

    def short_label(self) -> str:
        """The estimates in a few words, as drawn on a photo: `34y Female White` (an age group for a
        model that estimates groups only), a further output's label after them."""
        return " ".join(_in_words(estimate) for estimate in self.estimates().values())


def _in_words(estimate: AgeEstimate | LabelEstimate) -> str:
    if isinstance(estimate, LabelEstimate):
        return estimate.label
    return f"{estimate.years:.0f}y" if estimate.years is not None else estimate.bin


class FaceResult(Estimates):
    """One face: where it is, and the first model's estimates (`age`, `gender`, `race`); with several
    models (`Predictor(model, also=[...])`), each further model's estimates in `by_model`."""

    box: list[float] = Field(description="x1, y1, x2, y2 in the image's pixels")
    score: float = Field(description="detector confidence (1.0 for an already-aligned crop)")
    landmarks: list[list[float]] = Field(description="5 points: eyes, nose tip, mouth corners")
    by_model: dict[str, Estimates] = Field(default_factory=dict, description="further models' estimates, by name")


class ImageResult(BaseModel):
    path: str
    model: str | None = Field(default=None, exclude_if=_absent,
                              description="the model that made the estimates (its model.json name)")
    width: int | None = Field(default=None, description="the photo's width in its own pixels (boxes use these)")
    height: int | None = None
    faces: list[FaceResult] = Field(default=[], description="the faces shown: the largest `faces_found`, "
                                    "at most `max_faces` of them, largest first")
    faces_found: int = Field(default=0, description="how many faces the detector found (faces may show fewer)")
    frames: int | None = Field(
        default=None, exclude_if=lambda value: value is None,
        description="for a file of several frames (GIF, TIFF, WebP): how many; the first one was analysed",
    )
    error: str | None = None

    def csv_rows(self, heads: Sequence[Head]) -> Iterator[dict]:
        """The result's CSV rows (columns: `csv_columns(heads)`): one per face, numbered from 1 as on the
        annotated photo and the web page; one row without a face for a photo with none (or an error)."""
        base = {"path": spreadsheet_cell(self.path), "model": spreadsheet_cell(self.model), "width": self.width,
                "height": self.height, "faces_found": self.faces_found, "error": spreadsheet_cell(self.error)}
        if not self.faces:
            yield base
        ordered = _column_order(heads)
        for number, face in enumerate(self.faces, start=1):
            estimates = face.estimates()
            row = base | {"face": number, "x1": face.box[0], "y1": face.box[1], "x2": face.box[2],
                          "y2": face.box[3], "score": face.score}
            for head in ordered:
                row |= dict(zip(head_columns(head), _cells(estimates.get(head.name))))
            yield row

    def draw(self, source, max_side: int | None = None) -> Image.Image:
        """The photo `source` (anything facescope.faces.read_photo takes) read again, with each face's
        numbered box and short label drawn (facescope.inference.draw.annotate_photo)."""
        from facescope.inference.draw import annotate_photo

        return annotate_photo(source, self.faces, max_side)


_PHOTO_COLUMNS = ["path", "model", "width", "height", "faces_found", "face", "x1", "y1", "x2", "y2", "score"]


def csv_columns(heads: Sequence[Head]) -> list[str]:
    """The CSV columns of a model's results: the photo and face, then each head's columns (an age head
    `<name>_years`, `<name>_bin`; a label head `<name>`, `<name>_prob`: ages first, then labels, each
    in the model's order), then `error`."""
    return _PHOTO_COLUMNS + [column for head in _column_order(heads) for column in head_columns(head)] + ["error"]


def head_columns(head: Head) -> tuple[str, str]:
    return (f"{head.name}_years", f"{head.name}_bin") if head.is_age else (head.name, f"{head.name}_prob")


def _column_order(heads: Sequence[Head]) -> list[Head]:
    return [h for h in heads if h.is_age] + [h for h in heads if not h.is_age]


def _cells(estimate: AgeEstimate | LabelEstimate | None) -> tuple:
    if estimate is None:
        return None, None
    if isinstance(estimate, AgeEstimate):
        return estimate.years, estimate.bin
    # The top probability, also where the answer was withheld as "uncertain".
    return estimate.label, max(estimate.probs.values())
