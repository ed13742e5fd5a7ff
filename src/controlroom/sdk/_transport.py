"""The SDK's one HTTP transport: how the exporter, the control client and ``controlroom resend``
talk to the server, and an in-memory stand-in for tests.

A transport is anything with ``send(request) -> Response`` and ``close()``:

- :class:`HTTPTransport` speaks HTTP/1.1 or HTTPS (``http.client``) with one keep-alive connection
  per thread, a timeout per request, and one rule for sending twice: a request is sent once more
  only when the connection turns out to be one the server had closed (a stale keep-alive
  connection: reset, aborted, broken pipe, or closed without an answer), never after a timeout,
  when the server may still be working on the first request.
- :class:`MockTransport` hands each request to a function and returns what it returns (as httpx's
  ``MockTransport`` does): client code is tested without a network.

Every failure to get an answer is an ``OSError`` (``ConnectionRefusedError`` when nothing was
sent, ``TimeoutError`` when the answer did not come in time); any answer, whatever its status, is
a :class:`Response`.

:func:`in_thread` is the async side: an ``await``-able form of any blocking call (a request through
a transport), run on a pool of threads so the event loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import orjson

T = TypeVar("T")

STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
"""What a stale keep-alive connection raises (``http.client.RemoteDisconnected`` included)."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    """Below the server's base URL, e.g. ``/v1/events``."""
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    """Seconds to wait for the answer, instead of the transport's (a long poll waits longer)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Names in lower case."""

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; ``{}`` when it is empty or not one."""
        try:
            doc = orjson.loads(self.body) if self.body else {}
        except orjson.JSONDecodeError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def retry_after(self) -> int | None:
        """The Retry-After header in seconds, when it is a number of seconds."""
        value = self.headers.get("retry-after")
        return int(value) if value and value.isdigit() else None


class Transport(Protocol):
    def send(self, request: Request, *, reuse: bool = True) -> Response:
        """The server's answer; ``reuse=False`` sends on a connection of its own, closed after."""
        ...

    def close(self) -> None: ...


def json_headers(api_key: str, *, gzip: bool = False) -> dict[str, str]:
    """The headers of a JSON request with the project's key (a gzip-encoded body if ``gzip``)."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return headers


def check_url(url: str) -> None:
    """ValueError unless ``url`` is an http(s) URL with a host and a valid port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    _ = parts.port  # ValueError for a bad port


class HTTPTransport:
    """HTTP(S) to the server at ``url`` (its path is the base of every request's path)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        check_url(url)
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.RLock()  # re-entrant: a span ended by the garbage collector may send

    def _new_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_connection()
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def send(self, request: Request, *, reuse: bool = True) -> Response:
        if not reuse:
            conn = self._new_connection()
            try:
                return self._exchange(conn, request)
            finally:
                conn.close()
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return self._exchange(conn, request)
            except OSError as e:
                self._drop(conn)
                if attempt == 2 or not isinstance(e, STALE):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, conn: http.client.HTTPConnection, request: Request) -> Response:
        timeout = self.timeout if request.timeout is None else request.timeout
        conn.timeout = timeout  # for a new socket; an open one is set below
        try:
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            conn.request(
                request.method, self._base + request.path, body=request.body, headers=request.headers
            )
            resp = conn.getresponse()
            body = resp.read()
        except OSError:
            raise
        except http.client.HTTPException as e:  # an answer that is not HTTP
            raise OSError(f"not an HTTP answer ({type(e).__name__})") from None
        return Response(resp.status, body, {k.lower(): v for k, v in resp.getheaders()})

    def close(self) -> None:
        """Close every thread's connection (a thread that sends again reopens its own)."""
        with self._lock:
            conns = list(self._all)
        for conn in conns:
            conn.close()


class MockTransport:
    """A transport that answers each request with ``handler(request)``, in memory (for tests). The
    handler may raise an ``OSError`` to play an unreachable server. ``requests`` lists what was sent."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    def send(self, request: Request, *, reuse: bool = True) -> Response:
        self.requests.append(request)
        return self.handler(request)

    def close(self) -> None:
        self.closed = True


# -- the async side --------------------------------------------------------------------------------
#
# Why threads and not asyncio streams: the one transport above (its connections, TLS, timeouts and
# retry rule) then serves sync and async callers alike, instead of a second HTTP client written on
# asyncio streams. A request in flight holds one pool thread, which waits on its socket with the
# GIL released; the event loop only awaits a future. The pool is the SDK's own (not the loop's
# default executor, which the agent's code may need) and its threads live on, so each keeps its
# keep-alive connection for the next request. Long polls (an approval's wait, up to tens of seconds
# each) have a pool of their own, so tasks waiting for a person never hold up the quick control
# calls (budget reservations) of the agent's other tasks.

_POOL_SIZE = 32
WAIT_POOL_SIZE = 64
_pools: dict[bool, concurrent.futures.ThreadPoolExecutor] = {}
_pool_lock = threading.Lock()


def _executor(long_poll: bool = False) -> concurrent.futures.ThreadPoolExecutor:
    pool = _pools.get(long_poll)
    if pool is None:
        with _pool_lock:
            pool = _pools.get(long_poll)
            if pool is None:
                pool = _pools[long_poll] = concurrent.futures.ThreadPoolExecutor(
                    WAIT_POOL_SIZE if long_poll else _POOL_SIZE,
                    thread_name_prefix="controlroom-wait" if long_poll else "controlroom-io",
                )
    return pool


def in_background(fn: Callable[[], object]) -> None:
    """Run ``fn()`` (blocking) on the SDK's I/O threads, without waiting for it."""
    _executor().submit(fn)


async def in_thread(
    fn: Callable[[], T], *, abandoned: Callable[[T], None] | None = None, long_poll: bool = False
) -> T:
    """``fn()`` (a blocking request) awaited without blocking the event loop; ``long_poll`` for a
    request the server may hold for long (it runs on the pool of long polls).

    When the awaiting task is cancelled while ``fn`` runs, the task ends at once; ``fn`` finishes in
    its thread (a request cannot be taken back once sent) and ``abandoned`` receives its result, to
    undo what it did (release a hold no one will use)."""
    future = _executor(long_poll).submit(fn)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if abandoned is not None:
            undo = abandoned

            def done(f: concurrent.futures.Future[T]) -> None:
                if not f.cancelled() and f.exception() is None:
                    undo(f.result())

            future.add_done_callback(done)
        raise
