"""Event builders for tests: plain dicts in the wire format."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

_counter = itertools.count()
BASE_TS = time.time_ns() - 3_600 * 10**9  # an hour ago: valid, and on a known day


def rid() -> str:
    return os.urandom(16).hex()


def sid() -> str:
    return os.urandom(8).hex()


def eid() -> str:
    return f"ev-{os.getpid()}-{next(_counter)}-{os.urandom(4).hex()}"


def event(
    type_: str, run_id: str, body: dict[str, Any], ts: int | None = None, id_: str | None = None
) -> dict[str, Any]:
    return {
        "id": id_ or eid(),
        "type": type_,
        "run_id": run_id,
        "ts": BASE_TS if ts is None else ts,
        "body": body,
    }


def run_started(
    run_id: str, agent: str = "support-bot", ts: int | None = None, **body: Any
) -> dict[str, Any]:
    return event(
        "run.started", run_id, {"agent": agent, "inputs": {"question": "where is my order?"}, **body}, ts
    )


def run_ended(run_id: str, status: str = "succeeded", ts: int | None = None, **body: Any) -> dict[str, Any]:
    return event("run.ended", run_id, {"status": status, **body}, ts)


def span_started(
    run_id: str, span_id: str, kind: str = "llm", name: str = "chat", ts: int | None = None, **body: Any
) -> dict[str, Any]:
    return event("span.started", run_id, {"span_id": span_id, "kind": kind, "name": name, **body}, ts)


def span_ended(run_id: str, span_id: str, ts: int | None = None, **body: Any) -> dict[str, Any]:
    return event("span.ended", run_id, {"span_id": span_id, **body}, ts)


def llm_usage(input_tokens: int = 1000, output_tokens: int = 200, **more: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, **more}
