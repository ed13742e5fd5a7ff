"""The approval gate's conversation with the server: ask, wait, claim, report the outcome.

The exceptions an agent sees when an action does not run::

    ApprovalError            the action did not run (the server could not be asked, refused the
     │                       request, or the grant was claimed before: it never runs twice)
     ├── ApprovalPending     nobody decided before the wait ended; the request stays pending
     └── ApprovalRejected    a person rejected it, it expired, or it was cancelled

The conversation is written once, as a generator of steps (a request to send, a long poll, a
pause) that receives each step's answer: :func:`run_blocking` drives it on the caller's thread,
:func:`run_awaited` awaits every step on the SDK's threads, so an async agent's event loop keeps
running while a person decides. Only the server decides: whatever goes wrong (no answer, an answer
that is not a grant), the action does not run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlroom.approvals.binding import canonical_json
from controlroom.sdk._transport import HTTPTransport, Request, Response, Transport, in_thread, json_headers

logger = logging.getLogger("controlroom.sdk")

MAX_POLL_SECONDS = 20.0
"""The longest single long poll (the server holds a wait for at most 60 s)."""
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 2.0
"""Pauses between attempts while the server cannot be reached, doubling."""
REFUSED = ("rejected", "expired", "cancelled")
USED = ("claimed", "executed", "failed")
ROLES = ("viewer", "approver", "admin")


class ApprovalError(Exception):
    """The action did not run: it was not granted. ``approval_id`` and ``status`` are the
    request's when the server answered about one (else None)."""

    controlroom_no_retry = True  # call_with_fallback does not ask again

    def __init__(
        self, message: str, *, approval_id: str | None = None, status: str | None = None, action: str = ""
    ) -> None:
        super().__init__(message)
        self.approval_id = approval_id
        self.status = status
        self.action = action


class ApprovalPending(ApprovalError):
    """Nobody decided before the wait ended. The request stays pending and visible in the queue;
    asking again with the same binding finds it (and runs the action if it was approved meanwhile)."""

    approval_id: str


class ApprovalRejected(ApprovalError):
    """A person rejected the request (``reason`` says why, ``decided_by`` who), or it expired, or
    it was cancelled (``status``)."""

    approval_id: str

    def __init__(
        self,
        message: str,
        *,
        approval_id: str,
        status: str,
        action: str = "",
        reason: str | None = None,
        decided_by: str | None = None,
    ) -> None:
        super().__init__(message, approval_id=approval_id, status=status, action=action)
        self.reason = reason
        self.decided_by = decided_by


@dataclass(frozen=True, slots=True)
class Ask:
    """One question to the server: the action, its arguments (plain JSON values) and their hash,
    what binds the request, and how long to wait for a decision."""

    run_id: str
    action: str
    arguments: Any
    arguments_hash: str
    idempotency_key: str
    agent: str
    wait: float
    span_id: str | None = None
    started_by: str | None = None
    min_role: str | None = None
    unchanged: Callable[[], bool] | None = field(default=None, compare=False)
    """False when the arguments the action would run with are no longer the ones asked about."""


# -- the steps of the conversation -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    request: Request
    undo: Request | None = None
    """Sent, in the background, when the awaiting task was cancelled and the server said yes."""


@dataclass(frozen=True, slots=True)
class Poll:
    """A long poll for what is left of the wait (measured when it is sent)."""

    approval_id: str
    deadline: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


Step = Send | Poll | Pause
Answer = Response | OSError | None  # None: a pause ended, or no time was left for a poll
Flow = Generator[Step, Answer, "Grant"]


