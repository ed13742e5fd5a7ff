"""The SDK inside a controlroom process: a client whose requests are answered by the store itself.

An LLM judge runs in the worker, which has the store but no HTTP server of its own to talk to, and
its calls must still be what every agent's calls are: runs in the run log, under the daily cost
caps, reserved before the provider is called and settled after. Rather than a second way of
recording runs and guarding calls, the judge uses the SDK unchanged (``controlroom.run``, an
instrumented provider client) with a :class:`LocalTransport`: the SDK's one transport interface,
answering each request as the server's route would, in this process —

- ``POST /v1/events``: the batch is validated and appended to the run log (``ingest_events``);
- ``POST /v1/budget/reservations`` and ``.../settle``: the budget ledger's ``reserve`` and
  ``settle``, refusals answered as the 402 problem document the server sends.

So the exporter's batching and spool, the budget guard's worst-case hold, its refusal recorded on
the run and its settlement by outcome are the SDK's own code, tested once. A database error is an
unreachable server to the SDK (an ``OSError``): events are spooled and sent again later, and a
paid call is refused (``ledger_unavailable``) — fail closed, as over HTTP.

:func:`local_client` makes a client for one project and shuts it down (flushing what it recorded
into the log) when its block ends; :func:`controlroom.sdk._client.recording_with` makes the SDK
record with it on the current thread only.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from controlroom.accounts.projects import Project, project_by_id
from controlroom.budget import ledger
from controlroom.cost.overrides import PricerCache
from controlroom.errors import ControlroomError, NotFound
from controlroom.events import format_ts
from controlroom.money import USAGE_FIELDS, Usage, to_usd
from controlroom.sdk._client import Client, SDKConfig
from controlroom.sdk._transport import Request, Response
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events

__all__ = ["LocalTransport", "local_client"]

logger = logging.getLogger(__name__)

MAX_EVENTS = 10_000
LOCAL_URL = "http://controlroom.invalid"  # never dialled: every request goes to the LocalTransport
LOCAL_KEY = "cr_local_in_process_client"  # never checked: the transport acts for its own project
SETTLE = re.compile(r"^/v1/budget/reservations/([A-Za-z0-9_-]{1,64})/settle$")


class LocalTransport:
    """The SDK's transport for one project, answered by ``store`` in this process (see the
    module's docstring). ``hold_seconds``: how long a hold lasts unsettled (the server's setting
    ``CONTROLROOM_HOLD_SECONDS`` is not known here: the default, 10 minutes)."""

    def __init__(
        self,
        store: Store,
        project_id: int,
        *,
        pricers: PricerCache | None = None,
        hold_seconds: float = ledger.HOLD_SECONDS,
    ) -> None:
        self.store = store
        self.project_id = project_id
        self.pricers = pricers or PricerCache()
        self.hold_seconds = hold_seconds
        self._project: Project | None = None

    def send(self, request: Request, *, reuse: bool = True) -> Response:
        try:
            if request.method != "POST":
                raise NotFound(f"no route {request.method} {request.path}")
            doc = _body(request)
            if request.path == "/v1/events":
                result = ingest_events(self.store, self.project_id, doc, max_events=MAX_EVENTS)
                return _json(200, result.as_dict())
            if request.path == "/v1/budget/reservations":
                return _json(201, self._reserve(doc))
            settle = SETTLE.match(request.path)
            if settle is not None:
                return _json(200, self._settle(settle.group(1), doc))
            raise NotFound(f"no route POST {request.path}")
        except ControlroomError as e:
            return _json(e.status, e.problem(), {k.lower(): v for k, v in e.headers().items()})
        except Exception as e:  # the database: to the SDK, a server it cannot reach
            logger.warning("in-process SDK request %s failed: %s: %s", request.path, type(e).__name__, e)
            raise OSError(f"the store failed: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        """Nothing to close: the store is the caller's."""

    def project(self) -> Project:
        if self._project is None:
            with self.store.read() as conn:
                self._project = project_by_id(conn, self.project_id)
        return self._project

    def _reserve(self, doc: dict[str, Any]) -> dict[str, Any]:
        r = ledger.reserve(
            self.store,
            project=self.project(),
            pricers=self.pricers,
            agent=str(doc.get("agent") or ""),
            provider=doc.get("provider"),
            model=str(doc["model"]),
            input_tokens=int(doc["input_tokens"]),
            max_output_tokens=doc.get("max_output_tokens"),
            run_id=doc.get("run_id"),
            span_id=doc.get("span_id"),
            hold_seconds=self.hold_seconds,
            reservation_id=doc.get("reservation_id"),
        )
        out: dict[str, Any] = {"reservation_id": r.reservation_id, "hold_usd": to_usd(r.hold_nanos)}
        if r.expires_at_ns is not None:
            out["expires_at"] = format_ts(r.expires_at_ns)
        return out

    def _settle(self, reservation_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        usage = doc.get("usage")
        s = ledger.settle(
            self.store,
            project=self.project(),
            pricers=self.pricers,
            reservation_id=reservation_id,
            outcome=str(doc.get("outcome")),
            usage=Usage(**{k: int(usage[k]) for k in USAGE_FIELDS if k in usage}) if usage else None,
            cost_usd=doc.get("cost_usd"),
        )
        return {
            "reservation_id": s.reservation_id,
            "state": s.state,
            "actual_usd": to_usd(s.actual_nanos),
            "hold_usd": to_usd(s.hold_nanos),
        }


@contextmanager
def local_client(
    store: Store,
    project_id: int,
    *,
    spool_dir: Path | None = None,
    strict: bool | None = None,
    flush_timeout: float = 10.0,
) -> Iterator[Client]:
    """An SDK client recording into ``project_id`` of ``store`` directly; when the block ends it is
    shut down, what it recorded appended to the log (or, if the store cannot take it now, kept in
    its spool and sent by the next client of the project).

    ``spool_dir``: by default ``$CONTROLROOM_HOME/spool/local-<digest of store and project>``, so
    a later process finds and sends what this one could not. ``strict`` (default: the
    ``CONTROLROOM_STRICT`` setting): the SDK's internal errors raise, as under tests."""
    if spool_dir is None:
        home = Path(os.environ.get("CONTROLROOM_HOME", Path.home() / ".controlroom"))
        tag = hashlib.sha256(f"{store.url}\n{project_id}".encode()).hexdigest()[:16]
        spool_dir = home / "spool" / f"local-{tag}"
    if strict is None:
        strict = os.environ.get("CONTROLROOM_STRICT", "").strip().lower() in ("1", "true", "yes", "on")
    config = SDKConfig(
        url=LOCAL_URL,
        api_key=LOCAL_KEY,
        environment=None,
        spool_dir=spool_dir,
        batch_size=500,
        max_queue=200_000,
        flush_interval=0.5,
        timeout=30.0,
        shutdown_timeout=flush_timeout,
        strict=strict,
        budget=True,
        control_timeout=30.0,
    )
    client = Client(config, transport=LocalTransport(store, project_id))
    try:
        yield client
    finally:
        if not client.shutdown():
            logger.warning("in-process SDK client: events kept in %s, sent by the next one", spool_dir)


def _body(request: Request) -> dict[str, Any]:
    raw = request.body
    if request.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    doc = orjson.loads(raw) if raw else {}
    return doc if isinstance(doc, dict) else {}


def _json(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(doc), headers or {})
