"""Aligned crops of a data set's records, made once and cached (for training and evaluation).

Each record's image goes through `find_faces`, the pipeline prediction uses, with the record's own box
or its data set's face rule, so a network learns, and is scored, on the framing it sees on photos. The
cache holds that function's output and nothing else: one uint8 array per set of records, framing and
crop size, and each record's outcome (found, no face, unreadable).
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from facescope.data.loaders import UTK48_HEADER, face_rule, utk48_labelled, utk48_row
from facescope.data.records import FaceRecord
from facescope.faces.align import CANONICAL, Framing
from facescope.faces.detect import DETECTION_SIZE, MIN_FACE_SIZE, SCORE_THRESHOLD, FaceDetector
from facescope.faces.intake import ImageReadError, read_image
from facescope.faces.pipeline import find_faces
from facescope.paths import cache_dir as default_cache_dir

log = logging.getLogger(__name__)
_detector: FaceDetector | None = None
NO_FACE = "no face found"


def record_image(record: FaceRecord) -> np.ndarray:
    """The record's image as RGB uint8 (the 48x48 CSV's grey pixels included)."""
    if record.pixels is not None:
        return np.repeat(record.pixels[:, :, None], 3, axis=2)
    return read_image(record.source)


def record_crop(record: FaceRecord, size: int, framing: Framing = CANONICAL) -> np.ndarray | None:
    """The aligned crop of the record's labelled face, or None where that face is not found."""
    global _detector
    rule = face_rule(record)
    if _detector is None and (rule != "aligned" or record.box is not None):
        _detector = FaceDetector(threads=1)
    faces, _ = find_faces(record_image(record), size, framing, rule, _detector, box=record.box)
    return faces[0].crop if faces else None


def _crop_or_outcome(args: tuple[FaceRecord, int, Framing]) -> tuple[np.ndarray | None, str]:
    try:
        crop = record_crop(*args)
    except ImageReadError as error:
        return None, f"unreadable: {error}"
    return (crop, "aligned") if crop is not None else (None, NO_FACE)


class AlignedCrops(NamedTuple):
    images: np.ndarray  # N x size x size x 3 uint8 (memory-mapped from the cache); black where not found
    found: np.ndarray  # N bools: False where the image was unreadable or its face not found
    outcomes: dict[str, int]  # how many records had each outcome

    def only_found(self) -> tuple[np.ndarray, np.ndarray]:
        """(crops of the faces found, their indices); no copy when all were found."""
        if self.found.all():
            return self.images, np.arange(len(self.images))
        index = np.flatnonzero(self.found)
        return self.images[index], index


def build_crops(records: list[FaceRecord], size: int, framing: Framing = CANONICAL, cache_dir: Path | None = None,
                workers: int = 2) -> AlignedCrops:
    """Aligned crops for `records`, from the cache where it has them. An image that cannot be read, or
    whose labelled face is not found, is logged, counted and marked in `found`, never learned from."""
    detector = [DETECTION_SIZE, SCORE_THRESHOLD, MIN_FACE_SIZE]  # the settings record_crop's detector uses
    key = hashlib.sha256(json.dumps(
        [[(r.source, r.dataset, r.box) for r in records], size, framing.to_json(), [face_rule(r) for r in records],
         detector]
    ).encode()).hexdigest()[:16]
    cache = Path(cache_dir or default_cache_dir()) / f"crops-{size}-{key}"
    if all((cache / name).exists() for name in ("crops.npy", "found.npy", "outcomes.json")):
        log.info("aligned crops from cache %s", cache)
        return AlignedCrops(np.load(cache / "crops.npy", mmap_mode="r"), np.load(cache / "found.npy"),
                            json.loads((cache / "outcomes.json").read_text()))
    crops = np.zeros((len(records), size, size, 3), dtype=np.uint8)
    found = np.zeros(len(records), dtype=bool)
    outcomes: dict[str, int] = {}
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_crop_or_outcome, [(r, size, framing) for r in records], chunksize=64)
        for index, (crop, how) in enumerate(tqdm(results, total=len(records), desc="aligning faces", unit="img")):
            if crop is None:
                log.warning("%s: %s", records[index].source, how)
                how = how.split(":")[0]
            else:
                crops[index], found[index] = crop, True
            outcomes[how] = outcomes.get(how, 0) + 1
    log.info("aligned crops: %s", outcomes)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "crops.npy", crops)
    np.save(cache / "found.npy", found)
    (cache / "outcomes.json").write_text(json.dumps(outcomes, indent=2))
    return AlignedCrops(np.load(cache / "crops.npy", mmap_mode="r"), found, outcomes)


def write_utk48_csv(records: list[FaceRecord], path: Path, cache_dir: Path | None = None) -> tuple[int, int]:
    """The records' faces as the UTK 48x48 grey CSV one seed project used (age, ethnicity, gender,
    img_name, pixels), aligned by the face pipeline; returns (rows written, faces not found). Ethnicity
    and gender use UTKFace's codes, so only records with all three labels in UTKFace's taxonomy are written."""
    usable = [r for r in records if utk48_labelled(r)]
    if not usable:
        lacking = [name for name, has in (("age in years", lambda r: r.age_years is not None),
                                          ("gender", lambda r: r.gender),
                                          ("UTKFace race", lambda r: r.race and r.taxonomy == "utkface5"))
                   if not any(map(has, records))]
        raise ValueError(f"none of the {len(records):,} records can be a row of the 48x48 CSV, which needs an age "
                         "in years, a gender and a UTKFace race label" +
                         (f"; no record has a label for {', '.join(lacking)}" if lacking else "") + "; nothing written")
    aligned = build_crops(usable, 48, cache_dir=cache_dir)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and moved onto it only when it holds a face, so a run that finds none
    # leaves whatever was at `path` as it was.
    partial = path.with_name(path.name + ".partial")
    written = 0
    with partial.open("w", newline="") as handle:
        handle.write(UTK48_HEADER + "\n")
        for record, crop, found in zip(usable, aligned.images, aligned.found):
            if not found:
                continue
            grey = np.rint(crop.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).astype(np.uint8)
            handle.write(utk48_row(record, grey) + "\n")
            written += 1
    if not written:
        partial.unlink()
        raise ValueError(f"no face found in any of the {len(usable):,} photos; nothing written")
    partial.replace(path)
    return written, len(usable) - written
