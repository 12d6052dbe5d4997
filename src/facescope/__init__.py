"""facescope: age, gender and race estimates from face photos, with fairness audits built in.

Estimates describe a face's appearance, with error rates that differ by group; they are not facts
about a person. See the model card (src/facescope/models/default/MODEL_CARD.md) before any use.
"""

import os

__version__ = "0.1.0"

# onnxruntime otherwise writes a telemetry database (with the program's path and error messages) under
# ~/.cache/Microsoft/DeveloperTools/ as soon as it is imported: facescope writes nothing it was not asked
# to. Set here, before any facescope module imports onnxruntime; an explicit ORT_DISABLE_TELEMETRY=0 wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def __getattr__(name: str):
    # `from facescope import Predictor` without importing onnxruntime for every other use.
    if name == "Predictor":
        from facescope.inference.predictor import Predictor

        return Predictor
    raise AttributeError(name)
