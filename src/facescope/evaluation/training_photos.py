"""Which photos of a data set a facescope model trained on, so that an audit of its own predictions
never scores it on faces it has seen.

A bundle's model.json lists the data sets it trained on with each split's size
(training_data.datasets[].splits); training splits a data set with data.splits.assign_splits and the
run's seed and fractions (training_data.split where recorded, else the ones its evaluation used, else
the defaults). The audit's data set is split the same way and the sizes must match, else the photos
cannot be told apart and the audit refuses unless given the run's split manifest (splits.csv), whose
`partition` column says it outright. Validation photos count as seen: they chose the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from facescope.bundles import BundleInfo, read_bundle_info
from facescope.bundles.registry import installed_models
from facescope.data import FaceRecord
from facescope.data.splits import assign_splits, manifest_path, read_split_manifest

SEEN = ("train", "val")


class TrainingPhotosUnknown(ValueError):
    """The photos a model trained on cannot be told from the others."""


def find_model(name: str, bundle: str | Path | None = None) -> BundleInfo:
    """The model that made a predictions file: the bundle given, else the installed model whose
    model.json name (or folder name) is `name`."""
    if bundle is not None:
        return read_bundle_info(bundle)
    for folder_name, _, info in installed_models():
        if isinstance(info, BundleInfo) and name in (info.name, folder_name):
            return info
    raise TrainingPhotosUnknown(
        f"the predictions were made by facescope model {name!r}, which is not installed: pass its bundle "
        "(--model) so that the audit can leave out the photos it trained on")


class TrainingSplits:
    """The audited records as training runs split them: each data set is split once per seed and
    fractions, and the run's split manifest read once, however many predictions files ask which photos
    their model saw (an audit of one model's predictions in several files splits once)."""

    def __init__(self, records: list[FaceRecord], manifest: str | Path | None = None):
        self.records, self.manifest = records, manifest
        self._splits: dict[tuple, list[str]] = {}
        self._listed: set[str] | None = None

    def split(self, dataset: str, val_fraction: float, test_fraction: float,
              seed: int) -> list[tuple[FaceRecord, str]]:
        """The records of `dataset` with the split training gives each, in the records' order."""
        key = (dataset, val_fraction, test_fraction, seed)
        members = [r for r in self.records if r.dataset == dataset]
        if key not in self._splits:
            self._splits[key] = assign_splits(members, val_fraction, test_fraction, seed)
        return list(zip(members, self._splits[key]))

    def seen_sources(self, info: BundleInfo) -> set[str]:
        """The sources of the records that model `info` trained or validated on."""
        if self.manifest is not None:
            # Its paths are absolute (write_split_manifest); the audit's data may be relative.
            if self._listed is None:
                self._listed = {r.source for r in read_split_manifest(self.manifest).records if r.partition in SEEN}
            return {r.source for r in self.records if manifest_path(r.source) in self._listed}
        trained = {d["name"]: d.get("splits", {}) for d in info.training_data.get("datasets", [])}
        split = info.training_data.get("split") or info.evaluation or {}
        seed, val, test = split.get("seed", 0) or 0, split.get("val_fraction", 0.1), split.get("test_fraction", 0.1)
        seen: set[str] = set()
        for name in sorted({r.dataset for r in self.records} & set(trained)):
            splits = self.split(name, val, test, seed)
            sizes = {s: sum(1 for _, given in splits if given == s) for s in ("train", "val", "test")}
            if any(sizes[s] != trained[name].get(s, sizes[s]) for s in sizes):
                raise TrainingPhotosUnknown(
                    f"model {info.name!r} trained on {name} split {trained[name]}, but this copy of {name} splits "
                    f"{sizes} (seed {seed}): the photos it trained on cannot be told apart; pass the training run's "
                    "split manifest (--training-splits runs/<run>/splits.csv)")
            seen |= {r.source for r, s in splits if s in SEEN}
        return seen
