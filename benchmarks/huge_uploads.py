"""Huge photos sent to the server all at once: its memory before, at its peak and after.

    python benchmarks/huge_uploads.py --photos 4
    python benchmarks/huge_uploads.py --photos 4 --megapixels 120 --annotate --abandoned 10

Starts a server on 127.0.0.1 (the bundled model), sends --photos PNGs of --megapixels (88: 10000x8800;
RGB and RGBA in turn; a few MB at most, so under the upload limit) at the same time, `?annotate=true`
with --annotate, and samples the server's resident memory every 0.1 s until --settle seconds after the
last answer. Decoding shares one limit-sized pixel budget and annotation is drawn on a bounded canvas, so
the peak should stay near one photo's cost (benchmarks/memory_per_photo.py) above the idle server, and
memory should come back down once the answers are sent.

--abandoned N then sends the same photos N times and hangs up once each upload is in (fire and
forget), times an ordinary request sent right after, and reports the server's CPU seconds and memory
over that phase: work for a client that is gone is abandoned, so both should stay small.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_per_photo import gradient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--settle", type=float, default=25.0, help="seconds to wait after the last answer")
    parser.add_argument("--megapixels", type=float, default=88.0, help="size of each photo (at most 120)")
    parser.add_argument("--annotate", action="store_true", help="ask for the annotated photo too")
    parser.add_argument("--abandoned", type=int, default=0, help="then this many uploads hung up on")
    args = parser.parse_args()
    width = int((args.megapixels * 1e6 / 0.88) ** 0.5)
    height = int(width * 0.88)
    photos = []
    for number in range(args.photos):
        buffer = io.BytesIO()
        gradient(width, height, 3 + number % 2).save(buffer, format="PNG", compress_level=1)
        photos.append(buffer.getvalue())
    upload_limit = max(map(len, photos)) + 1024 * 1024
    os.environ["FACESCOPE_MAX_UPLOAD_BYTES"] = str(max(upload_limit, 10 * 1024 * 1024))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "facescope.serving.app:app_from_env", "--factory",
                               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=os.environ)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(480):
            try:
                if httpx.get(f"{url}/api/v1/health", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.25)
        process = psutil.Process(server.pid)
        before = peak = process.memory_info().rss / 2**20
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.1):
                peak = max(peak, process.memory_info().rss / 2**20)

        threading.Thread(target=sample, daemon=True).start()
        statuses: list[int] = []

        def send(data: bytes) -> None:
            response = httpx.post(f"{url}/api/v1/predict", files={"file": ("huge.png", data, "image/png")},
                                  params={"annotate": args.annotate}, timeout=300, trust_env=False)
            statuses.append(response.status_code)

        senders = [threading.Thread(target=send, args=(data,)) for data in photos]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        time.sleep(args.settle)
        print(f"{len(photos)} photos of {width}x{height} ({width * height / 1e6:.0f} MP, "
              f"{sum(map(len, photos)) / 1e6:.1f} MB in all) at once{', annotated' if args.annotate else ''}: "
              f"answers {sorted(statuses)}; server RSS before {before:.0f} MiB, peak {peak:.0f} MiB, "
              f"{args.settle:g} s after the last answer {process.memory_info().rss / 2**20:.0f} MiB")
        if args.abandoned:
            resting = process.memory_info().rss / 2**20
            peak, cpu = resting, sum(process.cpu_times()[:2])
            for number in range(args.abandoned):
                hang_up(port, photos[number % len(photos)], args.annotate)
            started = time.monotonic()
            ordinary = httpx.post(f"{url}/api/v1/predict", files={"file": ("small.png", small_photo(), "image/png")},
                                  timeout=300, trust_env=False)
            took = time.monotonic() - started
            time.sleep(args.settle)
            print(f"{args.abandoned} uploads hung up on once sent: an ordinary request right after answered "
                  f"{ordinary.status_code} in {took:.1f} s; server CPU {sum(process.cpu_times()[:2]) - cpu:.1f} s "
                  f"over the {args.settle:g} s after; RSS {resting:.0f} MiB before, peak {peak:.0f} MiB, "
                  f"{process.memory_info().rss / 2**20:.0f} MiB after")
        done.set()
    finally:
        server.terminate()
        server.wait(timeout=10)


def hang_up(port: int, data: bytes, annotate: bool) -> None:
    """Sends a whole upload, waits until the server has it, and closes the connection unanswered."""
    boundary = "benchmark-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(f"POST /api/v1/predict?annotate={str(annotate).lower()} HTTP/1.1\r\nHost: x\r\n"
                           f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.5)


def small_photo() -> bytes:
    buffer = io.BytesIO()
    gradient(640, 480, 3).save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    main()
