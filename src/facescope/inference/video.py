"""Video files, webcams and streams: faces tracked across frames, estimates smoothed per person.

    facescope predict clip.mp4 --every 3                  # one JSON line per processed frame, one per track
    facescope predict 0 --duration 60                     # webcam 0, for a minute (or until Ctrl-C)
    facescope predict rtsp://camera/stream --fps 5 --annotate out.mp4

A frame goes: decode (OpenCV's video I/O, in a reader thread) -> `Predictor.predict` (detect, align,
one network batch of this frame's faces: a live frame never waits for others to fill a batch) ->
ByteTrack (Roboflow's `trackers`) follows each face's box -> `PersonTracks` keeps a track to one person
-> `TrackSummary` pools the track's estimates. The annotated video is written with PyAV as H.264 MP4,
which browsers and players open.

One person per track: ByteTrack follows boxes, not people, so on its own it hands a track on at a scene
cut, or when one person takes another's place. So a scene cut (`SceneCuts`: the hue-saturation histogram
of the whole frame changes at once) ends every track and restarts the tracker, and a track whose face no
longer matches (`FaceLook`: the colours and coarse shape of the aligned face, or an age estimate further
from the track's than one person's frames disagree) is ended and its box given a new track. Each is a few
small OpenCV operations per frame or face, beside a detector pass that takes tens of milliseconds.

Smoothing: a track's class probabilities are the detection-score-weighted mean of its per-frame
probabilities (a linear opinion pool). Consecutive frames are near-copies of one view, not independent
evidence, so multiplying them (a mean of log-probabilities) would grow overconfident with every frame
and let one blurred frame veto a class; the weighted mean keeps the spread honest and lets sharp,
frontal frames (high detection score) count for more. Age is pooled the same way: the track's age
distribution is the weighted mixture of the per-frame distributions, so `years` is the weighted mean of
the per-frame expected ages and `years_std` the mixture's spread (the model's own uncertainty plus the
frame-to-frame disagreement); `years_frame_std` is the disagreement alone.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from facescope import labels
from facescope.faces.align import align_face
from facescope.inference.results import AgeEstimate, FaceResult, LabelEstimate
from facescope.inference.sources import Inputs, is_live, open_video

if TYPE_CHECKING:
    from facescope.engines import PredictorSpec
    from facescope.inference.sinks import StreamSink

# A file's decoder failing this many frames in a row has reached the end (or nothing more is readable).
MAX_FAILED_FRAMES_IN_A_ROW = 30


# ---------------------------------------------------------------- records


class TrackedFace(FaceResult):
    track_id: int | None = Field(description="the face's track (1, 2, ...); None until ByteTrack confirms it "
                                             "(a face seen in one processed frame only)")


class FrameRecord(BaseModel):
    type: Literal["frame"] = "frame"
    source: str
    frame: int = Field(description="index of the frame in the source, from 0")
    time: float = Field(description="seconds from the start (the file's timeline; wall clock for a live source)")
    latency_ms: float = Field(description="decoded frame to this record: detection, network and tracking, plus "
                                          "for a live source the wait since capture")
    faces: list[TrackedFace]


TrackEnd = Literal["lost", "cut", "new_face", "end"]


class TrackAge(AgeEstimate):
    years_frame_std: float | None = Field(default=None, description="spread of the per-frame expected ages")


class TrackSummary(BaseModel):
    """One track's pooled estimates: one entry per output the model declares, under its name (`age`,
    `gender`, `race`, a further output under its own), as in a face's result."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Union[TrackAge, LabelEstimate]] = Field(init=False)

    type: Literal["track"] = "track"
    source: str
    track_id: int
    frames: int = Field(description="processed frames the track's face was estimated in")
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    mean_score: float = Field(description="mean detection score")
    ended_by: TrackEnd = Field(description='"lost": the face was unseen for a while; "cut": a scene cut; '
                                           '"new_face": another face took the track\'s place; "end": the run '
                                           'ended (the source ended, --duration passed, or Ctrl-C)')
    age: TrackAge | None = Field(default=None, exclude_if=lambda value: value is None)
    gender: LabelEstimate | None = Field(default=None, exclude_if=lambda value: value is None)
    race: LabelEstimate | None = Field(default=None, exclude_if=lambda value: value is None)


