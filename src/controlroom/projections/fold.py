"""Pure folding of log events into run and span rows (dicts of the read-model columns).

No database here: the projector loads rows, these functions change them, the projector writes them.
Every merge is written so that the final row does not depend on the arrival order of a span's
start and end (end before start works), and a run's aggregates are recomputed from its spans.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from controlroom import events as ev
from controlroom.cost import Pricer
from controlroom.money import USAGE_FIELDS, Usage, to_nanos

Row = dict[str, Any]

TOKEN_FIELDS = USAGE_FIELDS
# The counters of a cost_daily row, in the order of a contributions() list.
COST_FIELDS = ("calls", *TOKEN_FIELDS, "cost_nanos", "unpriced_calls")
CALL_KINDS = ("llm", "embedding")
# Why the budget refused a call (POST /v1/budget/reservations answered 402): the SDK records the
# reason on the refused span as this attribute. (ledger_unavailable, the SDK failing closed when it
# cannot ask, is no refusal by a cap.)
REFUSAL_ATTRIBUTE = "controlroom.budget.reason"
CAP_REFUSALS = ("cap_reached", "held_by_in_flight_calls", "unpriced_model")


def new_span(project_id: int, run_id: str, span_id: str, seq: int) -> Row:
    return {
        "project_id": project_id,
        "run_id": run_id,
        "span_id": span_id,
        "parent_span_id": None,
        "kind": None,
        "name": None,
        "status": "running",
        "started_at": None,
        "ended_at": None,
        "input": None,
        "output": None,
        "attributes": None,
        "error_type": None,
        "error_message": None,
        "provider": None,
        "model": None,
        "attempt": None,
        "retry_of": None,
        "fallback_from": None,
        **dict.fromkeys(TOKEN_FIELDS),
        "reported_cost_nanos": None,
        "computed_cost_nanos": None,
        "cost_nanos": None,
        "cost_source": None,
        "first_seq": seq,
    }


def new_run(project_id: int, run_id: str, seq: int, ts: int, received_at: int) -> Row:
    return {
        "project_id": project_id,
        "run_id": run_id,
        "agent": None,
        "status": "running",
        "inputs": None,
        "output": None,
        "model": None,
        "agent_version": None,
        "environment": None,
        "session_id": None,
        "user_id": None,
        "tags": None,
        "metadata": None,
        "started_at": ts,
        "ended_at": None,
        "has_start": False,
        "end_status": None,
        "abandoned_at": None,
        "failing_span_id": None,
        "error_type": None,
        "error_message": None,
        "end_error_type": None,
        "end_error_message": None,
        "end_failing_span_id": None,
        **dict.fromkeys(TOKEN_FIELDS, 0),
        "cost_nanos": 0,
        "unpriced_calls": 0,
        "span_count": 0,
        "llm_count": 0,
        "tool_count": 0,
        "retry_count": 0,
        "fallback_count": 0,
        "error_count": 0,
        "has_error": False,
        "refused_count": 0,
        "last_event_at": received_at,
        "first_seq": seq,
    }


def apply_run_event(run: Row, etype: str, ts: int, body: dict[str, Any]) -> None:
    """Fold one run event (its body as the log stores it) into the run's row."""
    body = ev.with_defaults(etype, body)
    if etype == ev.RUN_STARTED:
        run["has_start"] = True
        run["started_at"] = ts
        for key in ("agent", "inputs", "model", "agent_version", "environment", "session_id", "user_id"):
            run[key] = body[key]
        run["tags"] = body["tags"]
        run["metadata"] = body["metadata"]
    elif etype == ev.RUN_ENDED:
        run["ended_at"] = ts
        run["end_status"] = body["status"]
        run["output"] = body["output"]
        error = body["error"] or {}
        run["end_error_type"] = error.get("type")
        run["end_error_message"] = error.get("message")
        run["end_failing_span_id"] = body["failing_span_id"]
        run["abandoned_at"] = None
    elif etype == ev.RUN_ABANDONED and run["end_status"] is None:
        run["abandoned_at"] = ts


