"""facescope: age, gender and race estimates from face photos, with fairness audits built in.

Estimates describe a face's appearance, with error rates that differ by group; they are not facts
about a person. See the model card (src/facescope/models/default/MODEL_CARD.md) before any use.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from facescope import Predictor` without importing onnxruntime for every other use.
    if name == "Predictor":
        from facescope.inference.predictor import Predictor

        return Predictor
    raise AttributeError(name)
