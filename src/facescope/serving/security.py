"""What lets the server face a network: security headers on every answer, no caching of answers about
uploads, a last-resort 500 that keeps the connection usable, a header read timeout, work abandoned for
clients that are gone or out of time, and the loopback check.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread
import h11
from starlette.requests import ClientDisconnect, Request
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# Everything from this origin only; nothing inline, no frames, no plugins. Photos shown are data:/blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI (at /docs) sets style attributes from its script.
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityMiddleware:
    """Adds the security headers to every answer (errors and static files included), `no-store` to every
    API answer (an answer about an uploaded photo must not be kept by any cache), and turns an exception
    that escaped a route into a plain 500, so the connection stays open for the client's next request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        policy = DOCS_CONTENT_SECURITY_POLICY if path.startswith("/docs") else CONTENT_SECURITY_POLICY
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                           or not path.startswith("/api/")]
                headers += SECURITY_HEADERS + [(b"content-security-policy", policy.encode())]
                if path.startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:  # gone mid-upload: nobody to answer
            log.info("client disconnected during %s %s", scope["method"], path)
        except Exception:
            log.exception("internal error answering %s %s", scope["method"], path)
            if started:
                raise  # half an answer sent: only closing the connection can tell the client
            body = json.dumps({"detail": "internal error"}).encode()
            await send_with_headers({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": body})


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers: a connection that sends
    nothing, or its headers a byte at a time, is closed `header_timeout_s` after it connected or after
    its previous answer (uvicorn alone would hold it for ever). The timeout is FACESCOPE_HEADER_TIMEOUT_S
    (uvicorn takes this class by its import path, in every worker), or set on a subclass."""

    header_timeout_s: float | None = None

    def connection_made(self, transport) -> None:
        self._header_clock = None
        if self.header_timeout_s is None:
            from facescope.serving.settings import Settings

            type(self).header_timeout_s = Settings().header_timeout_s
        super().connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # this request's headers are in
            self._stop_header_clock()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._start_header_clock()

    def connection_lost(self, exc) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def _start_header_clock(self) -> None:
        self._stop_header_clock()
        self._header_clock = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_clock is not None:
            self._header_clock.cancel()
            self._header_clock = None

    def _headers_too_slow(self) -> None:
        self._header_clock = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutH11Protocol]:
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": seconds})


# How often a client waiting for a prediction is checked for having disconnected.
DISCONNECT_POLL_S = 0.25
Result = TypeVar("Result")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


@dataclass
class ClientWork:
    """Handed to work done in a thread for one client: `check()` between stages raises TimeoutError once
    the deadline has passed and ClientGone once the client has disconnected, so work nobody will read
    stops at the next stage instead of running to the end."""

    deadline: float  # time.monotonic()
    gone: threading.Event = field(default_factory=threading.Event)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        if self.gone.is_set():
            raise ClientGone
        if time.monotonic() >= self.deadline:
            raise TimeoutError


async def run_for_client(request: Request, work: Callable[[ClientWork], Result], timeout_s: float) -> Result:
    """`work(client)` in a worker thread (the event loop keeps serving), for as long as the client waits:
    TimeoutError after `timeout_s`, ClientGone as soon as the client disconnects. Either way the thread
    is left to notice at its next `client.check()`, and its result is dropped."""
    client = ClientWork(time.monotonic() + timeout_s)
    outcome: list = []
    failure: list[Exception] = []  # raised by the work: kept out of the task group's ExceptionGroup

    async def watch_client(scope: anyio.CancelScope) -> None:
        while not await request.is_disconnected():
            await anyio.sleep(DISCONNECT_POLL_S)
        client.gone.set()
        scope.cancel()

    try:
        with anyio.fail_after(timeout_s):
            async with anyio.create_task_group() as group:
                group.start_soon(watch_client, group.cancel_scope)
                try:
                    outcome.append(await anyio.to_thread.run_sync(work, client, abandon_on_cancel=True))
                except Exception as error:
                    failure.append(error)
                group.cancel_scope.cancel()
    finally:
        if not outcome and not failure:
            client.gone.set()  # timed out, cancelled: nobody will read what the thread makes
    if failure:
        raise failure[0]
    if not outcome:
        raise ClientGone
    return outcome[0]


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the server to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: what it resolves to decides
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def return_freed_memory_promptly() -> None:
    """Makes glibc serve every allocation of 1 MB or more from its own mmap, returned to the system when
    freed. By default glibc raises that threshold after the first large free, after which a decoded
    photo's memory stays in the thread's arena: each worker thread then keeps its largest photo's worth,
    and a server that decoded a few huge uploads keeps gigabytes. No effect off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (fixing it also stops the dynamic raise)
    except (OSError, AttributeError, TypeError):
        log.debug("not glibc: memory is returned as the C library decides")