def apply_span_event(span: Row, etype: str, ts: int, body: dict[str, Any]) -> None:
    """Fold one span event (its body as the log stores it) into the span's row."""
    body = ev.with_defaults(etype, body)
    ended_before = span["ended_at"] is not None
    if etype in (ev.SPAN_STARTED, ev.SPAN_RECORDED):
        span["started_at"] = ts
        for key in ("parent_span_id", "kind", "name", "input"):
            span[key] = body[key]
    if etype in (ev.SPAN_ENDED, ev.SPAN_RECORDED):
        span["ended_at"] = body["ended_at"] if etype == ev.SPAN_RECORDED else ts
        span["status"] = body["status"]
        span["output"] = body["output"]
        error = body["error"] or {}
        span["error_type"] = error.get("type")
        span["error_message"] = error.get("message")
        if span["status"] == "error" and span["error_type"] is None:
            span["error_type"] = "error"
        if body["usage"] is not None:
            for key in TOKEN_FIELDS:
                span[key] = body["usage"][key]
        if body["cost_usd"] is not None:
            span["reported_cost_nanos"] = to_nanos(body["cost_usd"])
    # Identity fields: the end's values (the response model) win over the start's (the request model).
    start_only = etype == ev.SPAN_STARTED and ended_before
    for key in ("provider", "model", "attempt", "retry_of", "fallback_from"):
        value = body[key]
        if value is not None and not (start_only and span[key] is not None):
            span[key] = value
    attrs = body["attributes"]
    if attrs:
        merged = dict(span["attributes"] or {})
        if start_only:
            merged = {**attrs, **merged}
        else:
            merged.update(attrs)
        span["attributes"] = merged


def price_span(span: Row, pricer: Pricer) -> None:
    """Set cost_nanos / computed_cost_nanos / cost_source from the span's usage and reported cost."""
    has_usage = span["input_tokens"] is not None
    computed = None
    if has_usage:
        usage = Usage(**{k: span[k] or 0 for k in TOKEN_FIELDS})
        at = span["started_at"] or span["ended_at"] or 0
        computed = pricer.cost_nanos(provider=span["provider"], model=span["model"], usage=usage, at_ns=at)
    span["computed_cost_nanos"] = computed
    if span["reported_cost_nanos"] is not None:
        span["cost_nanos"], span["cost_source"] = span["reported_cost_nanos"], "reported"
    elif computed is not None:
        span["cost_nanos"], span["cost_source"] = computed, "computed"
    elif has_usage:
        span["cost_nanos"], span["cost_source"] = None, "unknown"
    else:
        span["cost_nanos"], span["cost_source"] = None, None


def rollups(spans: list[Row]) -> set[str]:
    """Spans whose usage is the sum of their descendants' (an LLM-framework span around the
    provider call, an agent span reporting its children's usage): never counted as calls."""
    return rollup_ids((s["span_id"], s["parent_span_id"], s["cost_source"] is not None) for s in spans)


def rollup_ids(spans: Iterable[tuple[str, str | None, bool]]) -> set[str]:
    """:func:`rollups` of spans given as (span id, parent span id, has a cost source): the
    ancestors of every span that reported usage."""
    listed = list(spans)
    parent_of = {span_id: parent for span_id, parent, _ in listed}
    out: set[str] = set()
    for _, parent, costed in listed:
        if not costed:
            continue
        while parent is not None and parent in parent_of and parent not in out:
            out.add(parent)
            parent = parent_of[parent]
    return out


def calls(spans: list[Row]) -> list[Row]:
    """The spans that are model calls, each counted once."""
    skip = rollups(spans)
    return [
        s
        for s in spans
        if (s["kind"] in CALL_KINDS or s["cost_source"] is not None) and s["span_id"] not in skip
    ]


AGENT_ATTRIBUTES = ("gen_ai.agent.name", "agent.name", "service.name")


