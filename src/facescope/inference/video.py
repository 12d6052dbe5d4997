"""Video files, webcams and streams: faces tracked across frames, estimates smoothed per person.

    facescope predict clip.mp4 --every 3                  # one JSON line per processed frame, one per track
    facescope predict 0 --duration 60                     # webcam 0, for a minute (or until Ctrl-C)
    facescope predict rtsp://camera/stream --fps 5 --annotate out.mp4

A frame goes: decode (OpenCV's video I/O, in a reader thread) -> `Predictor.predict` (detect, align,
one network batch of this frame's faces: a live frame never waits for others to fill a batch) ->
ByteTrack (Roboflow's `trackers`) gives each face a track id -> `TrackSummary` pools the track's
estimates. The annotated video is written with PyAV as H.264 MP4, which browsers and players open.

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
from typing import Literal
from urllib.parse import urlparse

import numpy as np
from pydantic import BaseModel, Field

from facescope import labels
from facescope.inference.results import AgeEstimate, FaceResult, LabelEstimate

# A file's decoder failing this many frames in a row has reached the end (or nothing more is readable).
MAX_FAILED_FRAMES_IN_A_ROW = 30
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp"}
STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"}


def is_video_source(argument: str) -> bool:
    """A webcam index (`0`), a stream URL, or a file with a video suffix."""
    return _is_webcam(argument) or _is_url(argument) or Path(argument).suffix.lower() in VIDEO_SUFFIXES


def is_live(argument: str) -> bool:
    """A webcam or a stream (a URL that does not name a video file): frames arrive in real time, so the
    reader keeps only the newest one instead of queueing them."""
    if _is_webcam(argument):
        return True
    return _is_url(argument) and Path(urlparse(argument).path).suffix.lower() not in VIDEO_SUFFIXES


def _is_webcam(argument: str) -> bool:
    return argument.isdigit() and not Path(argument).exists()


def _is_url(argument: str) -> bool:
    return urlparse(argument).scheme.lower() in STREAM_SCHEMES


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


class TrackAge(AgeEstimate):
    years_frame_std: float | None = Field(default=None, description="spread of the per-frame expected ages")


class TrackSummary(BaseModel):
    type: Literal["track"] = "track"
    source: str
    track_id: int
    frames: int = Field(description="processed frames the track's face was estimated in")
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    mean_score: float = Field(description="mean detection score")
    age: TrackAge
    gender: LabelEstimate
    race: LabelEstimate


@dataclass
class TrackPool:
    """The running, score-weighted pool of one track's per-frame estimates (see the module docstring)."""

    track_id: int
    first_frame: int
    first_time: float
    last_frame: int = 0
    last_time: float = 0.0
    frames: int = 0
    weight: float = 0.0
    years: float = 0.0  # sum of w * expected age
    years_sq: float = 0.0  # sum of w * (expected age^2 + age variance): the mixture's second moment
    mean_sq: float = 0.0  # sum of w * expected age^2: for the frame-to-frame spread
    has_years: bool = True
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, face: FaceResult, frame: int, time_s: float) -> None:
        w = face.score
        self.frames, self.weight = self.frames + 1, self.weight + w
        self.last_frame, self.last_time = frame, time_s
        if face.age.years is None:
            self.has_years = False
        else:
            std = face.age.years_std or 0.0
            self.years += w * face.age.years
            self.mean_sq += w * face.age.years ** 2
            self.years_sq += w * (face.age.years ** 2 + std ** 2)
        for name, values in (("age", face.age.bin_probs), ("gender", face.gender.probs), ("race", face.race.probs)):
            vector = w * np.array(list(values.values()))
            self.probs[name] = self.probs[name] + vector if name in self.probs else vector
        self.names = {"gender": tuple(face.gender.probs), "race": tuple(face.race.probs)}

    def estimates(self) -> tuple[TrackAge, LabelEstimate, LabelEstimate]:
        """The pooled (age, gender, race) so far."""
        pooled = {name: total / self.weight for name, total in self.probs.items()}
        years = years_std = frame_std = None
        if self.has_years:
            years = self.years / self.weight
            years_std = float(np.sqrt(max(0.0, self.years_sq / self.weight - years ** 2)))
            frame_std = float(np.sqrt(max(0.0, self.mean_sq / self.weight - years ** 2)))
        age = TrackAge(
            years=None if years is None else round(years, 2),
            bin=labels.AGE_BIN_LABELS[int(np.argmax(pooled["age"]))],
            bin_probs={b: round(float(p), 5) for b, p in zip(labels.AGE_BIN_LABELS, pooled["age"])},
            years_std=None if years_std is None else round(years_std, 2),
            years_frame_std=None if frame_std is None else round(frame_std, 2),
        )
        return age, *(_pooled_label(self.names[name], pooled[name]) for name in ("gender", "race"))

    def summary(self, source: str) -> TrackSummary:
        age, gender, race = self.estimates()
        return TrackSummary(
            source=source, track_id=self.track_id, frames=self.frames,
            first_frame=self.first_frame, last_frame=self.last_frame,
            first_time=round(self.first_time, 3), last_time=round(self.last_time, 3),
            mean_score=round(self.weight / self.frames, 4), age=age, gender=gender, race=race,
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
    `dropped`)."""

    def __init__(self, source: str, sampler: FrameSampler, live: bool | None = None):
        import cv2

        self.source = source
        self.live = is_live(source) if live is None else live
        self._capture = cv2.VideoCapture(int(source) if _is_webcam(source) else source)
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

        from facescope.serving.annotate import annotate_image

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
    soon as its frame is done and each TrackSummary when its track ends (lost by the tracker, or the
    source ended, `duration` passed or Ctrl-C was pressed: all are clean stops)."""
    reader = FrameReader(source, FrameSampler(every, fps), live)
    tracker, pools, run = FaceTracker(), {}, VideoRun()
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
            ids = tracker.update(faces, frame.time)
            for face, track_id in zip(faces, ids):
                if track_id is not None:
                    pools.setdefault(track_id, TrackPool(track_id, frame.index, frame.time)).add(
                        face, frame.index, frame.time)
            latency = (time.perf_counter() - started) * 1000
            emit(FrameRecord(source=source, frame=frame.index, time=round(frame.time, 3), latency_ms=round(latency, 1),
                             faces=[TrackedFace(**f.model_dump(), track_id=t) for f, t in zip(faces, ids)]))
            run.frames, run.faces = run.frames + 1, run.faces + len(faces)
            run.latencies_ms.append(latency)
            if writer is not None:
                tracked = [(t, f) for f, t in zip(faces, ids) if t is not None]
                shown = [f.model_copy(update=dict(zip(("age", "gender", "race"), pools[t].estimates())))
                         for t, f in tracked]
                writer.write(frame.rgb, shown, [t for t, _ in tracked])
            for track_id in sorted(set(pools) - tracker.alive()):
                emit(pools.pop(track_id).summary(source))
                run.tracks += 1
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        # Closing with the default handler back would let one more Ctrl-C lose the summaries or the video's end.
        if previous is not None:
            for number in stop_signals:
                signal.signal(number, signal.SIG_IGN)
        try:
            reader.close()
            for track_id in sorted(pools):
                emit(pools[track_id].summary(source))
                run.tracks += 1
            if writer is not None:
                writer.close()
        finally:
            if previous is not None:
                for number, handler in previous.items():
                    signal.signal(number, handler)
    run.dropped, run.decode_errors = reader.dropped, reader.decode_errors
    return run


