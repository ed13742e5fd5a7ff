"""Helpers shared by the API tests: ids, raw events, waiting for the projector."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests_support import wait_for


def new_run_id() -> str:
    return uuid.uuid4().hex


def new_span_id() -> str:
    return uuid.uuid4().hex[:16]


def ev(etype: str, run_id: str, ts: Any, body: dict[str, Any], *, eid: str | None = None) -> dict[str, Any]:
    return {"id": eid or "ev-" + uuid.uuid4().hex, "type": etype, "run_id": run_id, "ts": ts, "body": body}


def wait_projected(client: httpx.Client, timeout: float = 20.0) -> None:
    """Wait until the projector has folded every event in the log."""
    wait_for(lambda: client.get("/v1/health").json()["projector"]["lag_events"] == 0, timeout=timeout)
