"""Training's data step: the data sets in, each split on its own (by person where it names people),
and what a model trained on them must say about them (names, licences, counts) out."""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facescope import labels
from facescope.data import FaceRecord, detect_format, load_dataset
from facescope.data.loaders import FORMATS
from facescope.data.splits import SPLITS, assign_splits, read_split_manifest, write_split_manifest
from facescope.faces.align import Framing
from facescope.faces.crops import build_crops
from facescope.heads import Head
from facescope.paths import cache_dir, data_root
from facescope.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    records: list[FaceRecord]
    splits: list[str]  # each record's split: train / val / test
    mix: dict[str, float]  # data set -> its weight in each batch (empty: in proportion to size)

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]

    def heads(self, index: list[int]) -> tuple[Head, ...]:
        """The outputs the records at `index` can teach, and only those: gender where any has a gender;
        race in the finest taxonomy that every race label maps onto (FairFace's 7 teach with UTKFace's 5);
        age as a distribution over years where any has an exact age (age groups then teach it too), over
        the 9 age groups where all have groups only."""
        records = [self.records[i] for i in index]
        heads = []
        if any(r.gender for r in records):
            heads.append(Head("gender", "label", labels.GENDER.name))
        races = {r.taxonomy for r in records if r.race is not None}
        if races:
            finest = [t for t in sorted(races) if all(o == t or (t, o) in labels.RACE_MAPPINGS for o in races)]
            if not finest:
                raise ValueError(f"the data sets' races are in taxonomies {sorted(races)}, and none of them is a "
                                 "finer split of the others: no one race head can learn from them all")
            heads.append(Head("race", "label", finest[0]))
        if any(r.age_years is not None for r in records):
            heads.append(Head("age", "age_years"))
        elif any(r.age_bin is not None for r in records):
            heads.append(Head("age", "age_bins"))
        if not heads:
            raise ValueError("the training records carry no gender, race or age label: nothing to learn")
        return tuple(heads)

    def provenance(self) -> list[dict]:
        """Per data set: its name, title, licence and counts (per split; the training split by label)."""
        described = []
        for name in sorted({r.dataset for r in self.records}):
            spec = FORMATS.get(name, FORMATS["manifest"])
            members = [(r, s) for r, s in zip(self.records, self.splits) if r.dataset == name]
            train = [r for r, s in members if s == "train"]
            described.append({
                "name": name, "title": spec.title, "licence": spec.licence, "description": spec.description,
                "splits": {split: sum(s == split for _, s in members) for split in SPLITS},
                "people": len({r.person for r, _ in members if r.person}) or None,
                "train_by_gender": dict(Counter(r.gender for r in train if r.gender)),
                "train_by_race": dict(Counter(r.race for r in train if r.race)),
                "train_by_age_bin": dict(Counter(r.age_bin for r in train if r.age_bin)),
                "weight": self.mix.get(name),
            })
        return described

    def gender_weights(self, index: list[int]) -> torch.Tensor:
        """Per-sample loss weights under which women and men weigh the same within each data set, and
        each data set keeps its total weight (records without a gender: 1)."""
        counts = Counter((self.records[i].dataset, self.records[i].gender) for i in index)
        labelled, genders = Counter(), Counter()
        for (dataset, gender), n in counts.items():
            if gender:
                labelled[dataset] += n
                genders[dataset] += 1
        return torch.tensor([
            1.0 if r.gender is None else labelled[r.dataset] / (genders[r.dataset] * counts[(r.dataset, r.gender)])
            for r in (self.records[i] for i in index)
        ])

    def sample_weights(self, index: list[int], balance: str = "none") -> torch.Tensor | None:
        """Per-sample draw weights (mean 1): each data set drawn with its share of `mix` (default: in
        proportion to its size), and within a data set each balancing group equally often: race x gender
        groups (`balance` "sampler") or genders ("gender_sampler"). None where plain shuffling already does."""
        keys = {"sampler": lambda r: (r.race, r.gender), "gender_sampler": lambda r: r.gender}.get(balance)
        if not self.mix and keys is None:
            return None
        records = [self.records[i] for i in index]
        sizes = Counter(r.dataset for r in records)
        shares = {name: (self.mix.get(name, 0.0) if self.mix else size) for name, size in sizes.items()}
        groups = Counter((r.dataset, keys(r)) for r in records) if keys else Counter(r.dataset for r in records)
        per_dataset = Counter(dataset for dataset, _ in groups) if keys else Counter(dict.fromkeys(sizes, 1))
        weights = torch.tensor([
            shares[r.dataset] / per_dataset[r.dataset] / groups[(r.dataset, keys(r)) if keys else r.dataset]
            for r in records
        ])
        return weights / weights.mean()


def calibration_crops(run_splits: Path, count: int, size: int, framing: Framing, seed: int = 0) -> np.ndarray:
    """Aligned crops of a seeded sample of `count` faces from a run's training split (its split manifest):
    what int8 quantization calibrates its ranges on, so they are the ranges the network saw in training."""
    if not run_splits.is_file():
        raise FileNotFoundError(f"{run_splits} is missing")
    records = [r for r in read_split_manifest(run_splits).records if r.partition == "train"]
    if not records:
        raise ValueError(f"{run_splits}: no training records")
    sample = random.Random(seed).sample(records, min(count, len(records)))
    return build_crops(sample, size, framing).only_found()[0]


def data_sources(config: TrainConfig) -> list[tuple[Path, float | None]]:
    """(path, mixing weight or None) of each data set the config names."""
    entries = config.data if isinstance(config.data, list) else [config.data] if config.data else []
    sources = []
    for entry in entries:
        path, weight = (entry.get("path"), entry.get("weight")) if isinstance(entry, dict) else (entry, None)
        path = str(path).replace("${FACESCOPE_DATA}", str(data_root())).replace("${FACESCOPE_CACHE}", str(cache_dir()))
        sources.append((Path(path), weight))
    return sources


def prepare_data(config: TrainConfig, run_splits: Path) -> TrainingData:
    """The records and their splits (from `config.splits`, or made per data set with the config's
    fractions and seed); writes them as the run's split manifest."""
    sources = data_sources(config)
    if any(w is not None for _, w in sources) and not all(w is not None for _, w in sources):
        raise ValueError("give every data set a weight, or none")
    mix = {detect_format(path): float(weight) for path, weight in sources if weight is not None}
    if config.splits:
        dataset = read_split_manifest(config.splits)
        records, splits = dataset.records, [r.partition or "" for r in dataset.records]
    else:
        records, splits = [], []
        for path, _ in sources:
            dataset = load_dataset(path)
            records += dataset.records
            # Each data set on its own: adding one never moves another's records between splits.
            splits += assign_splits(dataset.records, config.val_fraction, config.test_fraction, config.seed)
    write_split_manifest(records, splits, run_splits)
    return TrainingData(records, splits, mix)