def predict_video_command(source: str, model: str | None, every: int, fps: float | None, duration: float | None,
                          annotate: Path | None, overwrite: bool = False) -> int:
    """`facescope predict VIDEO`: JSON lines on stdout, flushed per record (a live source is read as it
    goes); the closing summary with latency on stderr. Returns the exit status: 1 when the file cannot
    be read or frames of it could not be decoded, 2 when --annotate names a file already there."""
    import sys

    import typer

    from facescope.faces import FaceDetector, ImageReadError
    from facescope.faces.intake import check_regular_file
    from facescope.inference.predictor import Predictor

    if not (_is_webcam(source) or _is_url(source)):
        try:  # a FIFO or a device named .mp4 would block the decoder: refused before it opens anything
            check_regular_file(Path(source))
        except ImageReadError as error:
            typer.echo(f"error: {error}", err=True)
            return 1
    if annotate is not None and annotate.exists() and not overwrite:
        typer.echo(f"error: --annotate {annotate} already exists; add --overwrite to replace it", err=True)
        return 2

    # One frame at a time: detection gets every core rather than one per photo-worker thread.
    predictor = Predictor(model, detector=FaceDetector())

    def emit(record: BaseModel) -> None:
        sys.stdout.write(record.model_dump_json() + "\n")
        sys.stdout.flush()

    run = track_video(source, predictor, emit, every=every, fps=fps, duration=duration, annotate=annotate,
                      overwrite=overwrite)
    latency = np.percentile(run.latencies_ms, [50, 95]) if run.latencies_ms else (float("nan"),) * 2
    typer.echo(f"{run.frames} frames, {run.faces} faces, {run.tracks} tracks"
               f"{f', {run.dropped} frames dropped to keep up' if run.dropped else ''}; "
               f"latency per frame {latency[0]:.0f} ms median, {latency[1]:.0f} ms 95th percentile"
               f"{f' (stopped by {run.stopped_by})' if run.interrupted else ''}", err=True)
    if run.decode_errors:
        typer.echo(f"error: {source}: {run.decode_errors} frames could not be decoded (corrupt data) and were "
                   "skipped", err=True)
        return 1
    return 0
