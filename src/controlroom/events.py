"""The run log's event types: immutable facts, named in the past tense, with stable wire names.

Every event has the envelope ``{id, type, run_id, ts, body}``:

- ``id``: a client-made unique string (<= 64 chars); re-sending the same id is a no-op.
- ``run_id``: 32 hex chars (an OpenTelemetry trace id); ``span_id``: 16 hex chars.
- ``ts``: when it happened: an RFC 3339 string (nanoseconds allowed) or integer epoch nanoseconds.

Clients send the types in ``CLIENT_EVENT_TYPES``; the server itself writes the others
(``SERVER_EVENT_TYPES``). Every type, whoever writes it, is declared here once — its body model,
its defaults, its validation — and nothing enters the log without passing :func:`validate_event`
(clients) or :func:`server_event` (the server).

The log keeps bodies without their default values (smaller rows); :func:`with_defaults` puts them
back for whoever reads the log, so a default is stated here and nowhere else.

Event formats evolve only by addition (a new optional field with a default, a new type): an event
in the log is never rewritten, and every version of a type must stay readable by the fold. A change
that cannot be made that way is a new type.
"""

from __future__ import annotations

import functools
import re
import time
import typing
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from controlroom import money
from controlroom.money import MAX_CALL_USD, MAX_TOKENS

RUN_STARTED = "run.started"
RUN_ENDED = "run.ended"
RUN_ABANDONED = "run.abandoned"  # written by the server's sweeper
APPROVAL_REQUESTED = "approval.requested"  # the approval events are written by the server alone
APPROVAL_DECIDED = "approval.decided"
APPROVAL_EXPIRED = "approval.expired"
APPROVAL_CANCELLED = "approval.cancelled"
APPROVAL_CLAIMED = "approval.claimed"
APPROVAL_EXECUTED = "approval.executed"
APPROVAL_FAILED = "approval.failed"
SPAN_STARTED = "span.started"
SPAN_ENDED = "span.ended"
SPAN_RECORDED = "span.recorded"
SCORE_RECORDED = "score.recorded"

CLIENT_EVENT_TYPES = (RUN_STARTED, RUN_ENDED, SPAN_STARTED, SPAN_ENDED, SPAN_RECORDED, SCORE_RECORDED)
APPROVAL_EVENT_TYPES = (
    APPROVAL_REQUESTED,
    APPROVAL_DECIDED,
    APPROVAL_EXPIRED,
    APPROVAL_CANCELLED,
    APPROVAL_CLAIMED,
    APPROVAL_EXECUTED,
    APPROVAL_FAILED,
)
SERVER_EVENT_TYPES = (RUN_ABANDONED, *APPROVAL_EVENT_TYPES)

SPAN_KINDS = ("agent", "llm", "tool", "retrieval", "embedding", "approval", "guardrail", "chain", "other")
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled", "abandoned")

# 2000-01-01T00:00:00Z .. now + 1 day: anything outside is a client clock or encoding bug.
MIN_TS_NS = 946_684_800 * 10**9
MAX_FUTURE_NS = 86_400 * 10**9

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})")


