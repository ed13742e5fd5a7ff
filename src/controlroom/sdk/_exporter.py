"""The background exporter: drains the in-memory queue in batches, gzips them, POSTs them to
/v1/events with retries and backoff, and spills to the on-disk spool whenever the server cannot
take them — never dropping an event, never doing network I/O on the agent's thread."""

from __future__ import annotations

import gzip
import logging
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from controlroom.sdk._spool import Spool
from controlroom.sdk._transport import HTTPTransport, Request, Transport, json_headers

logger = logging.getLogger("controlroom.sdk")


def _default(obj: Any) -> Any:
    """JSON for whatever an agent passes as input or output."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            pass
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return repr(obj)


def encode(events: list[dict[str, Any]]) -> bytes:
    """A gzip-encoded ``{"events": [...]}`` body."""
    try:
        raw = orjson.dumps({"events": events}, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # e.g. an int beyond 64 bits: fall back to a slower, total encoder
        import json

        raw = json.dumps({"events": events}, default=lambda o: repr(o)).encode()
    return gzip.compress(raw, compresslevel=1)


class SendError(Exception):
    """The server did not take the batch now (unreachable, 5xx, 429): retry later."""


class Rejected(Exception):
    """The server refused the batch as invalid (4xx): retrying would not help."""


class Exporter:
    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        spool_dir: Path,
        batch_size: int,
        max_queue: int,
        flush_interval: float,
        timeout: float,
        strict: bool,
        transport: Transport | None = None,
    ) -> None:
        self.transport: Transport = transport or HTTPTransport(url, timeout=timeout)
        self._headers = json_headers(api_key, gzip=True)
        self.queue: deque[dict[str, Any]] = deque()
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.strict = strict
        self.spool = Spool(spool_dir)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._send_lock = threading.Lock()
        self._backoff = 0.0
        self._retry_at = 0.0
        self._down = False
        self._thread = threading.Thread(target=self._loop, name="controlroom-exporter", daemon=True)
        self._thread.start()

    # -- called on the agent's thread: cheap, never blocks on the network ---------------------
    def put(self, event: dict[str, Any]) -> None:
        q = self.queue
        q.append(event)
        n = len(q)
        if n >= self.batch_size:
            self._wake.set()
            if n >= 4 * self.max_queue:
                self._spill()

    def _spill(self) -> None:
        """Back-pressure of last resort: the exporter cannot keep up even by spilling to disk, so the
        agent's thread writes the queue to the spool itself rather than grow memory without bound."""
        with self._send_lock:
            self.spool_rest()

    # -- the exporter thread -----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.pump()
            except Exception:
                logger.exception("controlroom exporter failed; will retry")
                self._failed()

    def pump(self, *, deadline: float | None = None) -> bool:
        """Send what can be sent now, oldest first: the spool, then the queue. When the agent
        produces faster than the server takes, full batches overflow to the spool (order kept: the
        spool always holds older events than the queue). Returns True when everything went out."""
        with self._send_lock:
            if time.monotonic() < self._retry_at and deadline is None:
                self._to_spool_if_large()
                return False
            try:
                while True:
                    if len(self.queue) >= self.max_queue:
                        self._to_spool_if_large()
                    self._replay_spool()
                    if not self.queue:
                        break
                    batch = self._drain(self.batch_size)
                    body = encode(batch)
                    try:
                        self._post(body)
                    except SendError:
                        self.spool.put(body)
                        self.spool_rest()
                        raise
                    except Rejected as e:  # kept on disk for a human, never dropped, never retried
                        self.spool.reject(self.spool.put(body))
                        logger.error("controlroom refused a batch (%s); kept in %s", e, self.spool.dead)
                        if self.strict:
                            raise AssertionError(f"controlroom refused a batch: {e}") from None
                if self._down:
                    self._down = False
                    logger.warning("controlroom server reachable again; spooled events were re-sent")
                self._backoff = 0.0
                return True
            except SendError as e:
                if not self._down:
                    self._down = True
                    logger.warning(
                        "controlroom server unavailable (%s); events are spooled to %s until it is back",
                        e,
                        self.spool.dir,
                    )
                self._failed()
                return False

    def _to_spool_if_large(self) -> None:
        if len(self.queue) >= self.batch_size:
            while len(self.queue) >= self.batch_size:
                self.spool.put(encode(self._drain(self.batch_size)))

    def spool_rest(self) -> None:
        while self.queue:
            self.spool.put(encode(self._drain(self.batch_size)))

    def _replay_spool(self) -> None:
        if not self.spool.pending():
            return
        with self.spool.replaying() as mine:
            if not mine:
                raise SendError("another process is replaying the spool")
            for path in self.spool.pending():
                try:
                    body = path.read_bytes()
                except FileNotFoundError:
                    continue
                try:
                    self._post(body)
                except Rejected as e:
                    logger.error("controlroom rejected a spooled batch (%s); kept in %s", e, self.spool.dead)
                    self.spool.reject(path)
                    continue
                path.unlink(missing_ok=True)

    def _drain(self, n: int) -> list[dict[str, Any]]:
        q = self.queue
        out = []
        try:
            for _ in range(n):
                out.append(q.popleft())
        except IndexError:
            pass
        return out

    def _failed(self) -> None:
        self._close()
        self._backoff = min(30.0, max(0.25, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)

    def _post(self, body: bytes) -> None:
        try:
            answer = self.transport.send(Request("POST", "/v1/events", body, self._headers))
        except OSError as e:
            raise SendError(str(e) or type(e).__name__) from None
        status = answer.status
        if status == 200:
            rejected = answer.json().get("rejected") or []
            if rejected:
                logger.error("controlroom rejected %d event(s): %s", len(rejected), rejected[:5])
                if self.strict:
                    raise AssertionError(f"controlroom rejected events: {rejected[:5]}")
            return
        if status == 413:
            self._post_halves(body)
            return
        if status == 429 or status >= 500:
            raise SendError(f"HTTP {status}")
        raise Rejected(f"HTTP {status}: {answer.body[:500]!r}")

    def _post_halves(self, body: bytes) -> None:
        events = orjson.loads(gzip.decompress(body))["events"]
        if len(events) <= 1:
            raise Rejected("a single event is larger than the server's body limit")
        mid = len(events) // 2
        self._post(encode(events[:mid]))
        self._post(encode(events[mid:]))

    def _close(self) -> None:
        self.transport.close()

    # -- flush and shutdown ------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Send everything queued and spooled; True if it all reached the server in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pump(deadline=deadline) and not self.spool.pending():
                return True
            remaining = deadline - time.monotonic()
            self._stop.wait(min(0.2, max(0.0, remaining)))
        return not self.queue and not self.spool.pending()

    def shutdown(self, timeout: float) -> bool:
        """Flush within ``timeout``; what could not be sent stays in the spool for a later process."""
        ok = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
        with self._send_lock:
            self.spool_rest()
        self._close()
        return ok
