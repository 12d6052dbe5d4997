"""The typed answer for one image: what `facescope predict` prints as a JSON line and the API returns.

These pydantic models are the one schema of a prediction; the CLI serialises them, FastAPI documents
them in its OpenAPI page.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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

    age: AgeEstimate | None = Field(default=None, exclude_if=_absent)
    gender: LabelEstimate | None = Field(default=None, exclude_if=_absent)
    race: LabelEstimate | None = Field(default=None, exclude_if=_absent)


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
