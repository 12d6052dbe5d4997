"""Load test for the facescope API: a bounded number of real-photo predictions, on loopback only.

Starts a server itself (uvicorn on 127.0.0.1, a free port, the model from --model) or targets --url,
sends --requests POST /api/v1/predict requests, at most --concurrency at a time, and reports
requests/s, latency percentiles, errors and, for a server it started, its resident memory before, at its
peak during the run and after. It stops by itself: after the last request, or at --time-limit.

With --slow-clients N it also opens N connections that send half a request's headers and nothing more,
while the load runs: the report says when the server closed each (it should at its header timeout,
--header-timeout for a server this starts) and the load's own figures show the others kept being served.

    .venv/bin/python benchmarks/load_test.py --requests 640 --concurrency 64 --slow-clients 8
    .venv/bin/python benchmarks/load_test.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import mimetypes
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from facescope.paths import data_root

DEFAULT_DATA = data_root() / "utkface"
# Distinct photos sent in turn: enough that no single photo dominates the figures.
DISTINCT_PHOTOS = 64


@dataclass
class Outcome:
    latencies_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def require_loopback(url: str) -> None:
    """Refuse any target that is not this machine: a load test must never hit someone else's server."""
    host = urlsplit(url).hostname
    if not host:
        raise SystemExit(f"{url}: no host")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as error:
        raise SystemExit(f"{url}: cannot resolve {host} ({error})") from None
    if not all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses):
        raise SystemExit(f"{url}: {host} is not a loopback address; this load test only targets this machine")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str | None, port: int, header_timeout_s: float) -> subprocess.Popen:
    env = {**os.environ, "FACESCOPE_MODEL": model or "", "FACESCOPE_HEADER_TIMEOUT_S": str(header_timeout_s)}
    command = [sys.executable, "-m", "uvicorn", "facescope.serving.app:app_from_env", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
               "--http", "facescope.serving.security:HeaderTimeoutH11Protocol"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def wait_until_ready(url: str, server: subprocess.Popen | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False) as client:
        while time.monotonic() < deadline:
            if server is not None and server.poll() is not None:
                raise SystemExit(f"the server exited with status {server.returncode}")
            try:
                if client.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise SystemExit(f"{url} was not ready after {timeout_s:g} s")


def rss_mib(server: subprocess.Popen) -> float:
    import psutil

    return psutil.Process(server.pid).memory_info().rss / 2**20


class PeakMemory(threading.Thread):
    """Samples a process's resident memory every 0.2 s; `peak_mib` is the most seen."""

    def __init__(self, server: subprocess.Popen):
        super().__init__(daemon=True)
        self.server, self.peak_mib, self.done = server, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak_mib = max(self.peak_mib, rss_mib(self.server))


class SlowClient(threading.Thread):
    """A connection that sends half a request's headers and stalls; `closed_after_s` is when the server
    closed it, in seconds after it connected (None while open, or if still open after `give_up_s`)."""

    def __init__(self, url: str, give_up_s: float):
        super().__init__(daemon=True)
        self.address, self.give_up_s, self.closed_after_s = (urlsplit(url).hostname, urlsplit(url).port), give_up_s, None

    def run(self) -> None:
        with socket.create_connection(self.address) as connection:
            opened = time.monotonic()
            connection.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-")
            connection.settimeout(self.give_up_s)
            try:
                if connection.recv(1) == b"":
                    self.closed_after_s = time.monotonic() - opened
            except TimeoutError:
                pass
            except OSError:
                self.closed_after_s = time.monotonic() - opened


def content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def load_photos(folder: Path, count: int) -> list[tuple[str, bytes]]:
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no photos in {folder} (set --data or FACESCOPE_DATA)")
    step = max(1, len(files) // count)
    return [(path.name, path.read_bytes()) for path in files[::step][:count]]


async def send_requests(outcome: Outcome, url: str, photos: list[tuple[str, bytes]], requests: int,
                        concurrency: int, request_timeout_s: float) -> None:
    """Fills `outcome` as answers come, so a run stopped at the time limit still reports what it got."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(number)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            name, data = photos[queue.get_nowait() % len(photos)]
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/api/v1/predict", files={"file": (name, data, content_type(name))})
            except httpx.HTTPError as error:
                outcome.add_error(type(error).__name__)
                continue
            if response.status_code == 200:
                outcome.latencies_s.append(time.perf_counter() - started)
            else:
                outcome.add_error(f"HTTP {response.status_code}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=request_timeout_s, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


async def send_requests_until(time_limit_s: float, *args) -> bool:
    """send_requests, stopped at the time limit; True if it was stopped."""
    try:
        await asyncio.wait_for(send_requests(*args), time_limit_s)
    except TimeoutError:
        return True
    return False


def report(outcome: Outcome, elapsed_s: float, requests: int, concurrency: int, stopped_early: bool) -> None:
    done = len(outcome.latencies_s) + sum(outcome.errors.values())
    print(f"requests: {done} of {requests} sent, concurrency {concurrency}"
          + (" (stopped at the time limit)" if stopped_early else ""))
    print(f"elapsed: {elapsed_s:.2f} s, throughput: {len(outcome.latencies_s) / elapsed_s:.2f} successful requests/s")
    if outcome.latencies_s:
        p50, p95, p99 = np.percentile(np.array(outcome.latencies_s) * 1000, [50, 95, 99])
        print(f"latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, "
              f"max {max(outcome.latencies_s) * 1000:.0f} ms")
    errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(outcome.errors.items())) or "none"
    print(f"errors: {sum(outcome.errors.values())} ({errors})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server on this machine (default: start one on 127.0.0.1)")
    parser.add_argument("--model", help="model bundle for the server this starts (default: the bundled model)")
    parser.add_argument("--requests", type=int, default=320, help="requests to send in all")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at once")
    parser.add_argument("--slow-clients", type=int, default=0, help="connections that stall mid-headers")
    parser.add_argument("--header-timeout", type=float, default=5.0,
                        help="the header timeout of a server this starts, in seconds")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of face photos to send")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds after which the test stops")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds one request may take")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    photos = load_photos(args.data, DISTINCT_PHOTOS)
    server = None
    if args.url:
        url = args.url.rstrip("/")
        require_loopback(url)
    else:
        url = f"http://127.0.0.1:{free_port()}"
        server = start_server(args.model, int(url.rsplit(":", 1)[1]), args.header_timeout)
    try:
        wait_until_ready(url, server, timeout_s=120)
        if server is not None:
            print(f"server RSS before: {rss_mib(server):.0f} MiB")
            peak = PeakMemory(server)
            peak.start()
        slow = [SlowClient(url, give_up_s=args.header_timeout * 3) for _ in range(args.slow_clients)]
        for client in slow:
            client.start()
        outcome = Outcome()
        started = time.perf_counter()
        stopped_early = asyncio.run(send_requests_until(
            args.time_limit, outcome, url, photos, args.requests, args.concurrency, args.request_timeout
        ))
        report(outcome, time.perf_counter() - started, args.requests, args.concurrency, stopped_early)
        if slow:
            for client in slow:
                client.join()
            shut = [client.closed_after_s for client in slow if client.closed_after_s is not None]
            print(f"slow clients: {len(shut)} of {len(slow)} closed by the server"
                  + (f", after {min(shut):.1f} to {max(shut):.1f} s" if shut else ""))
        if server is not None:
            peak.done.set()
            print(f"server RSS peak during the run: {peak.peak_mib:.0f} MiB; after: {rss_mib(server):.0f} MiB")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
