"""An in-memory controlroom for the SDK's approval gate: the approvals HTTP contract (request,
wait, claim, outcome, cancel) and event ingest, as a MockTransport handler. Requests are bound and
claimed as the real server does (the binding's hash, compare-and-set claims); people decide with
:meth:`FakeApprovals.decide`. Waits are real long polls on a condition, never sleeps."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from controlroom.approvals.binding import arguments_hash
from controlroom.sdk._transport import MockTransport, Request, Response

FIELDS = ("id", "run_id", "span_id", "agent", "action", "arguments", "arguments_hash", "idempotency_key")
FIELDS += ("status", "min_role", "four_eyes", "requested_at", "expires_at", "decided_at", "decided_by")
FIELDS += ("decided_role", "reason", "claimed_at", "completed_at", "error")


def answer(status: int, doc: dict[str, Any] | None = None) -> Response:
    return Response(status, orjson.dumps(doc or {}), {"content-type": "application/json"})


def problem(status: int, detail: str, **extra: Any) -> Response:
    return answer(
        status,
        {"status": status, "code": "conflict" if status == 409 else "error", "detail": detail, **extra},
    )


@dataclass
class FakeApprovals:
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: list[dict[str, Any]] = field(default_factory=list)  # every POST /v1/approvals body
    claims: list[str] = field(default_factory=list)  # ids of the claims that landed
    events: list[dict[str, Any]] = field(default_factory=list)
    waits_answered_by_decision: list[bool] = field(default_factory=list)
    fail: Callable[[Request], Response | None] = lambda _request: None
    """Called first with each approval request: a Response (or an OSError raised) replaces the
    contract's answer."""
    on_wait: Callable[[], None] = lambda: None  # called when a long poll starts waiting
    cond: threading.Condition = field(default_factory=threading.Condition)

    def transport(self) -> MockTransport:
        return MockTransport(self.handle)

    # -- what a person does -------------------------------------------------------------------
    def decide(self, approval_id: str, decision: str, *, reason: str | None = None, by: str = "ada") -> None:
        with self.cond:
            a = self.approvals[approval_id]
            assert a["status"] == "pending", a["status"]
            a.update(status=decision, reason=reason, decided_by=by, decided_role="approver", decided_at="now")
            self.cond.notify_all()

    def only(self) -> dict[str, Any]:
        (a,) = self.approvals.values()
        return a

    def wait_for_request(self, count: int = 1, timeout: float = 15.0) -> dict[str, Any]:
        """The ``count``-th request once it exists."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.approvals) >= count, timeout), "no request came"
            return list(self.approvals.values())[count - 1]

    # -- the server ----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.path == "/v1/events":
            batch = orjson.loads(gzip.decompress(request.body))["events"]
            self.events.extend(batch)
            return answer(200, {"accepted": len(batch), "duplicates": 0, "rejected": []})
        replaced = self.fail(request)
        if replaced is not None:
            return replaced
        parts = urlsplit(request.path)
        path = parts.path.split("/")[1:]  # v1 approvals [id [verb]]
        body = json.loads(request.body) if request.body else {}
        if request.method == "POST" and path == ["v1", "approvals"]:
            return self._ask(body)
        approval_id, verb = path[2], path[3]
        if approval_id not in self.approvals:
            return problem(404, f"no approval request {approval_id!r}")
        if request.method == "GET" and verb == "wait":
            return self._wait(approval_id, float(parse_qs(parts.query)["timeout"][0]))
        if verb == "claim":
            return self._move(approval_id, ("approved",), "claimed", body.get("arguments_hash"))
        if verb == "outcome":
            return self._move(approval_id, ("claimed",), body["outcome"], None, error=body.get("error"))
        if verb == "cancel":
            return self._move(approval_id, ("pending", "approved"), "cancelled", None)
        return problem(404, "no such route")

    def _ask(self, body: dict[str, Any]) -> Response:
        self.asked.append(body)
        digest = arguments_hash(run_id=body["run_id"], action=body["action"], arguments=body["arguments"])
        with self.cond:
            for a in self.approvals.values():
                if (a["run_id"], a["idempotency_key"], a["arguments_hash"]) == (
                    body["run_id"],
                    body["idempotency_key"],
                    digest,
                ):
                    return answer(200, a)
            a = dict.fromkeys(FIELDS)
            a.update(
                {
                    k: body.get(k)
                    for k in ("run_id", "span_id", "agent", "action", "arguments", "idempotency_key")
                },
                id=f"ap{len(self.approvals) + 1}",
                arguments_hash=digest,
                status="pending",
                min_role=body.get("min_role") or "approver",
                four_eyes=False,
                requested_at="now",
            )
            self.approvals[a["id"]] = a
            self.cond.notify_all()
            return answer(201, a)

    def _wait(self, approval_id: str, timeout: float) -> Response:
        assert 0 < timeout <= 60, timeout
        a = self.approvals[approval_id]
        with self.cond:
            if a["status"] == "pending":
                self.on_wait()
                decided = self.cond.wait_for(lambda: a["status"] != "pending", timeout)
                self.waits_answered_by_decision.append(decided)
            return answer(200, a)

    def _move(
        self, approval_id: str, from_: tuple[str, ...], to: str, digest: str | None, **values: Any
    ) -> Response:
        with self.cond:
            a = self.approvals[approval_id]
            if digest is not None and digest != a["arguments_hash"]:
                return problem(409, "these arguments were not the ones approved", status_now=a["status"])
            if a["status"] not in from_:
                return problem(
                    409, f"approval request {approval_id} is {a['status']}", status_now=a["status"]
                )
            a.update(status=to, **values)
            if to == "claimed":
                self.claims.append(approval_id)
            self.cond.notify_all()
            return answer(200, a)