def parse_ts(value: Any, *, future_ok: bool = False) -> int:
    """An RFC 3339 string or integer epoch nanoseconds -> epoch nanoseconds, range-checked
    (after 2000-01-01, and — unless ``future_ok`` — no more than a day ahead)."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be an RFC 3339 string or integer epoch nanoseconds")
    if isinstance(value, int):
        ns = value
    elif isinstance(value, str):
        m = _RFC3339.fullmatch(value)
        if m is None:
            raise ValueError(f"timestamp {value!r} is not RFC 3339 (e.g. 2026-01-31T12:00:00.123456789Z)")
        date, clock, frac, tz = m.groups()
        try:
            dt = datetime.fromisoformat(f"{date}T{clock}{'+00:00' if tz in ('Z', 'z') else tz}")
        except ValueError as e:
            raise ValueError(f"timestamp {value!r}: {e}") from None
        ns = int(dt.timestamp()) * 10**9 + int((frac or "0").ljust(9, "0"))
    else:
        raise ValueError("timestamp must be an RFC 3339 string or integer epoch nanoseconds")
    if ns < MIN_TS_NS:
        raise ValueError(f"timestamp {value!r} is before 2000-01-01")
    if not future_ok and ns > time.time_ns() + MAX_FUTURE_NS:
        raise ValueError(f"timestamp {value!r} is more than a day in the future")
    return ns


def format_ts(ns: int | None) -> str | None:
    """Epoch nanoseconds -> RFC 3339 UTC string with nanoseconds."""
    if ns is None:
        return None
    secs, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _hex_id(pattern: re.Pattern[str], what: str, length: int) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{what} must be a string of {length} hex characters")
        v = value.lower()
        if pattern.fullmatch(v) is None:
            raise ValueError(f"{what} {value!r} is not {length} hex characters")
        if v.count("0") == length:
            raise ValueError(f"{what} must not be all zeros")
        return v

    return check


RunId = Annotated[
    str,
    BeforeValidator(_hex_id(_HEX32, "run_id", 32)),
    WithJsonSchema({"type": "string", "pattern": "^(?!0{32}$)[0-9a-fA-F]{32}$"}),
]
SpanId = Annotated[
    str,
    BeforeValidator(_hex_id(_HEX16, "span_id", 16)),
    WithJsonSchema({"type": "string", "pattern": "^(?!0{16}$)[0-9a-fA-F]{16}$"}),
]
Timestamp = Annotated[
    int,
    BeforeValidator(parse_ts),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "format": "date-time",
                    "pattern": "^2[0-9]{3}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
                },
                {"type": "integer", "minimum": MIN_TS_NS},
            ],
            "description": "RFC 3339 (nanoseconds allowed) or integer epoch nanoseconds, from 2000-01-01 "
            "to a day after the server's clock",
        }
    ),
]
EventId = Annotated[str, Field(min_length=1, max_length=64)]
ShortText = Annotated[str, Field(max_length=256)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]  # tokens of one call
Cost = Annotated[Decimal, Field(ge=0, le=MAX_CALL_USD, allow_inf_nan=False)]  # USD of one call


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ErrorInfo(_Body):
    type: Annotated[str, Field(min_length=1, max_length=256)]
    message: Annotated[str, Field(max_length=8192)] = ""


class Usage(_Body):
    """Token counts: ``input_tokens`` includes cached tokens, ``output_tokens`` includes reasoning tokens."""

    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    reasoning_tokens: Tokens = 0

    def counts(self) -> money.Usage:
        return money.Usage(**self.model_dump())


class RunStartedBody(_Body):
    agent: Annotated[str, Field(min_length=1, max_length=256)]
    inputs: Any = None
    model: ShortText | None = None
    agent_version: ShortText | None = None
    environment: ShortText | None = None
    session_id: ShortText | None = None
    user_id: ShortText | None = None
    tags: Annotated[list[ShortText], Field(max_length=64)] = []
    metadata: dict[str, Any] = {}


class RunEndedBody(_Body):
    status: Literal["succeeded", "failed", "cancelled"]
    output: Any = None
    error: ErrorInfo | None = None
    failing_span_id: SpanId | None = None


class _SpanFields(_Body):
    provider: ShortText | None = None
    model: ShortText | None = None
    attempt: Annotated[int, Field(ge=1, le=1000)] | None = None
    retry_of: SpanId | None = None
    fallback_from: SpanId | None = None
    attributes: dict[str, Any] = {}


class SpanStartedBody(_SpanFields):
    span_id: SpanId
    parent_span_id: SpanId | None = None
    kind: Literal[SPAN_KINDS] = "other"  # type: ignore[valid-type]
    name: Annotated[str, Field(min_length=1, max_length=256)]
    input: Any = None


class SpanEndedBody(_SpanFields):
    span_id: SpanId
    status: Literal["ok", "error"] = "ok"
    output: Any = None
    error: ErrorInfo | None = None
    usage: Usage | None = None
    cost_usd: Cost | None = None


class SpanRecordedBody(SpanStartedBody):
    ended_at: Timestamp
    status: Literal["ok", "error"] = "ok"
    output: Any = None
    error: ErrorInfo | None = None
    usage: Usage | None = None
    cost_usd: Cost | None = None


class ScoreRecordedBody(_Body):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    value: Annotated[float, Field(allow_inf_nan=False)] | None = None
    label: ShortText | None = None
    comment: Annotated[str, Field(max_length=8192)] | None = None
    span_id: SpanId | None = None
    source: Literal["sdk", "human", "evaluator"] = "sdk"
    evaluator: ShortText | None = None
    evaluator_version: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    kind: Literal["boolean", "numeric", "categorical"] | None = None
    # the value on 0..1 with 1 the best (evaluators' scores: their range and direction applied)
    normalised: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    author: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # a person's score: who


class RunAbandonedBody(_Body):
    """Written by the sweeper: the run sent nothing for ``quiet_seconds`` and never ended."""

    quiet_seconds: Annotated[float, Field(ge=0)]
    last_event_at: Annotated[int, Field(ge=0)]  # when the log last heard from the run (epoch ns)


ApprovalId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Role = Literal["viewer", "approver", "admin"]


class _ApprovalBody(_Body):
    approval_id: ApprovalId


class ApprovalRequestedBody(_ApprovalBody):
    """A sensitive action asked for a person's approval; it does not run unless approved."""

    action: ShortText
    arguments_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    idempotency_key: ShortText
    span_id: SpanId | None = None
    min_role: Role = "approver"
    four_eyes: bool = False
    expires_at: Annotated[int, Field(ge=0)] | None = None


