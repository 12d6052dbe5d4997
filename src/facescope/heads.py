"""What a model answers, declared once: one `Head` per output.

A head has a name (its key in every answer: `age`, `gender`, `race`, or a new output's own), a kind, and
for a label head the taxonomy of its classes (facescope.labels). The network builds one linear layer per
head, the loss learns each head from the record field its `truth` names, the bundle lists its heads,
and the predictor, results, CSV, drawing, API and page loop over them. A new output is one declaration.

Kinds:
- "label": probabilities over a taxonomy's labels. A record's label in a coarser taxonomy teaches it
  through the taxonomy mapping (labels.fine_classes).
- "age_years": a distribution over whole years 0..MAX_AGE; the 9 age groups are sums over it, so an
  age-group label (FairFace) teaches it through the probability mass inside its group.
- "age_bins": a distribution over the 9 age groups only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from facescope import labels

KINDS = ("label", "age_years", "age_bins")


@dataclass(frozen=True)
class Head:
    name: str
    kind: str
    taxonomy: str | None = None  # label heads: the taxonomy of the classes (labels.taxonomy)
    truth: str | None = None  # the FaceRecord field it learns from (`gender`, `race`, `age`); default: its name

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"head {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == "label") != (self.taxonomy is not None):
            raise ValueError(f"head {self.name!r}: a label head names its taxonomy, an age head none")
        if self.taxonomy is not None:
            labels.taxonomy(self.taxonomy)  # raises for an unknown one

    @property
    def labels(self) -> tuple[str, ...]:
        """The classes of the head's output, in order."""
        if self.kind == "label":
            return labels.taxonomy(self.taxonomy).labels
        if self.kind == "age_years":
            return tuple(str(year) for year in range(labels.MAX_AGE + 1))
        return labels.AGE_BIN_LABELS

    @property
    def answers(self) -> tuple[str, ...]:
        """What the head answers with: a label head its labels, an age head the 9 age groups."""
        return labels.AGE_BIN_LABELS if self.is_age else self.labels

    @property
    def learns_from(self) -> str:
        return self.truth or self.name

    @property
    def is_age(self) -> bool:
        return self.kind != "label"

    def describe(self) -> str:
        """The head in words: `gender (Female, Male)`, `race (utkface5: White, Black, ...)` (the taxonomy
        named where it is not the head's own name); an age head is its name."""
        if self.is_age:
            return self.name
        taxonomy = "" if self.taxonomy == self.name else f"{self.taxonomy}: "
        return f"{self.name} ({taxonomy}{', '.join(self.labels)})"

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, values: dict) -> "Head":
        return cls(**values)


def standard_heads(race_taxonomy: str = "fairface7", age: str = "age_years") -> tuple[Head, ...]:
    """The three outputs every facescope model has had: gender, race (in `race_taxonomy`) and age."""
    return (Head("gender", "label", labels.GENDER.name), Head("race", "label", race_taxonomy), Head("age", age))


def labels_by_output(heads: tuple[Head, ...]) -> dict[str, list[str]]:
    """What each output answers with, by name: a label head's labels under its name, an age head's 9 age
    groups under `<name>_bins` (as the API's model description lists them)."""
    return {f"{head.name}_bins" if head.is_age else head.name: list(head.answers) for head in heads}


# An answer withheld: the head's top probability was below the confidence threshold asked for. Its
# probabilities are still given; only the label (or the age group) is replaced.
UNCERTAIN = "uncertain"
# The confidence (top probability; for the age head, its most likely age group's) below which the CLI,
# the API and the web page answer UNCERTAIN unless asked otherwise. A two-way gender answer under 60%
# is a near coin toss; seven races and nine age groups spread their probability wider, so their bars
# are lower. What these cost each group is measured by `evaluate` and shown on the model card.
DEFAULT_THRESHOLDS: dict[str, float] = {"gender": 0.6, "race": 0.4, "age": 0.3}


def describe_thresholds(thresholds: dict[str, float] = DEFAULT_THRESHOLDS) -> str:
    """Thresholds in words, as the card and the report give them: `gender 60%, race 40%, age 30%`."""
    return ", ".join(f"{head} {bar:.0%}" for head, bar in thresholds.items())


def parse_thresholds(given: list[str] | str | None, heads: tuple[Head, ...] | None = None) -> dict[str, float]:
    """Confidence thresholds from `head=value` items ("gender=0.7", or "gender=0.7,race=0.5"), over
    DEFAULT_THRESHOLDS; "none" (or "") answers everything. A ValueError names a bad item."""
    if given is None:
        return dict(DEFAULT_THRESHOLDS)
    items = [part.strip() for item in ([given] if isinstance(given, str) else given) for part in item.split(",")]
    if items in ([], [""], ["none"]):
        return {}
    thresholds = dict(DEFAULT_THRESHOLDS)
    known = [h.name for h in heads] if heads else None
    for item in items:
        name, _, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"threshold {item!r}: write HEAD=VALUE, e.g. gender=0.7") from None
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"threshold {item!r}: the value is a probability between 0 and 1")
        if known is not None and name not in known:
            raise ValueError(f"threshold {item!r}: the model has no head {name!r} (it has {', '.join(known)})")
        thresholds[name] = number
    return thresholds
