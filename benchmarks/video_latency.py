"""Per-frame latency of `facescope predict` on a live stream, and throughput on a file.

    FACESCOPE_DATA=../shared/data .venv/bin/python benchmarks/video_latency.py --seconds 20

It makes a clip from two real UTKFace crops moving over a background (the clip tests/test_video.py
uses, 640x360), then
  (a) file: `facescope predict clip.mp4` in full, processed frames per second;
  (b) live: serves the clip in real time as an MJPEG stream over HTTP on loopback (what many IP cameras
      send) and runs `facescope predict http://127.0.0.1:PORT/stream --duration S`: the latency of each
      frame from capture to its JSON line (the `latency_ms` field), and the frames dropped to keep up.
Both run as the real command in a subprocess. Results: a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from facescope.paths import data_root

SIDE, SIZE = 150, (640, 360)


def make_clip(path: Path, first: np.ndarray, second: np.ndarray, frames: int = 30, fps: int = 10,
              enters: int = 10) -> None:
    """`first` crosses the top half from the left from frame 0; `second` slides in from the right edge
    of the bottom half at frame `enters` (cut off by the edge at first). Both bounce back at the edges,
    so a clip can be any length."""
    faces = [cv2.resize(face, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for face in (first, second)]
    background = gradient_background()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    span = SIZE[0] - SIDE
    for index in range(frames):
        frame = background.copy()
        x = _bounce(20 + 12 * index, span)
        frame[20:20 + SIDE, x:x + SIDE] = faces[0]
        if index >= enters:
            x = SIZE[0] - SIDE // 3 - 14 * (index - enters)
            x = x if x > span else _bounce(x, span)
            visible = frame[190:190 + SIDE, x:min(SIZE[0], x + SIDE)]
            visible[:] = faces[1][:, :visible.shape[1]]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def gradient_background(blue: int = 90) -> np.ndarray:
    """A SIZE RGB frame: red grows left to right, green top to bottom; `blue` sets the scene apart."""
    rows, cols = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    return np.stack([cols * 255 // SIZE[0], rows * 255 // SIZE[1], np.full_like(cols, blue)], -1).astype(np.uint8)


def _bounce(x: int, span: int) -> int:
    x %= 2 * span
    return abs(x) if x <= span else 2 * span - x


class MjpegStream:
    """Serves a video file's frames in real time, looping, as multipart/x-mixed-replace JPEGs on
    http://127.0.0.1:PORT/stream: a live source on loopback."""

    def __init__(self, video: Path):
        capture = cv2.VideoCapture(str(video))
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        self.jpegs = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            self.jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
        capture.release()
        stream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                start, index = time.perf_counter(), 0
                try:
                    while True:
                        jpeg = stream.jpegs[index % len(stream.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        index += 1
                        time.sleep(max(0.0, start + index / stream.fps - time.perf_counter()))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the reader stopped

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def facescope_predict(*arguments: str) -> tuple[list[dict], float]:
    command = [sys.executable, "-c", "import sys; from facescope.cli import main; sys.argv[0] = 'facescope'; main()",
               "predict", *arguments]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the live run")
    parser.add_argument("--fps", type=int, default=25, help="the clip's frame rate")
    args = parser.parse_args()
    from facescope.faces import read_image

    data = data_root() / "utkface"
    files = sorted(data.iterdir())[::500]
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, read_image(files[3]), read_image(files[20]), frames=10 * args.fps, fps=args.fps,
                  enters=2 * args.fps)
        records, elapsed = facescope_predict(str(clip))
        frames = [r for r in records if r["type"] == "frame"]
        print("| source | frames processed | frames/s | latency median | latency p95 | dropped |")
        print("|---|---|---|---|---|---|")
        file_latency = [f["latency_ms"] for f in frames]
        print(f"| file, {len(frames)} frames of {SIZE[0]}x{SIZE[1]} (whole command: {elapsed:.1f} s) | {len(frames)} "
              f"| {len(frames) / elapsed:.1f} | {statistics.median(file_latency):.0f} ms "
              f"| {np.percentile(file_latency, 95):.0f} ms | - |")
        stream = MjpegStream(clip)
        try:
            records, _ = facescope_predict(stream.url, "--duration", str(args.seconds))
        finally:
            stream.close()
        frames = [r for r in records if r["type"] == "frame"]
        latency = [f["latency_ms"] for f in frames]
        shown = frames[-1]["frame"] + 1
        print(f"| live MJPEG stream at {args.fps} fps, {args.seconds:.0f} s | {len(frames)} "
              f"| {len(frames) / args.seconds:.1f} | {statistics.median(latency):.0f} ms "
              f"| {np.percentile(latency, 95):.0f} ms | {shown - len(frames)} of {shown} |")


if __name__ == "__main__":
    main()