def summarise_run(run: Row, spans: Iterable[Row]) -> None:
    """Recompute a run's aggregates, status, failing span and error from its spans."""
    spans = list(spans)
    if not run["has_start"]:  # no run.started (e.g. a trace whose root never arrived)
        times = [t for s in spans for t in (s["started_at"], s["ended_at"]) if t is not None]
        run["started_at"] = min([run["started_at"], *times])
        run["agent"] = next(
            (
                str(a[k])[:256]
                for s in sorted(spans, key=lambda s: s["first_seq"])
                if (a := s["attributes"])
                for k in AGENT_ATTRIBUTES
                if a.get(k)
            ),
            None,
        )
    counted = calls(spans)
    for key in TOKEN_FIELDS:
        run[key] = sum(s[key] or 0 for s in counted)
    run["cost_nanos"] = sum(s["cost_nanos"] or 0 for s in counted)
    run["unpriced_calls"] = sum(1 for s in counted if s["cost_source"] == "unknown")
    run["span_count"] = len(spans)
    run["llm_count"] = sum(1 for s in counted if s["kind"] == "llm")
    run["tool_count"] = sum(1 for s in spans if s["kind"] == "tool")
    run["retry_count"] = sum(1 for s in spans if s["retry_of"] or (s["attempt"] or 1) > 1)
    run["fallback_count"] = sum(1 for s in spans if s["fallback_from"])
    run["error_count"] = sum(1 for s in spans if s["status"] == "error")
    run["refused_count"] = sum(
        1
        for s in spans
        if s["status"] == "error" and (s["attributes"] or {}).get(REFUSAL_ATTRIBUTE) in CAP_REFUSALS
    )
    if run["end_status"] is not None:
        run["status"] = run["end_status"]
    elif run["abandoned_at"] is not None:
        run["status"] = "abandoned"
    else:
        run["status"] = "running"
    failed = run["status"] in ("failed", "abandoned")
    run["has_error"] = failed or run["error_count"] > 0
    run["failing_span_id"] = run["error_type"] = run["error_message"] = None
    if not failed:
        if run["end_error_type"]:  # e.g. why a run was cancelled
            run["error_type"], run["error_message"] = run["end_error_type"], run["end_error_message"]
        return
    by_id = {s["span_id"]: s for s in spans}
    failing = by_id.get(run["end_failing_span_id"] or "") or root_cause(spans)
    if failing is not None:
        run["failing_span_id"] = failing["span_id"]
    if run["end_error_type"]:
        run["error_type"], run["error_message"] = run["end_error_type"], run["end_error_message"]
    elif failing is not None:
        run["error_type"], run["error_message"] = failing["error_type"], failing["error_message"]
    elif run["status"] == "abandoned":
        run["error_type"] = "abandoned"
        run["error_message"] = "the run sent no events for the quiet period and never ended"


