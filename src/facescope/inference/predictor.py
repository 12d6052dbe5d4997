"""The predictor: photos in, typed results out, on onnxruntime (no PyTorch).

    from facescope import Predictor
    predictor = Predictor()                  # the bundled default model
    faces = predictor.predict("photo.jpg")   # list[FaceResult], largest face first

A photo goes: read_photo (faces.intake) -> find_faces (faces.pipeline: detect, then align to the
bundle's framing) -> LoadedBundle.run (bundles.contract: the bundle's declared input and outputs, one
batched ONNX run) -> FaceResult (inference.results). Several models (`also=[...]`) share one detection
pass: each face is aligned once per model's framing. A call's `thresholds` (by head name, as
heads.parse_thresholds gives them) turn each answer less likely than its head's bar into heads.UNCERTAIN,
probabilities kept: every engine and the server answer through this one place.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facescope import labels
from facescope.heads import Head
from facescope.bundles import BundleInfo, LoadedBundle, load_bundle, resolve_bundle
from facescope.faces import FaceDetector, ImageReadError, Photo, align_face, find_faces, read_photo
from facescope.faces.detect import DETECTION_SIZE, MIN_FACE_SIZE, SCORE_THRESHOLD
from facescope.faces.options import check_detection_options, default
from facescope.faces.intake import Channels
from facescope.inference.error_figures import ErrorFigures, withhold_uncertain_faces
from facescope.inference.results import AgeEstimate, Estimates, FaceResult, ImageResult, LabelEstimate

# What `predict` takes: a path, encoded bytes (bytes, bytearray, memoryview), a binary file object, a PIL
# image, or a numpy array (grey, RGB/BGR or with alpha; uint8 or float). See facescope.faces.read_photo.
ImageSource = object
_YEAR_TO_BIN = np.array(labels.year_to_bin_index())
# An error record for a photo that broke facescope itself (a bug), rather than being unreadable.
INTERNAL_ERROR = "internal error"
MAX_FACES = default("max_faces")
log = logging.getLogger(__name__)


class Predictor:
    """`workers` threads read, detect and align photos side by side (onnxruntime, OpenCV and Pillow
    release the GIL) while the network runs on batches of their crops; `threads` is the network's
    onnxruntime thread count (0: all cores).

    Detection: photos are detected at most `detection_size` px on their longer side (larger finds smaller
    faces, slower), faces scoring under `score_threshold` or smaller than `min_face_size` px are dropped,
    and the largest `max_faces` are analysed. Each `predict*` call can override these.

    Confidence: a `predict*` call given `thresholds` (head name -> probability) answers
    heads.UNCERTAIN for a head whose top probability is below its bar, keeping the probabilities; without
    them (None or {}) every head answers."""

    def __init__(self, model: str | Path | None = None, detector: FaceDetector | None = None,
                 threads: int = 0, max_faces: int = MAX_FACES, batch_size: int = 32, workers: int | None = None,
                 detection_size: int = DETECTION_SIZE, score_threshold: float = SCORE_THRESHOLD,
                 min_face_size: float = MIN_FACE_SIZE, also: Iterable[str | Path] = ()):
        self.also = [str(m) for m in also]  # the keys of each face's by_model: the names as passed
        self.models: list[LoadedBundle] = [load_bundle(resolve_bundle(m), threads) for m in (model, *self.also)]
        # Each model's measured figures by estimated group, paired with every estimate it makes.
        self.error_figures = [ErrorFigures(m.info) for m in self.models]
        self._detector = detector
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.max_faces = max_faces
        self.batch_size = batch_size
        self.detection_size = detection_size
        self.score_threshold = score_threshold
        self.min_face_size = min_face_size

    @property
    def detector(self) -> FaceDetector:
        # Made on first use: `--aligned` runs never need it.
        if self._detector is None:
            # One thread per detection: photos are detected in parallel by the workers instead.
            self._detector = FaceDetector(threads=1)
        return self._detector

    @property
    def info(self) -> BundleInfo:
        """The first model's declarations."""
        return self.models[0].info

    @property
    def input_size(self) -> int:
        return self.info.input_size

    def estimate_crops(self, crops: np.ndarray, model: int = 0) -> list[Estimates]:
        """Estimates for N x S x S x 3 uint8 RGB crops in model `model`'s framing and size, batched."""
        bundle, figures = self.models[model], self.error_figures[model]
        out = []
        for start in range(0, len(crops), self.batch_size):
            probs = bundle.run(crops[start:start + self.batch_size])
            out += [figures.attach(estimates(bundle.info, {name: values[n] for name, values in probs.items()}))
                    for n in range(len(crops[start:start + self.batch_size]))]
        return out

    def predict(self, image: ImageSource, aligned: bool = False, *, channels: Channels = "RGB",
                thresholds: dict[str, float] | None = None, **detection) -> list[FaceResult]:
        """Every face in one image, largest first (at most `max_faces`). `image`: a path, bytes, a binary
        file object, a PIL image or a numpy array (`channels="BGR"` for OpenCV's); anything else is a
        TypeError, an unreadable image an ImageReadError. `thresholds`: each head's confidence bar (see
        the class). `detection`: detection_size, score_threshold, min_face_size, max_faces, overriding the
        predictor's."""
        return self.predict_image(image, aligned, channels=channels, thresholds=thresholds, **detection).faces

    def predict_image(self, image: ImageSource, aligned: bool = False, *, name: str | None = None,
                      channels: Channels = "RGB", thresholds: dict[str, float] | None = None,
                      **detection) -> ImageResult:
        """As `predict`, with the whole answer: the photo's size, faces found and shown, frames."""
        prepared = self._analyse(image, name or _name_of(image), aligned, channels, detection)
        return next(self.estimate_photos([prepared], thresholds))

    def predict_images(self, sources: Iterable[ImageSource], aligned: bool = False,
                       names: Iterable[str] | None = None, *, channels: Channels = "RGB",
                       thresholds: dict[str, float] | None = None, **detection) -> Iterator[ImageResult]:
        """One `ImageResult` per source, in order, answered under `thresholds` as `predict`; faces from
        many photos share network batches, and an unreadable file (or one that breaks facescope: its error
        starts with "internal error") gives a result with `error` set instead of stopping the run."""
        check_detection_options(detection)
        names = iter(names) if names is not None else None
        pending: list[tuple[ImageResult, list, list]] = []
        crops_waiting = 0
        for prepared in self._prepare_all(sources, names, aligned, channels, detection):
            if prepared is not None:
                pending.append(prepared)
                crops_waiting += len(prepared[2])
            # A batch is sent when full, or when the next photo is not ready yet: records then come out
            # as each photo is done rather than when enough faces have piled up.
            if crops_waiting >= self.batch_size or (prepared is None and pending):
                yield from self.estimate_photos(pending, thresholds)
                pending, crops_waiting = [], 0
        yield from self.estimate_photos(pending, thresholds)

    def _prepare_all(self, sources: Iterable[ImageSource], names, aligned: bool, channels: Channels,
                     detection: dict):
        """(result, detections, crops) per source, in order, made by the worker threads a bounded
        number ahead (so a folder of 100,000 photos is never all in memory); None before waiting for
        the next one. Photos not started when the caller stops (Ctrl-C, SIGTERM) are cancelled."""
        ahead = 4 * max(self.batch_size, self.workers)
        with ThreadPoolExecutor(self.workers) as pool:
            window: deque = deque()

            def next_ready():
                if not window[0].done():
                    yield None
                yield window.popleft().result()

            try:
                for source in sources:
                    name = next(names) if names is not None else _name_of(source)
                    window.append(pool.submit(self.prepare_photo, source, name, aligned, channels, detection))
                    if len(window) >= ahead:
                        yield from next_ready()
                while window:
                    yield from next_ready()
            finally:
                for future in window:
                    future.cancel()

    def prepare_photo(self, source: ImageSource, name: str, aligned: bool = False, channels: Channels = "RGB",
                      detection: dict | None = None) -> tuple[ImageResult, list, list]:
        """The first half of prediction, on its own (a Ray task runs it where the photos are): read,
        detect and align one photo. Returns (result without estimates, faces, each face's crop per model),
        for `estimate_photos`; a photo that cannot be analysed gives a result with `error` set."""
        detection = detection or {}
        try:
            return self._analyse(source, name, aligned, channels, detection)
        except ImageReadError as error:
            return ImageResult(path=name, model=self.info.name, error=str(error)), [], []
        except TypeError as error:  # not an image type at all: this input's error, like an unreadable file
            return ImageResult(path=name, model=self.info.name, error=f"{name}: {error}"), [], []
        except Exception as error:  # a bug must not stop a run of 100,000 photos: it is this photo's record
            log.exception("%s while analysing %s", INTERNAL_ERROR, name)
            error = f"{INTERNAL_ERROR} on {name}: {type(error).__name__}: {error}"
            return ImageResult(path=name, model=self.info.name, error=error), [], []

    def _analyse(self, source: ImageSource, name: str, aligned: bool, channels: Channels,
                 detection: dict) -> tuple[ImageResult, list, list]:
        """(result without its estimates, detections, aligned crops) for one source."""
        check_detection_options(detection)
        photo = read_photo(source, name=name, channels=channels)
        detections, crops, found = self._locate(photo, aligned, detection)
        result = ImageResult(path=name, model=self.info.name, width=photo.width, height=photo.height,
                             faces_found=found,
                             frames=photo.frames if photo.frames > 1 else None)
        return result, detections, crops

    def estimate_photos(self, pending: list[tuple[ImageResult, list, list]],
                        thresholds: dict[str, float] | None = None) -> Iterator[ImageResult]:
        """The second half: every model's network on the crops of all `pending` photos (what
        `prepare_photo` made) in shared batches; each photo's result with its faces filled in, every
        model's answers withheld under `thresholds` (see the class). Every `predict*` call ends here."""
        per_model = []
        for index in range(len(self.models)):
            crops = [c[index] for _, _, face_crops in pending for c in face_crops]
            per_model.append(iter(self.estimate_crops(np.stack(crops), index) if crops else []))
        for result, faces, _ in pending:
            result.faces = [self._face(face, [next(estimates) for estimates in per_model]) for face in faces]
            yield withhold_uncertain_faces(result, thresholds or {})

    def _locate(self, photo: Photo, aligned: bool, detection: dict) -> tuple[list, list[list[np.ndarray]], int]:
        """(faces with boxes and landmarks in the photo's own pixels, each face's crop for each model, faces
        found): the first model's framing through `find_faces`, each further model's from the same landmarks."""
        first = self.info
        faces, found = find_faces(
            photo.pixels, first.input_size, first.framing, "aligned" if aligned else "all",
            None if aligned else self.detector, max_faces=detection.get("max_faces") or self.max_faces,
            max_side=detection.get("detection_size") or self.detection_size,
            score_threshold=detection.get("score_threshold", self.score_threshold),
            min_face_size=detection.get("min_face_size", self.min_face_size),
        )
        crops = [[face.crop] + [align_face(photo.pixels, face.landmarks, m.info.input_size, m.info.framing)
                                for m in self.models[1:]] for face in faces]
        # Detection ran on the decoded (possibly reduced) pixels; answers are in the photo's own pixels.
        to_photo = np.array(photo.scale)
        located = [(np.array(f.box) * np.tile(to_photo, 2), f.score, f.landmarks * to_photo) for f in faces]
        if aligned:  # the whole image is the face
            found = 1
        return located, crops, found

    def _face(self, face, estimates: list[Estimates]) -> FaceResult:
        box, score, landmarks = face
        return FaceResult(
            box=[round(float(v), 1) for v in box], score=round(float(score), 4),
            landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in landmarks],
            **dict(estimates[0]), by_model=dict(zip(self.also, estimates[1:])),
        )


