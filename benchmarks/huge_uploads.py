"""Huge photos sent to the server all at once: its memory before, at its peak and after.

    python benchmarks/huge_uploads.py --photos 4

Starts a server on 127.0.0.1 (the bundled model), sends --photos PNGs of 88 megapixels (10000x8800, RGB
and RGBA in turn; about 1.5 MB each, so under the upload limit) at the same time, and samples the
server's resident memory every 0.1 s until --settle seconds after the last answer. Decoding shares one
limit-sized pixel budget, so the peak should stay near one photo's cost (benchmarks/memory_per_photo.py)
above the idle server, and memory should come back down once the answers are sent.
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
    args = parser.parse_args()
    photos = []
    for number in range(args.photos):
        buffer = io.BytesIO()
        gradient(10000, 8800, 3 + number % 2).save(buffer, format="PNG", compress_level=1)
        photos.append(buffer.getvalue())
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
                                  timeout=300, trust_env=False)
            statuses.append(response.status_code)

        senders = [threading.Thread(target=send, args=(data,)) for data in photos]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        time.sleep(args.settle)
        done.set()
        print(f"{len(photos)} photos of 88 MP ({sum(map(len, photos)) / 1e6:.1f} MB in all) at once: answers "
              f"{sorted(statuses)}; server RSS before {before:.0f} MiB, peak {peak:.0f} MiB, "
              f"{args.settle:g} s after the last answer {process.memory_info().rss / 2**20:.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