class _ByPerson(_ApprovalBody):
    """A transition a person made: who, with which role at that moment, and why."""

    user_id: int | None = None
    user: ShortText | None = None
    role: Role | None = None
    reason: Annotated[str, Field(max_length=4096)] | None = None


class ApprovalDecidedBody(_ByPerson):
    decision: Literal["approved", "rejected"]


class ApprovalExpiredBody(_ApprovalBody):
    """Nobody decided before the request's expiry: it can never run."""


class ApprovalCancelledBody(_ByPerson):
    """The request was withdrawn before a decision (by the agent, or by a person)."""


class ApprovalClaimedBody(_ApprovalBody):
    """The agent took its one-time grant: the action is about to run."""


class ApprovalExecutedBody(_ByPerson):
    """The action ran (reported by the agent, or by a person resolving an unknown outcome)."""


class ApprovalFailedBody(_ByPerson):
    """The action was attempted and failed (reported like approval.executed)."""

    error: ErrorInfo | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: EventId
    run_id: RunId
    ts: Timestamp


class RunStarted(_Event):
    type: Literal["run.started"]
    body: RunStartedBody


class RunEnded(_Event):
    type: Literal["run.ended"]
    body: RunEndedBody


class SpanStarted(_Event):
    type: Literal["span.started"]
    body: SpanStartedBody


class SpanEnded(_Event):
    type: Literal["span.ended"]
    body: SpanEndedBody


class SpanRecorded(_Event):
    type: Literal["span.recorded"]
    body: SpanRecordedBody


class ScoreRecorded(_Event):
    type: Literal["score.recorded"]
    body: ScoreRecordedBody


class _ServerEvent(_Event):
    # the server's own clock: no "more than a day ahead" check (that one catches client clocks)
    ts: Annotated[int, BeforeValidator(functools.partial(parse_ts, future_ok=True))]


class RunAbandoned(_ServerEvent):
    type: Literal["run.abandoned"]
    body: RunAbandonedBody


AnyClientEvent = RunStarted | RunEnded | SpanStarted | SpanEnded | SpanRecorded | ScoreRecorded
ClientEvent = Annotated[AnyClientEvent, Field(discriminator="type")]
_client_event: TypeAdapter[AnyClientEvent] = TypeAdapter(ClientEvent)


class ApprovalRequested(_ServerEvent):
    type: Literal["approval.requested"]
    body: ApprovalRequestedBody


class ApprovalDecided(_ServerEvent):
    type: Literal["approval.decided"]
    body: ApprovalDecidedBody


class ApprovalExpired(_ServerEvent):
    type: Literal["approval.expired"]
    body: ApprovalExpiredBody


class ApprovalCancelled(_ServerEvent):
    type: Literal["approval.cancelled"]
    body: ApprovalCancelledBody


class ApprovalClaimed(_ServerEvent):
    type: Literal["approval.claimed"]
    body: ApprovalClaimedBody


class ApprovalExecuted(_ServerEvent):
    type: Literal["approval.executed"]
    body: ApprovalExecutedBody


class ApprovalFailed(_ServerEvent):
    type: Literal["approval.failed"]
    body: ApprovalFailedBody


AnyServerEvent = (
    RunAbandoned
    | ApprovalRequested
    | ApprovalDecided
    | ApprovalExpired
    | ApprovalCancelled
    | ApprovalClaimed
    | ApprovalExecuted
    | ApprovalFailed
)
ServerEvent = Annotated[AnyServerEvent, Field(discriminator="type")]
_server_event: TypeAdapter[AnyServerEvent] = TypeAdapter(ServerEvent)
AnyEvent = AnyClientEvent | AnyServerEvent

