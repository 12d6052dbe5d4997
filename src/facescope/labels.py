"""The one label schema of facescope: genders, race taxonomies, age bins, and the mappings between them.

Every loader, model head, report and API answer speaks these names. A model stores the *name* of its
taxonomies in its bundle (facescope.heads); everything else (labels, order, mappings) is looked up here.
A coarser taxonomy is a mapping from a finer one: a coarse label teaches a fine head through it (the
coarse class's probability is the sum of its fine classes'), and a fine answer has a coarse view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GENDERS: tuple[str, ...] = ("Female", "Male")


@dataclass(frozen=True)
class Taxonomy:
    """A named, ordered set of labels (the order is a model head's class order)."""

    name: str
    labels: tuple[str, ...]

    def index(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"{label!r} is not a {self.name} label; expected one of {self.labels}") from None


GENDER = Taxonomy("gender", GENDERS)
FAIRFACE7 = Taxonomy(
    "fairface7",
    ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"),
)
FAIRFACE4 = Taxonomy("fairface4", ("White", "Black", "Asian", "Indian"))
UTKFACE5 = Taxonomy("utkface5", ("White", "Black", "Asian", "Indian", "Others"))
# DeepFace's six races, as its `analyze` spells them (`dominant_race` and the keys of `race`).
DEEPFACE6 = Taxonomy("deepface6", ("asian", "indian", "black", "white", "middle eastern", "latino hispanic"))

# The race taxonomies data sets and tools label in (GENDER is the gender heads' one).
TAXONOMIES: dict[str, Taxonomy] = {t.name: t for t in (FAIRFACE7, FAIRFACE4, UTKFACE5, DEEPFACE6)}

# FairFace-7 -> the coarser taxonomies. FairFace's own 4-race variant drops Latino_Hispanic and
# Middle Eastern (they have no 4-race counterpart, so they map to None and are left out of a
# FairFace-4 evaluation). UTKFace's "Others" is documented as "Hispanic, Latino, Middle Eastern, ...",
# so both go there; East and Southeast Asian are both UTKFace's "Asian".
RACE_MAPPINGS: dict[tuple[str, str], dict[str, str | None]] = {
    ("fairface7", "fairface4"): {
        "White": "White",
        "Black": "Black",
        "Latino_Hispanic": None,
        "East Asian": "Asian",
        "Southeast Asian": "Asian",
        "Indian": "Indian",
        "Middle Eastern": None,
    },
    ("fairface7", "utkface5"): {
        "White": "White",
        "Black": "Black",
        "Latino_Hispanic": "Others",
        "East Asian": "Asian",
        "Southeast Asian": "Asian",
        "Indian": "Indian",
        "Middle Eastern": "Others",
    },
    # DeepFace's "asian" does not say East or Southeast, so it has no FairFace-7 counterpart; its "middle
    # eastern" and "latino hispanic" are UTKFace's "Others" and have no FairFace-4 counterpart.
    ("deepface6", "utkface5"): {
        "asian": "Asian", "indian": "Indian", "black": "Black", "white": "White",
        "middle eastern": "Others", "latino hispanic": "Others",
    },
    ("deepface6", "fairface4"): {
        "asian": "Asian", "indian": "Indian", "black": "Black", "white": "White",
        "middle eastern": None, "latino hispanic": None,
    },
    ("deepface6", "fairface7"): {
        "asian": None, "indian": "Indian", "black": "Black", "white": "White",
        "middle eastern": "Middle Eastern", "latino hispanic": "Latino_Hispanic",
    },
}


def taxonomy(name: str) -> Taxonomy:
    if name == GENDER.name:
        return GENDER
    try:
        return TAXONOMIES[name]
    except KeyError:
        raise ValueError(f"unknown taxonomy {name!r}; known: {sorted([GENDER.name, *TAXONOMIES])}") from None


def fine_classes(label: str, label_taxonomy: str, head_taxonomy: str) -> list[int]:
    """The classes of a head in `head_taxonomy` that a label in `label_taxonomy` stands for: the label
    itself where the taxonomies are one, every fine class mapping to it where the head's is finer
    (UTKFace's "Asian" is FairFace's East and Southeast Asian); a ValueError where neither holds."""
    head = taxonomy(head_taxonomy)
    if label_taxonomy == head_taxonomy:
        return [head.index(label)]
    if (head_taxonomy, label_taxonomy) not in RACE_MAPPINGS:
        raise ValueError(f"a {label_taxonomy} label cannot teach a {head_taxonomy} head: no mapping between them")
    taxonomy(label_taxonomy).index(label)
    mapping = RACE_MAPPINGS[(head_taxonomy, label_taxonomy)]
    return [head.index(fine) for fine, coarse in mapping.items() if coarse == label]


def coarse_probabilities(probs: dict[str, float], source: str, target: str) -> dict[str, float]:
    """A fine head's probabilities seen in a coarser taxonomy: each coarse class the sum of its fine ones
    (a fine class with no counterpart, FairFace-4's Latino_Hispanic, leaves its share out)."""
    coarse = {label: 0.0 for label in taxonomy(target).labels}
    for label, p in probs.items():
        mapped = map_race(label, source, target)
        if mapped is not None:
            coarse[mapped] += p
    return coarse


def map_race(label: str, source: str, target: str) -> str | None:
    """Map a race label between taxonomies; None where the target has no counterpart."""
    if source == target:
        taxonomy(source).index(label)
        return label
    try:
        mapping = RACE_MAPPINGS[(source, target)]
    except KeyError:
        raise ValueError(f"no mapping from {source} to {target}; known: {sorted(RACE_MAPPINGS)}") from None
    if label not in mapping:
        raise ValueError(f"{label!r} is not a {source} race label")
    return mapping[label]


# The 9 FairFace age bins: (label, first year, last year); the last is open-ended.
AGE_BINS: tuple[tuple[str, int, float], ...] = (
    ("0-2", 0, 2),
    ("3-9", 3, 9),
    ("10-19", 10, 19),
    ("20-29", 20, 29),
    ("30-39", 30, 39),
    ("40-49", 40, 49),
    ("50-59", 50, 59),
    ("60-69", 60, 69),
    ("70+", 70, math.inf),
)
AGE_BIN_LABELS: tuple[str, ...] = tuple(label for label, _, _ in AGE_BINS)
# FairFace's CSV writes the last bin as "more than 70".
_AGE_BIN_ALIASES = {"more than 70": "70+"}

# The age head predicts a distribution over whole years 0..MAX_AGE (older ages are clipped to it).
MAX_AGE = 100


def age_to_bin(years: float) -> str:
    """The FairFace bin of an age in years (whole years: 2.9 is still in 0-2)."""
    if years is None or not math.isfinite(years) or years < 0:
        raise ValueError(f"age must be a non-negative number of years, got {years!r}")
    whole = math.floor(years)
    for label, low, high in AGE_BINS:
        if low <= whole <= high:
            return label
    raise AssertionError("unreachable: the last bin is open-ended")


# How far past its group's last year an age kept inside the group may go: rounded to whole years (as the
# page and annotated photos show it), it stays in the group.
YEARS_INSIDE_GROUP = 0.49


def years_inside_bin(years: float, bin_label: str) -> float:
    """`years` moved to the nearest age inside the age group `bin_label` (unchanged if already in it): an
    expected age and a most likely group made one decision."""
    _, low, high = AGE_BINS[AGE_BIN_LABELS.index(bin_label)]
    return min(max(years, low), high + YEARS_INSIDE_GROUP)


def normalise_age_bin(label: str) -> str:
    label = _AGE_BIN_ALIASES.get(label.strip(), label.strip())
    if label not in AGE_BIN_LABELS:
        raise ValueError(f"{label!r} is not a FairFace age bin; expected one of {AGE_BIN_LABELS}")
    return label


def year_to_bin_index() -> list[int]:
    """For each whole year 0..MAX_AGE, the index of its bin: sums over years give bin probabilities."""
    return [AGE_BIN_LABELS.index(age_to_bin(y)) for y in range(MAX_AGE + 1)]