class ApprovalClient:
    """The approval calls, through the SDK's one transport; ``timeout`` is the time allowed for an
    answer beyond what a long poll asks the server to wait."""

    def __init__(self, url: str, api_key: str, timeout: float, *, transport: Transport | None = None) -> None:
        self.transport: Transport = transport or HTTPTransport(url, timeout=timeout)
        self.timeout = timeout
        self._headers = json_headers(api_key)

    def close(self) -> None:
        self.transport.close()

    def post(self, path: str, body: Mapping[str, Any]) -> Request:
        return Request("POST", path, canonical_json(dict(body)), self._headers)

    def send(self, step: Send | Poll) -> Answer:
        """The server's answer, or why there is none (returned: it crosses from a pool thread)."""
        if isinstance(step, Poll):
            seconds = min(MAX_POLL_SECONDS, step.deadline - time.monotonic())
            if seconds < 0.001:
                return None
            timeout = f"{math.ceil(seconds * 1000) / 1000:g}"
            request = Request(
                "GET",
                f"/v1/approvals/{step.approval_id}/wait?timeout={timeout}",
                headers=self._headers,
                timeout=seconds + self.timeout,
            )
        else:
            request = step.request
        try:
            return self.transport.send(request)
        except OSError as e:
            return e

    def outcome(self, approval_id: str, outcome: str, error: Mapping[str, str] | None = None) -> Request:
        body: dict[str, Any] = {"outcome": outcome}
        if error:
            body["error"] = dict(error)
        return self.post(f"/v1/approvals/{approval_id}/outcome", body)


@dataclass(slots=True)
class Grant:
    """The one-time grant to run an approved action, claimed: run it now, with ``arguments``
    (exactly what was approved), then report how it went with :meth:`executed` or :meth:`failed`
    (``with controlroom.approval(...)`` and the decorators do that). Unreported, the request stays
    ``claimed`` for a person to resolve; it is never run again."""

    approval_id: str
    action: str
    arguments: Any
    arguments_hash: str
    decided_by: str | None
    decided_role: str | None
    reason: str | None
    outcome: str | None = None
    _client: ApprovalClient | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> str:
        return self.outcome or "claimed"

    def _report(self, outcome: str, error: BaseException | None) -> Request | None:
        if self.outcome is not None or self._client is None:
            return None
        self.outcome = outcome
        info = None if error is None else {"type": type(error).__name__, "message": str(error)[:8192]}
        return self._client.outcome(self.approval_id, outcome, info)

    def _reported(self, answer: Answer) -> bool:
        if isinstance(answer, Response) and answer.status == 200:
            return True
        why = answer if isinstance(answer, OSError) else f"HTTP {getattr(answer, 'status', '?')}"
        logger.warning(
            "controlroom: could not report approval %s as %s (%s); it stays claimed for a person to resolve",
            self.approval_id,
            self.outcome,
            why,
        )
        return False

    def executed(self) -> bool:
        """The action ran: True once the server recorded it (reported once; later calls do nothing)."""
        request = self._report("executed", None)
        return request is None or self._reported(self._send(request))

    def failed(self, error: BaseException | None = None) -> bool:
        """The action was attempted and failed with ``error``."""
        request = self._report("failed", error)
        return request is None or self._reported(self._send(request))

    async def aexecuted(self) -> bool:
        """:meth:`executed`, awaited."""
        request = self._report("executed", None)
        return request is None or self._reported(await in_thread(functools.partial(self._send, request)))

    async def afailed(self, error: BaseException | None = None) -> bool:
        """:meth:`failed`, awaited."""
        request = self._report("failed", error)
        return request is None or self._reported(await in_thread(functools.partial(self._send, request)))

    def _send(self, request: Request) -> Answer:
        assert self._client is not None
        return self._client.send(Send(request))


# -- the conversation ----------------------------------------------------------------------------


def _transient(answer: Answer) -> bool:
    """No answer, or one that says: try again later."""
    return not isinstance(answer, Response) or answer.status == 429 or answer.status >= 500


def _why(answer: Answer) -> str:
    if isinstance(answer, Response):
        doc = answer.json()
        return f"HTTP {answer.status}: {doc.get('detail') or doc.get('code') or answer.body[:200]!r}"
    return str(answer) if answer is not None else "no time was left"


