"""How often each answer is wrong for faces like this one, and answers withheld below a confidence bar.

`ErrorFigures` reads the figures a bundle keeps by *estimated* group (model.json's
evaluation.by_estimated_group, made by `facescope evaluate --update-bundle`) and pairs each estimate
with the figure of the most specific group of estimates that has at least `min_faces` test faces:
estimated age group x gender x race, then age group x gender, age group, race, gender, and all test
faces. A two-year-old's gender is thus judged with the other faces estimated 0-2, not with every face of
its race. No PyTorch, no pandas: the server and the CLI use it per face.

`withhold_uncertain` replaces an answer whose top probability is under its head's threshold by
heads.UNCERTAIN, keeping the probabilities (and the figure beside it); the Predictor applies it to every
photo it answers under a call's `thresholds` (inference.predictor.Predictor.estimate_photos).
"""

from __future__ import annotations

from facescope import labels
from facescope.bundles.contract import BundleInfo
from facescope.heads import UNCERTAIN
from facescope.inference.results import AgeEstimate, Estimates, ImageResult, LabelEstimate, MeasuredError

OVERALL = ("overall", "all")


class ErrorFigures:
    """A bundle's figures by estimated group, and the lookup of one estimate's figure."""

    def __init__(self, info: BundleInfo):
        section = (info.evaluation or {}).get("by_estimated_group") or {}
        self.groupings: dict[str, list[str]] = section.get("groupings", {})
        self.figures: dict[str, dict[str, dict]] = section.get("figures", {})
        self.min_faces: int = section.get("min_faces", 30)
        self.race_taxonomy: str | None = section.get("race_taxonomy")
        self.model_race_taxonomy = info.race_taxonomy

    def __bool__(self) -> bool:
        return bool(self.figures)

    def attach(self, estimates: Estimates) -> Estimates:
        """`estimates` with each head's `measured` figure filled in where the bundle has one."""
        if not self:
            return estimates
        values = self._group_values(estimates)
        for name, value in estimates:
            if isinstance(value, AgeEstimate):
                value.measured = self.lookup(("age_mae", "age_bin_accuracy"), values, "age")
            elif isinstance(value, LabelEstimate):
                value.measured = self.lookup((f"{name}_accuracy",), values, name)
        return estimates

    def _group_values(self, estimates: Estimates) -> dict[str, str]:
        """The face's estimate of every head, as the figures' groups name them: the most likely label of
        a label head (a race in the figures' taxonomy), the most likely age group of an age head. Only
        the heads the groupings name are looked up."""
        values = {}
        for name, value in estimates:
            if isinstance(value, AgeEstimate):
                values["age_bin"] = max(value.bin_probs, key=value.bin_probs.get)
            elif isinstance(value, LabelEstimate):
                probs = value.probs
                source, target = self.model_race_taxonomy, self.race_taxonomy
                if name == "race" and source and target and source != target and (source, target) in labels.RACE_MAPPINGS:
                    probs = labels.coarse_probabilities(probs, source, target)
                values[name] = max(probs, key=probs.get)
        return values

    def lookup(self, figures: tuple[str, ...], values: dict[str, str], head: str) -> MeasuredError | None:
        """The first of `figures` measured on at least min_faces test faces, in the most specific group
        of the face's `values` that has it."""
        candidates = [(grouping, " / ".join(values[c] for c in columns))
                      for grouping, columns in self.groupings.items() if all(c in values for c in columns)]
        for grouping, group in [*candidates, OVERALL]:
            measured = self.figures.get(grouping, {}).get(group, {})
            for figure in figures:
                found = measured.get(figure)
                if found and found["faces"] >= self.min_faces:
                    return _measured(head, figure, found, grouping, group)
        return None


def _measured(head: str, figure: str, found: dict, grouping: str, group: str) -> MeasuredError:
    who = ("all test faces" if (grouping, group) == OVERALL
           else "faces estimated " + ", ".join(part.replace("_", " ") for part in group.split(" / ")))
    value = found["value"]
    if figure == "age_mae":
        words = f"age off by {value:.1f} years on average for {who}"
    else:
        words = f"{'age group' if figure == 'age_bin_accuracy' else head} right {value:.0%} for {who}"
    return MeasuredError(figure=figure, value=value, interval=found.get("interval"), faces=found["faces"],
                         grouping=grouping, group=group, text=f"{words} ({found['faces']:,} test faces)")


def withhold_uncertain(estimates: Estimates, thresholds: dict[str, float]) -> Estimates:
    """Each answer whose top probability is below its head's threshold becomes UNCERTAIN (an age's
    group, and its years with it); probabilities and measured figures stay."""
    for name, value in estimates:
        threshold = thresholds.get(name)
        if not threshold:
            continue
        if isinstance(value, AgeEstimate) and max(value.bin_probs.values()) < threshold:
            value.bin, value.years, value.years_std = UNCERTAIN, None, None
        elif isinstance(value, LabelEstimate) and max(value.probs.values()) < threshold:
            value.label = UNCERTAIN
    return estimates


def withhold_uncertain_faces(result: ImageResult, thresholds: dict[str, float]) -> ImageResult:
    """withhold_uncertain for every face of a photo, every model's estimates."""
    for face in result.faces:
        withhold_uncertain(face, thresholds)
        for estimates in face.by_model.values():
            withhold_uncertain(estimates, thresholds)
    return result
