"""Video: tracks, ids and smoothed estimates on a clip made of real UTKFace crops moving over a background."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facescope.cli import app
from facescope.inference.results import AgeEstimate, FaceResult, LabelEstimate
from facescope.inference.video import FrameSampler, TrackPool, is_live, is_video_source

FPS, FRAMES, ENTERS, SIDE, SIZE = 10, 30, 10, 150, (640, 360)


def make_clip(path: Path, first: np.ndarray, second: np.ndarray) -> None:
    """3 s at 10 fps: `first` crosses the top half from the left from frame 0; `second` slides in from
    the right edge of the bottom half at frame ENTERS (cut off by the edge at first)."""
    faces = [cv2.resize(face, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for face in (first, second)]
    rows, cols = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    background = np.stack([cols * 255 // SIZE[0], rows * 255 // SIZE[1], np.full_like(cols, 90)], -1).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for index in range(FRAMES):
        frame = background.copy()
        x = 20 + 12 * index
        frame[20:20 + SIDE, x:x + SIDE] = faces[0]
        if index >= ENTERS:
            x = SIZE[0] - SIDE // 3 - 14 * (index - ENTERS)
            visible = frame[190:190 + SIDE, x:min(SIZE[0], x + SIDE)]
            visible[:] = faces[1][:, :visible.shape[1]]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.fixture(scope="module")
def crops(utkface_files):
    from facescope.faces import read_image

    # A toddler and a young man: far apart in age, so a swapped id would show.
    return [read_image(p) for p in (utkface_files[3], utkface_files[20])]


@pytest.fixture(scope="module")
def clip_run(crops, bundle_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("video")
    clip, annotated = folder / "clip.mp4", folder / "annotated.mp4"
    make_clip(clip, *crops)
    outcome = CliRunner().invoke(app, ["predict", str(clip), "--model", str(bundle_dir), "--annotate", str(annotated)])
    assert outcome.exit_code == 0, outcome.output
    records = [json.loads(line) for line in outcome.stdout.splitlines()]
    return records, annotated


def test_two_faces_two_tracks_with_stable_ids(clip_run):
    records, _ = clip_run
    frames = [r for r in records if r["type"] == "frame"]
    tracks = {r["track_id"]: r for r in records if r["type"] == "track"}
    assert [f["frame"] for f in frames] == list(range(FRAMES))
    assert frames[5]["time"] == pytest.approx(0.5)
    assert sorted(tracks) == [1, 2]
    # Each track stays on its own face (top half: the first, bottom half: the late one): no id switch.
    rows = {}
    for frame in frames:
        for face in frame["faces"]:
            if face["track_id"] is not None:
                centre_y = (face["box"][1] + face["box"][3]) / 2
                rows.setdefault(face["track_id"], set()).add(centre_y < SIZE[1] / 2)
    assert rows == {1: {True}, 2: {False}}
    assert tracks[1]["first_frame"] <= 2 and tracks[1]["last_frame"] == FRAMES - 1
    assert ENTERS <= tracks[2]["first_frame"] <= ENTERS + 5 and tracks[2]["last_frame"] == FRAMES - 1
    assert tracks[1]["frames"] >= FRAMES - 2 and tracks[2]["frames"] >= FRAMES - ENTERS - 5
    assert all(f["latency_ms"] > 0 for f in frames)


def test_smoothed_estimates_match_the_still_crops(clip_run, crops, predictor):
    records, _ = clip_run
    tracks = {r["track_id"]: r for r in records if r["type"] == "track"}
    for track_id, crop in zip((1, 2), crops):
        # The crop alone as a photo, at the clip's scale and on grey: the reference estimate.
        canvas = np.full((300, 300, 3), 128, np.uint8)
        canvas[75:75 + SIDE, 75:75 + SIDE] = cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        (still,) = predictor.predict(canvas)
        track = tracks[track_id]
        assert track["gender"]["label"] == still.gender.label
        assert track["race"]["label"] == still.race.label
        assert track["age"]["years"] == pytest.approx(still.age.years, abs=max(2.0, 0.15 * still.age.years))
        # Stable: the per-frame expected ages of one face barely move, and the pool is a distribution.
        assert track["age"]["years_frame_std"] < 2.0
        assert sum(track["race"]["probs"].values()) == pytest.approx(1.0, abs=1e-3)


def test_annotated_video_is_h264_with_every_processed_frame(clip_run):
    import av

    records, annotated = clip_run
    with av.open(str(annotated)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == FRAMES and frames[0].shape == (SIZE[1], SIZE[0], 3)
    # Boxes are drawn in each track's colour: the left edge of track 2's box in the last frame.
    from facescope.serving.annotate import BOX_COLOURS

    last = next(r for r in reversed(records) if r["type"] == "frame")
    x1, y1, x2, y2 = (round(v) for v in next(f for f in last["faces"] if f["track_id"] == 2)["box"])
    edge = np.median(frames[-1][y1 + 20:y2 - 20, x1:x1 + 2].reshape(-1, 3), axis=0)
    colour = [int(BOX_COLOURS[1][i:i + 2], 16) for i in (1, 3, 5)]
    assert np.abs(edge - colour).max() < 40, (edge, colour)


def test_track_pool_is_the_score_weighted_mixture():
    def face(score, years, std, female):
        return FaceResult(box=[0, 0, 1, 1], score=score, landmarks=[[0, 0]] * 5,
                          age=AgeEstimate(years=years, years_std=std, bin="20-29",
                                          bin_probs={"0-2": 0.0, "20-29": 1.0}),
                          gender=LabelEstimate(label="Female", probs={"Female": female, "Male": 1 - female}),
                          race=LabelEstimate(label="White", probs={"White": 1.0}))

    pool = TrackPool(track_id=1, first_frame=0, first_time=0.0)
    pool.add(face(1.0, 20.0, 3.0, 0.9), 0, 0.0)
    pool.add(face(0.5, 26.0, 4.0, 0.3), 1, 0.1)
    age, gender, _ = pool.estimates()
    assert gender.probs["Female"] == pytest.approx((0.9 + 0.5 * 0.3) / 1.5)
    assert age.years == pytest.approx(22.0)
    # Mixture variance: weighted mean of (std^2 + mean^2) minus the pooled mean squared.
    assert age.years_std == pytest.approx(np.sqrt((9 + 400 + 0.5 * (16 + 676)) / 1.5 - 22.0 ** 2), abs=0.01)
    assert age.years_frame_std == pytest.approx(np.sqrt((400 + 0.5 * 676) / 1.5 - 22.0 ** 2), abs=0.01)
    assert pool.summary("clip").last_frame == 1


def test_frame_sampling_by_count_and_by_rate():
    sampler = FrameSampler(every=3)
    assert [i for i in range(10) if sampler.take(i, i / 30)] == [0, 3, 6, 9]
    sampler = FrameSampler(fps=10)  # a 25 fps source: 10 of each 25 frames, evenly spread
    kept = [i for i in range(50) if sampler.take(i, i / 25)]
    assert len(kept) == 20 and kept[:4] == [0, 3, 5, 8]
    with pytest.raises(ValueError):
        FrameSampler(every=0)


def test_video_sources_are_told_from_photos():
    assert is_video_source("clip.MP4") and not is_live("clip.mp4")
    assert is_video_source("rtsp://camera.local/stream") and is_live("rtsp://camera.local/stream")
    assert is_video_source("https://example.org/clip.webm") and not is_live("https://example.org/clip.webm")
    assert is_video_source("0") and is_live("0")
    assert not is_video_source("photo.jpg") and not is_video_source("photos/")