def _backoff(delay: float, deadline: float) -> Pause | None:
    """A pause before trying again, or None when the wait is over."""
    left = deadline - time.monotonic()
    return None if left <= 0 else Pause(min(delay, left))


def conversation(client: ApprovalClient, ask: Ask) -> Flow:
    """Ask (or find the request asked before), wait while it is pending, claim the grant."""
    deadline = time.monotonic() + ask.wait
    doc = yield from _asked(client, ask, deadline)
    delay = FIRST_BACKOFF
    while doc.get("status") == "pending":
        answer = yield Poll(doc["id"], deadline)
        if isinstance(answer, Response) and answer.status == 200:
            doc, delay = _checked(answer.json(), ask), FIRST_BACKOFF
        elif answer is None or _transient(answer):  # out of time, or the server is away: go on trying
            pause = _backoff(delay, deadline)
            if pause is None:
                raise ApprovalPending(
                    f"approval of {ask.action!r} is still pending: nobody decided within {ask.wait:g} s; "
                    "the action did not run",
                    approval_id=doc["id"],
                    status="pending",
                    action=ask.action,
                )
            yield pause
            delay = min(delay * 2, MAX_BACKOFF)
        else:
            raise ApprovalError(
                f"waiting for approval {doc['id']} failed ({_why(answer)}); the action did not run",
                approval_id=doc["id"],
                action=ask.action,
            )
    return (yield from _claimed(client, ask, doc))


def _asked(client: ApprovalClient, ask: Ask, deadline: float) -> Generator[Step, Answer, dict[str, Any]]:
    """The request, new or found again (asking is idempotent: a request sent twice is one)."""
    body: dict[str, Any] = {
        "run_id": ask.run_id,
        "action": ask.action,
        "arguments": ask.arguments,
        "idempotency_key": ask.idempotency_key,
        "agent": ask.agent,
    }
    for name, value in (("span_id", ask.span_id), ("started_by", ask.started_by), ("min_role", ask.min_role)):
        if value is not None:
            body[name] = value
    request = client.post("/v1/approvals", body)
    delay = FIRST_BACKOFF
    while True:
        answer = yield Send(request)
        if isinstance(answer, Response) and answer.status in (200, 201):
            return _checked(answer.json(), ask)
        pause = _backoff(delay, deadline) if _transient(answer) else None
        if pause is None:
            raise ApprovalError(
                f"approval of {ask.action!r} could not be asked ({_why(answer)}); the action did not run",
                action=ask.action,
            )
        yield pause
        delay = min(delay * 2, MAX_BACKOFF)


def _checked(doc: dict[str, Any], ask: Ask) -> dict[str, Any]:
    """The server's Approval, if it is the one asked for (these arguments, this action)."""
    if not isinstance(doc.get("id"), str) or not isinstance(doc.get("status"), str):
        raise ApprovalError(f"the server's answer about {ask.action!r} is not an approval request")
    if doc.get("arguments_hash") != ask.arguments_hash:
        raise ApprovalError(
            f"the server bound approval {doc['id']} to other arguments than these; the action did not run",
            approval_id=doc["id"],
            status=doc["status"],
            action=ask.action,
        )
    return doc


