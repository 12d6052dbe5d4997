"""The predictor: photos in, typed results out, on onnxruntime (no PyTorch).

    from facescope import Predictor
    predictor = Predictor()                  # the bundled default model
    faces = predictor.predict("photo.jpg")   # list[FaceResult], largest face first

A photo goes: read_image (faces.intake) -> find_faces (faces.pipeline: detect, then align to the
bundle's framing) -> LoadedBundle.run (bundles.contract: the bundle's declared input and outputs, one
batched ONNX run) -> FaceResult (inference.results). Several models (`also=[...]`) share one detection
pass: each face is aligned once per model's framing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facescope import labels
from facescope.bundles import BundleInfo, LoadedBundle, load_bundle, resolve_bundle
from facescope.faces import FaceDetector, ImageReadError, align_face, find_faces, read_image
from facescope.inference.results import AgeEstimate, Estimates, FaceResult, ImageResult, LabelEstimate

ImageSource = str | Path | bytes | np.ndarray
_YEAR_TO_BIN = np.array(labels.year_to_bin_index())


class Predictor:
    """`workers` threads read, detect and align photos side by side (onnxruntime, OpenCV and Pillow
    release the GIL) while the network runs on batches of their crops; `threads` is the network's
    onnxruntime thread count (0: all cores)."""

    def __init__(self, model: str | Path | None = None, detector: FaceDetector | None = None,
                 threads: int = 0, max_faces: int = 50, batch_size: int = 32, workers: int | None = None,
                 also: Iterable[str | Path] = ()):
        self.models: list[LoadedBundle] = [load_bundle(resolve_bundle(m), threads) for m in (model, *also)]
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
    def info(self) -> BundleInfo:
        """The first model's declarations."""
        return self.models[0].info

    @property
    def input_size(self) -> int:
        return self.info.input_size

    def estimate_crops(self, crops: np.ndarray, model: int = 0) -> list[Estimates]:
        """Estimates for N x S x S x 3 uint8 RGB crops in model `model`'s framing and size, batched."""
        bundle = self.models[model]
        out = []
        for start in range(0, len(crops), self.batch_size):
            probs = bundle.run(crops[start:start + self.batch_size])
            out += [_estimates(bundle.info, g, r, a) for g, r, a in zip(probs["gender"], probs["race"], probs["age"])]
        return out

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
        per_model = []
        for index in range(len(self.models)):
            crops = [c[index] for _, _, face_crops in pending for c in face_crops]
            per_model.append(iter(self.estimate_crops(np.stack(crops), index) if crops else []))
        for result, faces, _ in pending:
            result.faces = [self._face(face, [next(estimates) for estimates in per_model]) for face in faces]
            yield result

    def _faces(self, faces, face_crops) -> list[FaceResult]:
        if not faces:
            return []
        per_model = [self.estimate_crops(np.stack([c[i] for c in face_crops]), i) for i in range(len(self.models))]
        return [self._face(face, [estimates[n] for estimates in per_model]) for n, face in enumerate(faces)]

    @staticmethod
    def _read(image: ImageSource) -> np.ndarray:
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError("an image array must be H x W x 3 uint8 RGB")
            return image
        return read_image(image)

    def _locate(self, image: np.ndarray, aligned: bool) -> tuple[list, list[list[np.ndarray]]]:
        """(faces, each face's crop for each model): the first model's framing through `find_faces`,
        then each further model's framing from the same landmarks."""
        first = self.models[0].info
        faces = find_faces(image, first.input_size, first.framing, "aligned" if aligned else "all",
                           None if aligned else self.detector, max_faces=self.max_faces)
        crops = [[face.crop] + [align_face(image, face.landmarks, m.info.input_size, m.info.framing)
                                for m in self.models[1:]] for face in faces]
        return faces, crops

    def _face(self, face, estimates: list[Estimates]) -> FaceResult:
        first = estimates[0]
        return FaceResult(
            box=[round(float(v), 1) for v in face.box], score=round(float(face.score), 4),
            landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks],
            age=first.age, gender=first.gender, race=first.race,
            by_model={m.info.name: e for m, e in zip(self.models[1:], estimates[1:])},
        )


def _estimates(info: BundleInfo, gender: np.ndarray, race: np.ndarray, age: np.ndarray) -> Estimates:
    if info.age_mode == "years":
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
    return Estimates(age=age_estimate, gender=_label(labels.GENDERS, gender), race=_label(info.race_labels, race))


def _label(names: tuple[str, ...], probs: np.ndarray) -> LabelEstimate:
    return LabelEstimate(label=names[int(np.argmax(probs))], probs={n: round(float(p), 5) for n, p in zip(names, probs)})