def root_cause(spans: list[Row]) -> Row | None:
    """The failing span: follow the chain of errored spans from the top down, taking the one that
    ended last at each level, to the deepest one (the error that the others propagated)."""
    errored = [s for s in spans if s["status"] == "error"]
    if not errored:
        return None
    ids = {s["span_id"] for s in errored}
    children: dict[str | None, list[Row]] = {}
    for s in errored:
        parent = s["parent_span_id"] if s["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(s)

    def last(rows: list[Row]) -> Row:
        return max(rows, key=lambda s: (s["ended_at"] or 0, s["first_seq"]))

    node = last(children.get(None) or errored)  # (spans naming each other as parents have no top)
    seen = {node["span_id"]}
    while node["span_id"] in children:
        below = [c for c in children[node["span_id"]] if c["span_id"] not in seen]
        if not below:
            break
        node = last(below)
        seen.add(node["span_id"])
    return node


@dataclass(frozen=True, slots=True)
class DayKey:
    project_id: int
    day: str
    agent: str
    provider: str
    model: str


def local_day(ns: int, tz: str) -> str:
    return datetime.fromtimestamp(ns // 10**9, ZoneInfo(tz)).strftime("%Y-%m-%d")


def contributions(run: Row, spans: Iterable[Row], tz: str) -> dict[DayKey, list[int]]:
    """The run's contribution to cost_daily: per (day, agent, provider, model), the COST_FIELDS
    [calls, 5 token counts, cost_nanos, unpriced_calls]."""
    out: dict[DayKey, list[int]] = {}
    for s in calls(list(spans)):
        if s["status"] == "running":
            continue
        at = s["started_at"] or s["ended_at"]
        key = DayKey(
            run["project_id"], local_day(at, tz), run["agent"] or "", s["provider"] or "", s["model"] or ""
        )
        acc = out.setdefault(key, [0] * len(COST_FIELDS))
        acc[0] += 1
        for i, k in enumerate(TOKEN_FIELDS, start=1):
            acc[i] += s[k] or 0
        acc[6] += s["cost_nanos"] or 0
        acc[7] += s["cost_source"] == "unknown"
    return out


HourKey = tuple[int, int, str, str]  # project, UTC hour (epoch seconds // 3600), agent, model


def hourly(run: Row, spans: Iterable[Row]) -> dict[HourKey, list[int]]:
    """The run's contribution to cost_hourly: per (project, UTC hour, agent, model), [calls, cost_nanos]
    of its ended model calls, each at its start (as cost_daily counts them)."""
    out: dict[HourKey, list[int]] = {}
    for s in calls(list(spans)):
        if s["status"] == "running":
            continue
        at = s["started_at"] or s["ended_at"]
        key = (run["project_id"], at // 10**9 // 3600, run["agent"] or "", s["model"] or "")
        acc = out.setdefault(key, [0, 0])
        acc[0] += 1
        acc[1] += s["cost_nanos"] or 0
    return out


def run_hour(run: Row) -> tuple[int, int, str] | None:
    """The run's place in runs_hourly: (project, UTC hour of its start, status); None before its
    start is known."""
    if run["started_at"] is None:
        return None
    return run["project_id"], run["started_at"] // 10**9 // 3600, run["status"]


OutcomeKey = tuple[int, str, int, str, str, str]  # project, grouping, 15-min bucket, agent, provider, model
OUTCOME_BUCKET_NS = 900 * 10**9


def outcomes(run: Row, spans: Iterable[Row]) -> set[OutcomeKey]:
    """The run's rows in run_outcomes, once it succeeded: itself, and each provider, model and
    (provider, model) among its model calls (each counted once, as cost_daily counts them)."""
    if run["status"] != "succeeded" or run["started_at"] is None:
        return set()
    p, bucket, agent = run["project_id"], run["started_at"] // OUTCOME_BUCKET_NS, run["agent"] or ""
    out: set[OutcomeKey] = {(p, "run", bucket, agent, "", "")}
    for s in calls(list(spans)):
        if s["cost_source"] is None:  # a call that reported no usage (a refused one, a timeout)
            continue
        provider, model = s["provider"] or "", s["model"] or ""
        out.add((p, "provider", bucket, agent, provider, ""))
        out.add((p, "model", bucket, agent, "", model))
        out.add((p, "provider_model", bucket, agent, provider, model))
    return out


RESERVATION_ATTRIBUTE = "controlroom.reservation_id"
BUCKET_SECONDS = 900


def reservation_of(span: Row) -> str | None:
    """The budget reservation a call's span says covered it (the SDK's span attribute)."""
    rid = (span["attributes"] or {}).get(RESERVATION_ATTRIBUTE)
    return rid if isinstance(rid, str) else None


def unguarded(run: Row, spans: Iterable[Row], reserved: Container[str]) -> dict[tuple[int, int, str], int]:
    """Cost of the run's calls that no budget reservation covered, per (project, 15-min bucket, agent).
    A call counts as covered only if the reservation it names is in ``reserved`` (exists in the
    ledger, for the run's project): a made-up id, or a reservation the ledger lost, does not hide
    the call's cost from the cap."""
    out: dict[tuple[int, int, str], int] = {}
    for s in calls(list(spans)):
        if not s["cost_nanos"] or s["status"] == "running" or reservation_of(s) in reserved:
            continue
        at = s["started_at"] or s["ended_at"]
        key = (run["project_id"], at // 10**9 // BUCKET_SECONDS, run["agent"] or "")
        out[key] = out.get(key, 0) + s["cost_nanos"]
    return out
