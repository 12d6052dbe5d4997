"""The typed answer for one image: what `facescope predict` prints as a JSON line and the API returns.

These pydantic models are the one schema of a prediction; the CLI serialises them, FastAPI documents
them in its OpenAPI page.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def _absent(value) -> bool:
    return value is None


class AgeEstimate(BaseModel):
    years: float | None = Field(description="expected age in years, kept inside `bin`'s range so that the two "
                                "never disagree, also when rounded to whole years (None for a model trained "
                                "on age groups only)")
    bin: str = Field(description="most likely of the 9 FairFace age groups")
    bin_probs: dict[str, float]
    years_std: float | None = Field(default=None, description="spread of the age distribution: an uncertainty")


class LabelEstimate(BaseModel):
    label: str
    probs: dict[str, float]


class Estimates(BaseModel):
    """One model's answer for one face: one entry per output the model declares (facescope.heads), under
    the output's name. `age`, `gender` and `race` are the usual three; a model without one leaves it out,
    and a further output appears under its own name with the same shape (labels and probabilities)."""

    model_config = ConfigDict(extra="allow")

    age: AgeEstimate | None = Field(default=None, exclude_if=_absent)
    gender: LabelEstimate | None = Field(default=None, exclude_if=_absent)
    race: LabelEstimate | None = Field(default=None, exclude_if=_absent)

    def outputs(self) -> dict[str, AgeEstimate | LabelEstimate]:
        """The outputs this answer has, by name: age, gender and race where the model has them, then any
        further output of the model."""
        found = {name: getattr(self, name) for name in ("age", "gender", "race") if getattr(self, name) is not None}
        for name, value in (self.model_extra or {}).items():
            if isinstance(value, dict):  # read back from JSON
                value = (AgeEstimate if "bin_probs" in value else LabelEstimate).model_validate(value)
            found[name] = value
        return found


class FaceResult(Estimates):
    """One face: where it is, and the first model's estimates (`age`, `gender`, `race`); with several
    models (`Predictor(model, also=[...])`), each further model's estimates in `by_model`."""

    box: list[float] = Field(description="x1, y1, x2, y2 in the image's pixels")
    score: float = Field(description="detector confidence (1.0 for an already-aligned crop)")
    landmarks: list[list[float]] = Field(description="5 points: eyes, nose tip, mouth corners")
    by_model: dict[str, Estimates] = Field(default_factory=dict, description="further models' estimates, by name")


class ImageResult(BaseModel):
    path: str
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
