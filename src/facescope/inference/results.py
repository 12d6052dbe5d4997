"""The typed answer for one image: what `facescope predict` prints as a JSON line and the API returns.

These pydantic models are the one schema of a prediction; the CLI serialises them, FastAPI documents
them in its OpenAPI page.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class AgeEstimate(BaseModel):
    years: float | None = Field(description="expected age in years (None for a model trained on bins only)")
    bin: str = Field(description="most likely of the 9 FairFace age bins")
    bin_probs: dict[str, float]
    years_std: float | None = Field(default=None, description="spread of the age distribution: an uncertainty")


class LabelEstimate(BaseModel):
    label: str
    probs: dict[str, float]


class Estimates(BaseModel):
    age: AgeEstimate
    gender: LabelEstimate
    race: LabelEstimate


class FaceResult(Estimates):
    """One face: where it is, and the first model's estimates (`age`, `gender`, `race`); with several
    models (`Predictor(model, also=[...])`), each further model's estimates in `by_model`."""

    box: list[float] = Field(description="x1, y1, x2, y2 in the image's pixels")
    score: float = Field(description="detector confidence (1.0 for an already-aligned crop)")
    landmarks: list[list[float]] = Field(description="5 points: eyes, nose tip, mouth corners")
    by_model: dict[str, Estimates] = Field(default_factory=dict, description="further models' estimates, by name")


class ImageResult(BaseModel):
    path: str
    width: int | None = None
    height: int | None = None
    faces: list[FaceResult] = []
    error: str | None = None