def _claimed(client: ApprovalClient, ask: Ask, doc: dict[str, Any]) -> Flow:
    """Claim the grant of an approved request (compare-and-set on the server: once, ever)."""
    approval_id, status = doc["id"], doc["status"]
    if status == "approved" and ask.unchanged is not None and not ask.unchanged():
        raise ApprovalError(
            f"the arguments of {ask.action!r} changed while waiting for approval {approval_id}; "
            "the action did not run (ask again to have the new arguments approved)",
            approval_id=approval_id,
            status=status,
            action=ask.action,
        )
    if status == "approved":
        undo = client.outcome(
            approval_id, "failed", {"type": "Cancelled", "message": "the agent's task ended before it ran"}
        )
        claim = client.post(f"/v1/approvals/{approval_id}/claim", {"arguments_hash": ask.arguments_hash})
        answer = yield Send(claim, undo=undo)
        if isinstance(answer, Response) and answer.status == 200:
            claimed = answer.json()
            if claimed.get("status") == "claimed":
                return Grant(
                    approval_id=approval_id,
                    action=ask.action,
                    arguments=ask.arguments,
                    arguments_hash=ask.arguments_hash,
                    decided_by=claimed.get("decided_by"),
                    decided_role=claimed.get("decided_role"),
                    reason=claimed.get("reason"),
                    _client=client,
                )
        if _transient(answer):
            # The claim may have landed: mark it failed (if it did) so it never runs later either.
            yield Send(
                client.outcome(
                    approval_id, "failed", {"type": "ClaimUnanswered", "message": "the action did not run"}
                )
            )
            raise ApprovalError(
                f"claiming approval {approval_id} got no answer ({_why(answer)}); the action did not run",
                approval_id=approval_id,
                status="approved",
                action=ask.action,
            )
        if isinstance(answer, Response) and answer.status == 409:
            status = str(answer.json().get("status_now") or "claimed")
            doc = {**doc, "status": status}
            if status not in REFUSED:
                raise ApprovalError(
                    f"approval {approval_id} of {ask.action!r} was claimed before ({status}): "
                    "a grant runs once; the action did not run again",
                    approval_id=approval_id,
                    status=status,
                    action=ask.action,
                )
        else:
            raise ApprovalError(
                f"claiming approval {approval_id} failed ({_why(answer)}); the action did not run",
                approval_id=approval_id,
                status=status,
                action=ask.action,
            )
    raise refusal(ask.action, doc)


def refusal(action: str, doc: dict[str, Any]) -> ApprovalError:
    """What an agent is told when a request it asked for is not a grant it may claim."""
    approval_id, status = doc["id"], doc["status"]
    if status in REFUSED:
        reason, by = doc.get("reason"), doc.get("decided_by")
        said = f"{status} by {by}" if by else status
        return ApprovalRejected(
            f"approval {approval_id} of {action!r} was {said}" + (f": {reason}" if reason else ""),
            approval_id=approval_id,
            status=status,
            action=action,
            reason=reason,
            decided_by=by,
        )
    if status in USED:
        return ApprovalError(
            f"approval {approval_id} of {action!r} was claimed before ({status}): "
            "a grant runs once; the action did not run again",
            approval_id=approval_id,
            status=status,
            action=action,
        )
    return ApprovalError(
        f"approval {approval_id} of {action!r} is {status!r}; the action did not run",
        approval_id=approval_id,
        status=status,
        action=action,
    )


def run_blocking(client: ApprovalClient, flow: Flow) -> Grant:
    """Drive the conversation on this thread."""
    answer: Answer = None
    try:
        while True:
            step = flow.send(answer)
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                answer = None
            else:
                answer = client.send(step)
    except StopIteration as done:
        grant: Grant = done.value
        return grant


async def run_awaited(client: ApprovalClient, flow: Flow) -> Grant:
    """Drive the conversation awaiting each step: the event loop runs other tasks meanwhile."""
    answer: Answer = None
    try:
        while True:
            step = flow.send(answer)
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                answer = None
            else:
                answer = await in_thread(
                    functools.partial(client.send, step),
                    abandoned=_undo(client, step),
                    long_poll=isinstance(step, Poll),
                )
    except StopIteration as done:
        grant: Grant = done.value
        return grant


def _undo(client: ApprovalClient, step: Send | Poll) -> Any:
    undo = step.undo if isinstance(step, Send) else None
    if undo is None:
        return None

    def abandoned(answer: Answer) -> None:
        if isinstance(answer, Response) and answer.status == 200:
            client.send(Send(undo))

    return abandoned