# Measured on clips like tests/test_video.py's (real UTKFace faces moving and growing up to 2x, video-
# compressed): one person's face against its track's look, colour similarity 0.99 or more, shape 0.47 or
# more; two different people's faces (7 pairs), colour 0.66 to 0.96, shape 0.19 to 0.70. So colour tells
# most people apart, shape only very different faces (it moves more with pose and landmarks), and two
# people of one look and age can share a track: the check catches swaps, it does not recognise people.
COLOUR_MATCH = 0.9
SHAPE_MATCH = 0.3
# A frame's age may differ from the track's by this many combined standard deviations (the frame's and the
# track's age uncertainty), and by at least AGE_JUMP_MIN_YEARS, before it counts as another person.
AGE_JUMP_STDS = 3.0
AGE_JUMP_MIN_YEARS = 10.0
# How much each new frame moves a track's appearance template: slow enough that one odd frame barely moves
# it, fast enough to follow light and pose as they change.
LOOK_UPDATE = 0.2


@dataclass(frozen=True)
class FaceLook:
    """A face's appearance from its aligned crop (so position, size and roll do not change it): the
    hue-saturation histogram (skin, hair, lighting) and a coarse 8x8 grey picture (the face's layout).
    Both are unit vectors, so a dot product is a similarity: the Bhattacharyya coefficient of the
    histograms, and the correlation of the pictures."""

    colour: np.ndarray
    shape: np.ndarray

    @classmethod
    def of(cls, rgb: np.ndarray, face: FaceResult) -> "FaceLook":
        import cv2

        crop = align_face(rgb, np.asarray(face.landmarks), 32)
        hsv = cv2.cvtColor(crop[6:26, 6:26], cv2.COLOR_RGB2HSV)  # the face itself, without hair and background
        histogram = cv2.calcHist([hsv], [0, 1], None, [8, 4], [0, 180, 0, 256]).ravel()
        grey = cv2.resize(cv2.cvtColor(crop[8:24, 8:24], cv2.COLOR_RGB2GRAY), (8, 8), interpolation=cv2.INTER_AREA)
        return cls(np.sqrt(histogram / max(histogram.sum(), 1.0)), _unit(grey.astype(np.float32).ravel()))

    def matches(self, other: "FaceLook") -> bool:
        return float(self.colour @ other.colour) >= COLOUR_MATCH and float(self.shape @ other.shape) >= SHAPE_MATCH

    def blend(self, other: "FaceLook", weight: float) -> "FaceLook":
        """This look moved `weight` of the way towards `other`."""
        colour = (1 - weight) * self.colour ** 2 + weight * other.colour ** 2  # mix the histograms themselves
        return FaceLook(np.sqrt(colour / colour.sum()), _unit((1 - weight) * self.shape + weight * other.shape,
                                                             centre=False))


def _unit(vector: np.ndarray, centre: bool = True) -> np.ndarray:
    if centre:
        vector = vector - vector.mean()
    return vector / max(float(np.linalg.norm(vector)), 1e-6)


@dataclass
class AgePool:
    """The running, score-weighted mixture of one age output's per-frame estimates (module docstring)."""

    years: float = 0.0  # sum of w * expected age
    years_sq: float = 0.0  # sum of w * (expected age^2 + age variance): the mixture's second moment
    mean_sq: float = 0.0  # sum of w * expected age^2: for the frame-to-frame spread
    has_years: bool = True

    def add(self, w: float, age: AgeEstimate) -> None:
        if age.years is None:
            self.has_years = False
            return
        std = age.years_std or 0.0
        self.years += w * age.years
        self.mean_sq += w * age.years ** 2
        self.years_sq += w * (age.years ** 2 + std ** 2)

    def moments(self, weight: float) -> tuple[float, float, float] | None:
        """(mean, mixture spread, frame-to-frame spread), or None for a model without ages in years."""
        if not self.has_years:
            return None
        years = self.years / weight
        return (years, float(np.sqrt(max(0.0, self.years_sq / weight - years ** 2))),
                float(np.sqrt(max(0.0, self.mean_sq / weight - years ** 2))))


