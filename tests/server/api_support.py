"""Helpers shared by the API tests: ids, raw events, waiting for the projector, one-off requests
and problem documents."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from controlroom.server.schemas import Problem
from tests_support import wait_for

PROBLEM_BASE = "https://controlroom.dev/problems/"


def new_run_id() -> str:
    return uuid.uuid4().hex


def new_span_id() -> str:
    return uuid.uuid4().hex[:16]


def ev(etype: str, run_id: str, ts: Any, body: dict[str, Any], *, eid: str | None = None) -> dict[str, Any]:
    return {"id": eid or "ev-" + uuid.uuid4().hex, "type": etype, "run_id": run_id, "ts": ts, "body": body}


def wait_projected(client: httpx.Client, timeout: float = 20.0) -> None:
    """Wait until the projector has folded every event in the log."""
    wait_for(lambda: client.get("/v1/health").json()["projector"]["lag_events"] == 0, timeout=timeout)


def call(
    live: Any, method: str, path: str, *, key: str | bool | None = True, **kwargs: Any
) -> httpx.Response:
    """One request on a fresh connection (the server drops a connection after a 500, which would
    otherwise surface as a ReadError on the next request of a pooled client).
    ``key``: True = the project's key, None/False = no Authorization header, str = that key."""
    headers = dict(kwargs.pop("headers", None) or {})
    if key is True:
        headers["Authorization"] = f"Bearer {live.key}"
    elif isinstance(key, str):
        headers["Authorization"] = f"Bearer {key}"
    with httpx.Client(base_url=live.url, timeout=30) as client:
        r = client.request(method, path, headers=headers, **kwargs)
        if r.status_code >= 500:
            # uvicorn logs the exception (formatting a traceback) just after sending a 500; one more
            # round trip through its event loop lets that finish first. On CPython 3.11, a traceback
            # formatted in a server thread while pytest formats a failure in this one can raise
            # "SystemError: AST constructor recursion depth mismatch" (cpython gh-106905) and abort
            # the whole session with an INTERNALERROR.
            client.get("/v1/health")
        return r


def assert_problem(r: httpx.Response, status: int, code: str, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == "application/problem+json", r.headers
    doc = r.json()
    assert {"type", "title", "status", "code", "detail"} <= set(doc), doc
    assert doc["status"] == status
    assert doc["code"] == code, doc
    assert doc["type"] == PROBLEM_BASE + code
    assert isinstance(doc["title"], str) and doc["title"]
    for needle in needles:
        assert needle.lower() in doc["detail"].lower(), (needle, doc["detail"])
    Problem.model_validate(doc)
    return doc  # type: ignore[no-any-return]