BODIES: dict[str, type[_Body]] = {
    RUN_STARTED: RunStartedBody,
    RUN_ENDED: RunEndedBody,
    SPAN_STARTED: SpanStartedBody,
    SPAN_ENDED: SpanEndedBody,
    SPAN_RECORDED: SpanRecordedBody,
    SCORE_RECORDED: ScoreRecordedBody,
    RUN_ABANDONED: RunAbandonedBody,
    APPROVAL_REQUESTED: ApprovalRequestedBody,
    APPROVAL_DECIDED: ApprovalDecidedBody,
    APPROVAL_EXPIRED: ApprovalExpiredBody,
    APPROVAL_CANCELLED: ApprovalCancelledBody,
    APPROVAL_CLAIMED: ApprovalClaimedBody,
    APPROVAL_EXECUTED: ApprovalExecutedBody,
    APPROVAL_FAILED: ApprovalFailedBody,
}
"""The body model of every event type in the log."""


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    return {
        name: f.get_default(call_default_factory=True)
        for name, f in model.model_fields.items()
        if not f.is_required()
    }


def _nested(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields whose value is a body model of its own (possibly optional): error, usage."""
    out: dict[str, type[BaseModel]] = {}
    for name, f in model.model_fields.items():
        for arg in (f.annotation, *typing.get_args(f.annotation)):
            if isinstance(arg, type) and issubclass(arg, _Body):
                out[name] = arg
    return out


_DEFAULTS = {etype: _defaults(model) for etype, model in BODIES.items()}
_NESTED = {etype: _nested(model) for etype, model in BODIES.items()}
_NESTED_DEFAULTS = {m: _defaults(m) for nested in _NESTED.values() for m in nested.values()}
_MUTABLE = (list, dict)


def with_defaults(etype: str, body: dict[str, Any]) -> dict[str, Any]:
    """A body as the log stores it (defaults left out) with every default put back, nested ones
    included (an ``error`` without ``message``, a ``usage`` with some counts)."""
    out = {
        k: (type(v)() if isinstance(v, _MUTABLE) else v) for k, v in _DEFAULTS[etype].items() if k not in body
    }
    out.update(body)
    for name, model in _NESTED[etype].items():
        value = out.get(name)
        if isinstance(value, dict):
            out[name] = {**_NESTED_DEFAULTS[model], **value}
    return out


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False):
        path = list(e["loc"])
        if path and path[0] in BODIES:
            path = path[1:]  # the union's tag, not part of the event
        loc = ".".join(str(p) for p in path)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            msg = f"unknown event type; expected one of {', '.join(CLIENT_EVENT_TYPES)}"
        elif e["type"] == "union_tag_not_found":
            msg = "missing event type"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def server_event(etype: str, *, id: str, run_id: str, ts: int, body: dict[str, Any]) -> AnyServerEvent:
    """An event the server writes, validated like a client's: a bad one is a bug, raised here as
    ValueError rather than stored."""
    if etype not in SERVER_EVENT_TYPES:
        raise ValueError(f"{etype!r} is not a server event type")
    try:
        return _server_event.validate_python(
            {"id": id, "type": etype, "run_id": run_id, "ts": ts, "body": body}
        )
    except ValidationError as e:
        raise ValueError(f"{etype}: {_reason(e)}") from None


def validate_event(raw: Any) -> AnyClientEvent:
    """Validate one client event; raises ValueError with a readable reason."""
    if isinstance(raw, dict) and raw.get("type") in SERVER_EVENT_TYPES:
        raise ValueError(f"type: {raw['type']!r} is written by the server, clients cannot send it")
    try:
        event = _client_event.validate_python(raw)
    except ValidationError as e:
        raise ValueError(_reason(e)) from None
    if isinstance(event, ScoreRecorded) and event.body.value is None and event.body.label is None:
        raise ValueError("body: a score needs a value or a label")
    if isinstance(event, SpanStarted | SpanRecorded) and event.body.parent_span_id == event.body.span_id:
        raise ValueError("body.parent_span_id: a span cannot be its own parent")
    if isinstance(event, SpanRecorded) and event.body.ended_at < event.ts:
        raise ValueError("body.ended_at: a span cannot end before it starts (ts)")
    return event
