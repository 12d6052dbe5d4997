"""Detection options: how faces are found in a photo, declared once.

Each option's default, bounds and meaning are a field of `DetectionOptions`. The detector and the
predictor take their defaults from it and check a call's options against it; `facescope predict` and
`facescope serve` make their flags from it (facescope.cli.options), the API its query parameters and
the server its settings (facescope.serving). A new option is one field here, and the code that uses it.

Light: pydantic only, so every verb's `-h` reads it without loading a model library.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Optional

from pydantic import BaseModel, Field


class DetectionOptions(BaseModel):
    """The detection options, each with its default and bounds.

    The defaults were measured with benchmarks/detection_knobs.py on 2000x1000 group photos of real faces
    from 40 to 400 px and one turned 25 degrees: at 640 px 12% of the faces were missed (40% of the 40 px
    ones, some turned ones), at 960 px none, for 3x the time of 640 (130 ms a photo on 2 cores); 1280 found
    no more. The score threshold made no difference at 960 (0.5 to 0.8: every face, no false one); 0.7
    keeps a margin for harder faces than pasted crops while staying well above the scores of background
    clutter."""

    detection_size: int = Field(960, ge=32, le=8192, description="longer side photos are detected at, in px: "
                                "larger finds smaller faces, slower")
    score_threshold: float = Field(0.7, ge=0.0, le=1.0, description="lowest detector score kept")
    min_face_size: float = Field(20, ge=0, le=10_000, description="smallest face kept, in px")
    max_faces: int = Field(50, ge=1, le=10_000, description="most faces analysed per photo, the largest first; "
                           "each result's `faces_found` says how many there were")


DETECTION_OPTIONS = tuple(DetectionOptions.model_fields)
# The overlap (IoU) above which non-maximum suppression keeps only the higher-scoring of two boxes: fixed,
# not an option, and declared here beside the options so the model card can state it without loading
# the detector.
NMS_THRESHOLD = 0.4


def default(name: str) -> Any:
    return DetectionOptions.model_fields[name].default


def bounds(name: str) -> tuple[float, float]:
    """(lowest, highest) value the option takes, both included."""
    field = DetectionOptions.model_fields[name]
    low = next(m.ge for m in field.metadata if hasattr(m, "ge"))
    high = next(m.le for m in field.metadata if hasattr(m, "le"))
    return low, high


def kind(name: str) -> type:
    """The option's Python type (int or float)."""
    return DetectionOptions.model_fields[name].annotation


def describe(name: str) -> str:
    """The option's meaning in words, with its default: a flag's help text."""
    return f"{DetectionOptions.model_fields[name].description} (default {default(name)})"


def check_detection_options(detection: dict[str, Any]) -> None:
    """A call's options (None: the predictor's own): TypeError naming an unknown one, ValueError one out
    of its bounds."""
    unknown = set(detection) - set(DETECTION_OPTIONS)
    if unknown:
        raise TypeError(f"unknown detection option(s) {', '.join(sorted(unknown))}; known: {', '.join(DETECTION_OPTIONS)}")
    for option, value in detection.items():
        low, high = bounds(option)
        if value is not None and not low <= value <= high:
            raise ValueError(f"{option} must be between {low} and {high}, not {value}")


def parameters(make: Callable[[str], Any]) -> list[inspect.Parameter]:
    """One keyword parameter per option, of its type or None, with `make(name)` as its default (a
    typer.Option, a fastapi.Query): how a command's flags and the API's query parameters are made from
    this one declaration. None: not given, the predictor's or the server's own value."""
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=make(name),
                              annotation=Optional[kind(name)]) for name in DETECTION_OPTIONS]