@dataclass
class TrackPool:
    """The running, score-weighted pool of one track's per-frame estimates (see the module docstring),
    every output the model has, and its face's appearance so far."""

    track_id: int
    first_frame: int
    first_time: float
    last_frame: int = 0
    last_time: float = 0.0
    frames: int = 0
    weight: float = 0.0
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # per output: sum of w * probabilities
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per output: its classes
    ages: dict[str, AgePool] = field(default_factory=dict)  # per age output: its years
    look: FaceLook | None = None

    def add(self, face: FaceResult, frame: int, time_s: float, look: FaceLook | None = None) -> None:
        if look is not None:
            self.look = look if self.look is None else self.look.blend(look, LOOK_UPDATE)
        w = face.score
        self.frames, self.weight = self.frames + 1, self.weight + w
        self.last_frame, self.last_time = frame, time_s
        for name, estimate in face.estimates().items():
            if isinstance(estimate, AgeEstimate):
                self.ages.setdefault(name, AgePool()).add(w, estimate)
                values = estimate.bin_probs
            else:
                values = estimate.probs
            vector = w * np.array(list(values.values()))
            self.probs[name] = self.probs[name] + vector if name in self.probs else vector
            self.names[name] = tuple(values)

    def matches(self, face: FaceResult, look: FaceLook) -> bool:
        """Whether `face` can be this track's person: it looks like the track's face, and its age is no
        further from the track's than one person's estimates stray."""
        if self.look is not None and not self.look.matches(look):
            return False
        moments = self.ages["age"].moments(self.weight) if "age" in self.ages and self.frames else None
        if moments is None or face.age is None or face.age.years is None:
            return True
        years, track_std, _ = moments
        limit = max(AGE_JUMP_MIN_YEARS, AGE_JUMP_STDS * float(np.hypot(track_std, face.age.years_std or 0.0)))
        return abs(face.age.years - years) <= limit

    def estimates(self) -> dict[str, TrackAge | LabelEstimate]:
        """The pooled estimates so far, by output name, in the faces' order."""
        pooled = {}
        for name, total in self.probs.items():
            probs = total / self.weight
            if name not in self.ages:
                pooled[name] = _pooled_label(self.names[name], probs)
                continue
            years, years_std, frame_std = self.ages[name].moments(self.weight) or (None, None, None)
            chosen = self.names[name][int(np.argmax(probs))]
            if years is not None:  # as for one photo: the years kept inside the most likely group
                years = labels.years_inside_bin(years, chosen)
            pooled[name] = TrackAge(
                years=None if years is None else round(years, 2),
                bin=chosen,
                bin_probs={b: round(float(p), 5) for b, p in zip(self.names[name], probs)},
                years_std=None if years_std is None else round(years_std, 2),
                years_frame_std=None if frame_std is None else round(frame_std, 2),
            )
        return pooled

    def summary(self, source: str, ended_by: TrackEnd) -> TrackSummary:
        return TrackSummary(
            source=source, track_id=self.track_id, frames=self.frames,
            first_frame=self.first_frame, last_frame=self.last_frame,
            first_time=round(self.first_time, 3), last_time=round(self.last_time, 3),
            mean_score=round(self.weight / self.frames, 4), ended_by=ended_by, **self.estimates(),
        )


def _pooled_label(names: tuple[str, ...], probs: np.ndarray) -> LabelEstimate:
    return LabelEstimate(label=names[int(np.argmax(probs))], probs={n: round(float(p), 5) for n, p in zip(names, probs)})


