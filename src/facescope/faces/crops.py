"""Aligned crops of a dataset's records, made once and cached (for training and evaluation).

Every record's image goes through the same detector and aligner that prediction uses, so the network
learns, and is scored, on the framing it sees on photos. The crops are cached as one uint8 array per dataset and
crop size (keyed by the sources, the size and the template), so later runs skip detection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from facescope.data.records import FaceRecord
from facescope.faces.align import TEMPLATE, align_face, resize_crop
from facescope.faces.detect import FaceDetector
from facescope.faces.intake import ImageReadError, read_image

log = logging.getLogger(__name__)
_detector: FaceDetector | None = None


def default_cache_dir() -> Path:
    return Path(os.environ.get("FACESCOPE_CACHE", Path.home() / ".cache" / "facescope"))


def record_image(record: FaceRecord) -> np.ndarray:
    """The record's image as RGB uint8 (the 48x48 CSV's grey pixels included)."""
    if record.pixels is not None:
        return np.repeat(record.pixels[:, :, None], 3, axis=2)
    return read_image(record.source)


def aligned_crop(record: FaceRecord, size: int) -> tuple[np.ndarray, str]:
    """(crop, how): the aligned crop of the record's largest face. Where no face is found the whole image
    is resized instead (dataset crops such as UTKFace's are already close to the canonical framing)."""
    global _detector
    if _detector is None:
        _detector = FaceDetector(threads=1)
    image = record_image(record)
    faces = _detector.detect(image) if min(image.shape[:2]) >= 64 else []
    if faces:
        return align_face(image, faces[0].landmarks, size), "aligned"
    return resize_crop(image, size), "no face found: whole image resized"


def _crop_or_error(args: tuple[FaceRecord, int]) -> tuple[np.ndarray | None, str]:
    record, size = args
    try:
        return aligned_crop(record, size)
    except ImageReadError as error:
        return None, str(error)


class AlignedCrops(NamedTuple):
    images: np.ndarray  # N x size x size x 3 uint8 (memory-mapped from the cache)
    readable: np.ndarray  # N bools: False where the image could not be read (its crop is black)

    def only_readable(self) -> tuple[np.ndarray, np.ndarray]:
        """(crops of the readable images, their indices); no copy when all were readable."""
        if self.readable.all():
            return self.images, np.arange(len(self.images))
        index = np.flatnonzero(self.readable)
        return self.images[index], index


def build_crops(records: list[FaceRecord], size: int, cache_dir: Path | None = None, workers: int = 2) -> AlignedCrops:
    """Aligned crops for `records`, from the cache where it has them. An image that cannot be read is
    logged and marked in `readable`, never silently learned from."""
    key = hashlib.sha256(
        json.dumps([[r.source for r in records], size, TEMPLATE.tolist()]).encode()
    ).hexdigest()[:16]
    cache = Path(cache_dir or default_cache_dir()) / f"crops-{size}-{key}"
    if (cache / "crops.npy").exists() and (cache / "readable.npy").exists():
        log.info("aligned crops from cache %s", cache)
        return AlignedCrops(np.load(cache / "crops.npy", mmap_mode="r"), np.load(cache / "readable.npy"))
    crops = np.zeros((len(records), size, size, 3), dtype=np.uint8)
    readable = np.ones(len(records), dtype=bool)
    outcomes: dict[str, int] = {}
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_crop_or_error, [(r, size) for r in records], chunksize=64)
        for index, (crop, how) in enumerate(tqdm(results, total=len(records), desc="aligning faces", unit="img")):
            if crop is None:
                log.warning("unreadable: %s", how)
                how = "unreadable"
                readable[index] = False
            else:
                crops[index] = crop
            outcomes[how] = outcomes.get(how, 0) + 1
    log.info("aligned crops: %s", outcomes)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "crops.npy", crops)
    np.save(cache / "readable.npy", readable)
    (cache / "outcomes.json").write_text(json.dumps(outcomes, indent=2))
    return AlignedCrops(np.load(cache / "crops.npy", mmap_mode="r"), readable)