def _name_of(source: ImageSource) -> str:
    from facescope.faces.intake import display_name

    return display_name(source) if isinstance(source, (str, Path)) else "image"


def estimates(info: BundleInfo, probs: dict[str, np.ndarray]) -> Estimates:
    """One face's answer from each head's probabilities (`probs`, by head name)."""
    return Estimates(**{head.name: _age(head, probs[head.name]) if head.is_age else _label(head.labels, probs[head.name])
                        for head in info.heads})


def _age(head: Head, probs: np.ndarray) -> AgeEstimate:
    """The age group is the most likely one; the years are the distribution's mean, kept inside that
    group's range (a mean of 30.1 under a most likely 20-29 is 29.49, which rounds to 29 as the page and
    annotated photos show it), so the two are one decision. `years_std` is the whole distribution's."""
    if head.kind == "age_years":
        years = np.arange(len(probs))
        mean = float((probs * years).sum())
        std = float(np.sqrt((probs * (years - mean) ** 2).sum()))
        bin_probs = np.bincount(_YEAR_TO_BIN, weights=probs, minlength=len(labels.AGE_BINS))
    else:
        mean = std = None
        bin_probs = probs
    chosen = int(np.argmax(bin_probs))
    if mean is not None:
        mean = labels.years_inside_bin(mean, labels.AGE_BIN_LABELS[chosen])
    return AgeEstimate(
        years=None if mean is None else round(mean, 2),
        bin=labels.AGE_BIN_LABELS[chosen],
        bin_probs={b: round(float(p), 5) for b, p in zip(labels.AGE_BIN_LABELS, bin_probs)},
        years_std=None if std is None else round(std, 2),
    )


def _label(names: tuple[str, ...], probs: np.ndarray) -> LabelEstimate:
    return LabelEstimate(label=names[int(np.argmax(probs))], probs={n: round(float(p), 5) for n, p in zip(names, probs)})