# ---------------------------------------------------------------- frames in


@dataclass
class Frame:
    index: int
    time: float
    rgb: np.ndarray
    decoded_at: float  # time.perf_counter() when the frame came out of the decoder


class FrameSampler:
    """Which frames to process: every `every`-th, and at most `fps` per second of the source's time.
    Works on the indices a live reader actually sees, so dropped frames do not stall it."""

    def __init__(self, every: int = 1, fps: float | None = None):
        if every < 1:
            raise ValueError("--every must be 1 or more")
        if fps is not None and fps <= 0:
            raise ValueError("--fps must be above 0")
        self.every, self.period = every, (1.0 / fps if fps else 0.0)
        self._next_index, self._next_time = 0, 0.0

    def take(self, index: int, time_s: float) -> bool:
        # A little slack: frame times from a frame rate (e.g. 3 / 30) are not exact binary fractions.
        if index < self._next_index or time_s < self._next_time - 1e-6:
            return False
        self._next_index = index + self.every
        self._next_time += self.period
        if self._next_time <= time_s:  # behind after a gap in a stream: restart the grid from now
            self._next_time = time_s + self.period
        return True


class FrameReader:
    """Decodes `source` in a background thread with OpenCV. A file gives every sampled frame in order (a
    few decoded ahead); a live source keeps only the newest sampled frame, so processing always works
    on the present instead of falling further behind (frames it had no time for are counted in
    `dropped`). A local file that is not a regular one is refused as `open_video` says, before the
    decoder opens it."""

    def __init__(self, source: str, sampler: FrameSampler, live: bool | None = None):
        import cv2

        self.source = source
        self.live = is_live(source) if live is None else live
        self._capture = cv2.VideoCapture(open_video(source))
        if not self._capture.isOpened():
            raise ValueError(f"{source}: cannot open this video, stream or camera")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None  # streams and cameras may not say (or say nonsense)
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.dropped = 0
        self.decode_errors = 0  # frames of a file the decoder failed on (corrupt data): skipped, counted
        self._sampler = sampler
        self._queue: queue.Queue = queue.Queue(maxsize=1 if self.live else 8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facescope-frame-reader", daemon=True)

    def __iter__(self) -> Iterator[Frame]:
        self._thread.start()
        while (frame := self._queue.get()) is not None:
            yield frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._capture.release()

    def _run(self) -> None:
        import cv2

        start, index, failed_in_a_row = time.perf_counter(), -1, 0
        try:
            while not self._stop.is_set():
                if not self._capture.grab():
                    # A live source has ended. A file may only have a corrupt frame: the decoder goes on
                    # with the next one, and only a run of failures is the end of the file.
                    failed_in_a_row += 1
                    if self.live or failed_in_a_row > MAX_FAILED_FRAMES_IN_A_ROW:
                        break
                    continue
                index += 1 + failed_in_a_row  # the frames that failed keep their places on the timeline
                self.decode_errors += failed_in_a_row
                failed_in_a_row = 0
                time_s = time.perf_counter() - start if self.live else index / (self.fps or 30.0)
                if not self._sampler.take(index, time_s):
                    continue  # grabbed but not converted: skipped frames cost little
                ok, bgr = self._capture.retrieve()
                if ok:
                    self._put(Frame(index, time_s, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter()))
        finally:
            self._put(None, end=True)

    def _put(self, frame: Frame | None, end: bool = False) -> None:
        if self.live and not end:
            try:  # replace the frame nobody took yet; only this thread puts, so the slot is then free
                self._queue.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            self._queue.put_nowait(frame)
            return
        while not self._stop.is_set() or end:
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                if end and self._stop.is_set():
                    return  # the consumer is gone


# ---------------------------------------------------------------- tracking


class FaceTracker:
    """ByteTrack over face boxes; gives each face of a frame its track id (or None, not yet confirmed)."""

    def __init__(self, lost_after_s: float = 1.0):
        from trackers import ByteTrackTracker

        # lost_track_buffer counts 30 fps frames; with timestamps passed to update() it becomes a time
        # budget (lost_after_s), whatever --every or --fps keeps of the source.
        self._tracker = ByteTrackTracker(lost_track_buffer=round(30 * lost_after_s))

    def update(self, faces: list[FaceResult], time_s: float) -> list[int | None]:
        import supervision as sv

        if faces:
            detections = sv.Detections(
                xyxy=np.array([f.box for f in faces], dtype=np.float32),
                confidence=np.array([f.score for f in faces], dtype=np.float32),
                data={"face": np.arange(len(faces))},  # ByteTrack may reorder detections
            )
        else:
            detections = sv.Detections.empty()
        tracked = self._tracker.update(detections, timestamp=time_s)
        ids: list[int | None] = [None] * len(faces)
        for face, tracker_id in zip(tracked.data.get("face", []), tracked.tracker_id):
            ids[int(face)] = int(tracker_id) + 1 if tracker_id >= 0 else None  # 1-based, like face numbers
        return ids

    def alive(self) -> set[int]:
        """Ids of tracks ByteTrack still keeps (seen recently enough to be matched again)."""
        return {t.tracker_id + 1 for t in self._tracker.tracks if t.tracker_id >= 0}

    def reset(self) -> None:
        """Forget every track (ids start again from 1)."""
        self._tracker.reset()


# Bhattacharyya distance between consecutive processed frames' hue-saturation histograms above which the
# scene changed. On the test clips: faces moving or swapped at one place 0.03 to 0.17, a new scene 0.68.
CUT_DISTANCE = 0.4


class SceneCuts:
    """Tells a scene cut from one processed frame to the next: the colours of the whole frame change at
    once. A histogram ignores where things are, so motion and panning within a scene do not count."""

    def __init__(self):
        self._previous: np.ndarray | None = None

    def is_cut(self, rgb: np.ndarray) -> bool:
        import cv2

        small = cv2.resize(rgb, (160, max(1, 160 * rgb.shape[0] // rgb.shape[1])), interpolation=cv2.INTER_AREA)
        histogram = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1], None, [16, 16], [0, 180, 0, 256])
        previous, self._previous = self._previous, histogram
        return previous is not None and cv2.compareHist(previous, histogram, cv2.HISTCMP_BHATTACHARYYA) > CUT_DISTANCE


EndedTrack = tuple[TrackPool, TrackEnd]


class PersonTracks:
    """Tracks that each follow one person: ByteTrack's box tracks, ended at a scene cut and split where the
    face in a box stops matching the track's (see the module docstring). Track ids count up from 1 over
    the whole run, whatever ByteTrack restarts."""

    def __init__(self):
        self._boxes = FaceTracker()
        self._cuts = SceneCuts()
        self._pools: dict[int, TrackPool] = {}  # by ByteTrack id
        self._next_id = 1

    def update(self, frame: Frame, faces: list[FaceResult]) -> tuple[list[TrackPool | None], list[EndedTrack]]:
        """Each face's track (None: not confirmed yet), with the face added to it; and the tracks that
        ended at this frame, with why."""
        ended: list[EndedTrack] = []
        if self._cuts.is_cut(frame.rgb):
            ended += self.end_all("cut")
            self._boxes.reset()
        tracks: list[TrackPool | None] = []
        for face, box_id in zip(faces, self._boxes.update(faces, frame.time)):
            if box_id is None:
                tracks.append(None)
                continue
            look = FaceLook.of(frame.rgb, face)
            pool = self._pools.get(box_id)
            if pool is not None and not pool.matches(face, look):
                ended.append((self._pools.pop(box_id), "new_face"))
                pool = None
            if pool is None:
                pool = self._pools[box_id] = TrackPool(self._next_id, frame.index, frame.time)
                self._next_id += 1
            pool.add(face, frame.index, frame.time, look)
            tracks.append(pool)
        alive = self._boxes.alive()
        ended += [(self._pools.pop(box_id), "lost") for box_id in sorted(set(self._pools) - alive)]
        return tracks, ended

    def end_all(self, why: TrackEnd) -> list[EndedTrack]:
        ended = [(pool, why) for _, pool in sorted(self._pools.items())]
        self._pools.clear()
        return ended


# ---------------------------------------------------------------- frames out


class AnnotatedVideo:
    """The processed frames with boxes, track ids and each track's pooled estimates, as H.264 MP4."""

    def __init__(self, path: Path, fps: float, width: int, height: int, overwrite: bool = False):
        import av

        from fractions import Fraction

        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a hidden name beside the target, which it takes only once complete (`close`).
        self.path, self.overwrite = path, overwrite
        self._partial = path.with_name(f".facescope-partial-{os.getpid()}-{path.name}")
        self._container = av.open(str(self._partial), mode="w")
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        # yuv420p needs even sides; x264 at a fixed quality, tuned for speed (it runs beside detection).
        self._stream.width, self._stream.height = width - width % 2, height - height % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "23", "preset": "veryfast"}

    def write(self, rgb: np.ndarray, faces: list[FaceResult], numbers: list[int]) -> None:
        import av

        from facescope.inference.draw import annotate_image

        image = np.asarray(annotate_image(rgb, faces, legend=False, numbers=numbers))[: self._stream.height, : self._stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        try:
            self._container.mux(self._stream.encode())  # flush the encoder
            self._container.close()
            if self.overwrite:
                os.replace(self._partial, self.path)
            else:
                os.link(self._partial, self.path)  # fails rather than replace a file made meanwhile
        finally:
            self._partial.unlink(missing_ok=True)


# ---------------------------------------------------------------- the loop


@dataclass
class VideoRun:
    """What a run did, for the closing line on stderr."""

    frames: int = 0
    faces: int = 0
    tracks: int = 0
    dropped: int = 0
    decode_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    interrupted: bool = False
    stopped_by: str = "Ctrl-C"  # or the stop signal's name (SIGTERM, SIGHUP)


def track_video(
    source: str,
    predictor,
    emit: Callable[[BaseModel], None],
    every: int = 1,
    fps: float | None = None,
    duration: float | None = None,
    annotate: Path | None = None,
    live: bool | None = None,
    overwrite: bool = False,
) -> VideoRun:
    """Process `source` (a file, a stream URL or a webcam index), calling `emit` with each FrameRecord as
    soon as its frame is done and each TrackSummary when its track ends (lost by the tracker, a scene cut,
    another face in its place, or the source ended, `duration` passed or Ctrl-C was pressed: all are clean
    stops)."""
    reader = FrameReader(source, FrameSampler(every, fps), live)
    tracks, run = PersonTracks(), VideoRun()

    def end(ended: list[EndedTrack]) -> None:
        for pool, why in ended:
            emit(pool.summary(source, why))
            run.tracks += 1

    writer = None
    if annotate is not None:
        out_fps = fps or (reader.fps or 30.0) / every
        writer = AnnotatedVideo(annotate, out_fps, reader.width, reader.height, overwrite)
    # Ctrl-C sets a flag the loop checks after each frame, rather than raising KeyboardInterrupt wherever the
    # main thread happens to be: an interrupt raised inside a library call can be lost there (a live run
    # then never stops), and one raised mid-frame would leave its records half-written.
    stop = threading.Event()

    def on_ctrl_c(signum, _frame) -> None:
        if stop.is_set():  # pressed again: the source may have stalled, so no frame would see the flag
            raise KeyboardInterrupt
        run.stopped_by = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        stop.set()

    main_thread = threading.current_thread() is threading.main_thread()
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each a clean stop, as Ctrl-C
    previous = {s: signal.signal(s, on_ctrl_c) for s in stop_signals} if main_thread else None
    try:
        for frame in reader:
            if stop.is_set():
                run.interrupted = True
                break
            if duration is not None and frame.time >= duration:
                break
            # Live: from capture, waiting included (what a viewer sees). File: from the start of work on the
            # frame (frames decoded ahead wait by design; that wait is not latency).
            started = frame.decoded_at if reader.live else time.perf_counter()
            faces = predictor.predict(frame.rgb)
            pools, ended = tracks.update(frame, faces)
            ids = [None if pool is None else pool.track_id for pool in pools]
            latency = (time.perf_counter() - started) * 1000
            emit(FrameRecord(source=source, frame=frame.index, time=round(frame.time, 3), latency_ms=round(latency, 1),
                             faces=[TrackedFace(**f.model_dump(), track_id=t) for f, t in zip(faces, ids)]))
            run.frames, run.faces = run.frames + 1, run.faces + len(faces)
            run.latencies_ms.append(latency)
            if writer is not None:
                tracked = [(pool, f) for f, pool in zip(faces, pools) if pool is not None]
                shown = [f.model_copy(update=pool.estimates()) for pool, f in tracked]
                writer.write(frame.rgb, shown, [pool.track_id for pool, _ in tracked])
            end(ended)
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        # Closing with the default handler back would let one more Ctrl-C lose the summaries or the video's end.
        if previous is not None:
            for number in stop_signals:
                signal.signal(number, signal.SIG_IGN)
        try:
            reader.close()
            end(tracks.end_all("end"))
            if writer is not None:
                writer.close()
        finally:
            if previous is not None:
                for number, handler in previous.items():
                    signal.signal(number, handler)
    run.dropped, run.decode_errors = reader.dropped, reader.decode_errors
    return run


def run(source: Inputs, predictor: PredictorSpec, sink: StreamSink) -> int:
    """The video engine (facescope.engines; `facescope predict VIDEO`): JSON lines on the sink, flushed per
    record (a live source is read as it goes); the closing summary with latency on stderr. Returns the
    exit status: 1 when the file cannot be read or frames of it could not be decoded, 2 when --annotate
    names a file already there or thresholds were asked for."""
    import typer

    from facescope.faces import FaceDetector, ImageReadError

    (argument,) = source.arguments
    if predictor.thresholds is not None:
        typer.echo("error: --threshold is for photos: a video's tracks pool every frame's probabilities and "
                   "answer with them", err=True)
        return 2
    try:  # a FIFO or a device named .mp4 would block the decoder: refused before it opens anything
        open_video(argument)
    except ImageReadError as error:
        typer.echo(f"error: {error}", err=True)
        return 1
    annotate, overwrite = sink.annotate, sink.overwrite
    if annotate is not None and annotate.exists() and not overwrite:
        typer.echo(f"error: --annotate {annotate} already exists; add --overwrite to replace it", err=True)
        return 2

    # One frame at a time: detection gets every core rather than one per photo-worker thread.
    model = predictor.make(detector=FaceDetector())
    writer = sink.open(model.info.heads)
    tracked = track_video(argument, model, writer.write, every=source.every, fps=source.fps, duration=source.duration,
                      annotate=annotate, overwrite=overwrite)
    writer.close()
    latency = np.percentile(tracked.latencies_ms, [50, 95]) if tracked.latencies_ms else (float("nan"),) * 2
    typer.echo(f"{tracked.frames} frames, {tracked.faces} faces, {tracked.tracks} tracks"
               f"{f', {tracked.dropped} frames dropped to keep up' if tracked.dropped else ''}; "
               f"latency per frame {latency[0]:.0f} ms median, {latency[1]:.0f} ms 95th percentile"
               f"{f' (stopped by {tracked.stopped_by})' if tracked.interrupted else ''}", err=True)
    if tracked.decode_errors:
        typer.echo(f"error: {argument}: {tracked.decode_errors} frames could not be decoded (corrupt data) and were "
                   "skipped", err=True)
        return 1
    return 0
