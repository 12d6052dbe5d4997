"""The predictor: photos in, typed results out, on onnxruntime (no PyTorch).

    from facescope import Predictor
    predictor = Predictor()                  # the bundled default model
    faces = predictor.predict("photo.jpg")   # list[FaceResult], largest face first

A photo goes: read_image (faces.intake) -> FaceDetector.detect (faces.detect) -> align_face
(faces.align) -> estimate_crops (here, one batched ONNX run) -> FaceResult (inference.results).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facescope import labels
from facescope.faces import FaceDetector, ImageReadError, align_face, read_image
from facescope.faces.align import resize_crop
from facescope.inference.results import AgeEstimate, FaceResult, ImageResult, LabelEstimate
from facescope.model.bundle import BundleInfo, resolve_bundle

ImageSource = str | Path | bytes | np.ndarray
_YEAR_TO_BIN = np.array(labels.year_to_bin_index())


class Predictor:
    """`workers` threads read, detect and align photos side by side (onnxruntime, OpenCV and Pillow
    release the GIL) while the network runs on batches of their crops; `threads` is the network's
    onnxruntime thread count (0: all cores)."""

    def __init__(self, bundle: str | Path | None = None, detector: FaceDetector | None = None,
                 threads: int = 0, max_faces: int = 50, batch_size: int = 32, workers: int | None = None):
        folder = resolve_bundle(bundle)
        self.info = BundleInfo.from_json((folder / "model.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Idle network threads would otherwise spin waiting for work, burning the cores that the workers
        # need to read, detect and align the next photos.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self._detector = detector
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.max_faces = max_faces
        self.batch_size = batch_size

    @property
    def detector(self) -> FaceDetector:
        # Made on first use: `--aligned` runs never need it.
        if self._detector is None:
            # One thread per detection: photos are detected in parallel by the workers instead.
            self._detector = FaceDetector(threads=1)
        return self._detector

    @property
    def input_size(self) -> int:
        return self.info.input_size

    def estimate_crops(self, crops: np.ndarray) -> list[tuple[AgeEstimate, LabelEstimate, LabelEstimate]]:
        """(age, gender, race) for N x S x S x 3 uint8 aligned crops (S = input_size), batched."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = np.ascontiguousarray(crops[start:start + self.batch_size].transpose(0, 3, 1, 2), dtype=np.float32)
            gender, race, age = self._session.run(None, {"images": batch})
            out += [self._estimates(g, r, a) for g, r, a in zip(gender, race, age)]
        return out

    def _estimates(self, gender: np.ndarray, race: np.ndarray, age: np.ndarray):
        if self.info.age_mode == "years":
            years = np.arange(len(age))
            mean = float((age * years).sum())
            std = float(np.sqrt((age * (years - mean) ** 2).sum()))
            bin_probs = np.bincount(_YEAR_TO_BIN, weights=age, minlength=len(labels.AGE_BINS))
        else:
            mean = std = None
            bin_probs = age
        age_estimate = AgeEstimate(
            years=None if mean is None else round(mean, 2),
            bin=labels.AGE_BIN_LABELS[int(np.argmax(bin_probs))],
            bin_probs={b: round(float(p), 5) for b, p in zip(labels.AGE_BIN_LABELS, bin_probs)},
            years_std=None if std is None else round(std, 2),
        )
        return age_estimate, _label(labels.GENDERS, gender), _label(self.info.race_labels, race)

    def predict(self, image: ImageSource, aligned: bool = False) -> list[FaceResult]:
        """Every face in one image (a path, encoded bytes or an RGB array), largest first."""
        return self._faces(*self._locate(self._read(image), aligned))

    def predict_images(self, sources: Iterable[ImageSource], aligned: bool = False,
                       names: Iterable[str] | None = None) -> Iterator[ImageResult]:
        """One `ImageResult` per source, in order; faces from many photos share network batches, and an
        unreadable file gives a result with `error` set instead of stopping the run."""
        names = iter(names) if names is not None else None
        pending: list[tuple[ImageResult, list, list]] = []
        crops_waiting = 0
        for prepared in self._prepare_all(sources, names, aligned):
            pending.append(prepared)
            crops_waiting += len(prepared[2])
            if crops_waiting >= self.batch_size:
                yield from self._flush(pending)
                pending, crops_waiting = [], 0
        yield from self._flush(pending)

    def _prepare_all(self, sources: Iterable[ImageSource], names, aligned: bool):
        """(result, detections, crops) per source, in order, made by the worker threads a bounded
        number ahead (so a folder of 100,000 photos is never all in memory)."""
        ahead = 4 * max(self.batch_size, self.workers)
        with ThreadPoolExecutor(self.workers) as pool:
            window: deque = deque()
            for source in sources:
                name = next(names) if names is not None else (
                    str(source) if isinstance(source, (str, Path)) else "image")
                window.append(pool.submit(self._prepare, source, name, aligned))
                if len(window) >= ahead:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def _prepare(self, source: ImageSource, name: str, aligned: bool) -> tuple[ImageResult, list, list]:
        try:
            image = self._read(source)
            detections, crops = self._locate(image, aligned)
        except (ImageReadError, ValueError) as error:
            return ImageResult(path=name, error=str(error)), [], []
        return ImageResult(path=name, width=image.shape[1], height=image.shape[0]), detections, crops

    def _flush(self, pending) -> Iterator[ImageResult]:
        all_crops = [c for _, _, crops in pending for c in crops]
        estimates = iter(self.estimate_crops(np.stack(all_crops)) if all_crops else [])
        for result, detections, _ in pending:
            result.faces = [_face(d, next(estimates)) for d in detections]
            yield result

    def _faces(self, detections, crops) -> list[FaceResult]:
        if not detections:
            return []
        return [_face(d, e) for d, e in zip(detections, self.estimate_crops(np.stack(crops)))]

    @staticmethod
    def _read(image: ImageSource) -> np.ndarray:
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError("an image array must be H x W x 3 uint8 RGB")
            return image
        return read_image(image)

    def _locate(self, image: np.ndarray, aligned: bool) -> tuple[list, list[np.ndarray]]:
        """(detections, aligned crops); an already-aligned image is one face covering the whole image."""
        size = self.input_size
        if aligned:
            height, width = image.shape[:2]
            landmarks = _template_landmarks(width, height)
            return [((0.0, 0.0, float(width), float(height)), 1.0, landmarks)], [resize_crop(image, size)]
        faces = self.detector.detect(image)[: self.max_faces]
        detections = [(f.box, f.score, f.landmarks) for f in faces]
        return detections, [align_face(image, f.landmarks, size) for f in faces]


def _template_landmarks(width: int, height: int) -> np.ndarray:
    from facescope.faces import REFERENCE_SIZE, TEMPLATE

    return TEMPLATE * np.array([width, height]) / REFERENCE_SIZE


def _label(names: tuple[str, ...], probs: np.ndarray) -> LabelEstimate:
    return LabelEstimate(label=names[int(np.argmax(probs))], probs={n: round(float(p), 5) for n, p in zip(names, probs)})


def _face(detection, estimate) -> FaceResult:
    box, score, landmarks = detection
    age, gender, race = estimate
    return FaceResult(
        box=[round(float(v), 1) for v in box], score=round(float(score), 4),
        landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in landmarks],
        age=age, gender=gender, race=race,
    )
