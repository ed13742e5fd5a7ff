from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, WithJsonSchema

from controlroom.approvals import requests as ap
from controlroom.errors import InvalidQuery
from controlroom.events import RUN_STATUSES, format_ts, parse_ts
from controlroom.money import Usage, parse_usd, to_usd
from controlroom.projections import queries
from controlroom.server.auth import ReadProject
from controlroom.server.deps import QueryText, StoreDep, in_read
from controlroom.server.responses import JSONResponse
from controlroom.server.schemas import (
    AFTER_2000,
    DAY_SCHEMA,
    HEX_RUN_ID,
    USD_PATTERN,
    BriefScoreOut,
    CostRow,
    CostTotal,
    Counts,
    DailyCosts,
    ErrorOut,
    RunApproval,
    RunDetail,
    RunList,
    RunListItem,
    ScoreOut,
    SpanOut,
    SpanPayloadOut,
    UsageOut,
    comma_separated,
    problems,
)

router = APIRouter(tags=["runs"])


STATUSES = comma_separated(RUN_STATUSES)
GROUPS = comma_separated(queries.GROUPS)
PROBLEMS = problems(400, 401, 403)


def _nanos(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_usd(value, "min_cost_usd")
    except ValueError as e:
        raise InvalidQuery(str(e), parameter="min_cost_usd") from None


# A run's start is never before 2000 (events are refused before then); a filter may be any time
# after, in RFC 3339 or as epoch nanoseconds (19 digits: 2001-09-09 to 2255).
TIME_SCHEMA = {
    "anyOf": [
        AFTER_2000,
        {"type": "string", "pattern": "^[1-8][0-9]{18}$"},
    ]
}


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        ns = parse_ts(int(value) if value.isdigit() else value, future_ok=True)
    except ValueError as e:
        raise InvalidQuery(f"{name}: {e}", parameter=name) from None
    return min(ns, 2**63 - 1)  # (a time past 2262 is past every run)


def _duration_ms(start: int | None, end: int | None) -> float | None:
    return (end - start) / 1e6 if end and start else None


def _usd(nanos: int | None) -> str | None:
    return None if nanos is None else to_usd(nanos)


def _error(e: queries.RunError | None) -> ErrorOut | None:
    return None if e is None else ErrorOut(type=e.type, message=e.message)


def _usage(u: Usage) -> UsageOut:
    return UsageOut(**u.as_dict())


def summary_fields(r: queries.RunSummary) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "agent": r.agent,
        "status": r.status,
        "started_at": format_ts(r.started_at_ns),
        "ended_at": format_ts(r.ended_at_ns),
        "duration_ms": _duration_ms(r.started_at_ns, r.ended_at_ns),
        "model": r.model,
        "agent_version": r.agent_version,
        "environment": r.environment,
        "session_id": r.session_id,
        "user_id": r.user_id,
        "tags": list(r.tags),
        "error": _error(r.error),
        "failing_span_id": r.failing_span_id,
        "usage": _usage(r.usage),
        "cost_usd": _usd(r.cost_nanos),
        "unpriced_calls": r.unpriced_calls,
        "counts": Counts(**r.counts),
        "refused_calls": r.refused_calls,
    }


def span_out(s: queries.SpanNode, *, payloads: bool = True) -> SpanOut:
    data = {"input": s.input, "output": s.output, "attributes": s.attributes} if payloads else {}
    return SpanOut(
        **data,
        span_id=s.span_id,
        parent_span_id=s.parent_span_id,
        kind=s.kind,
        name=s.name,
        status=s.status,
        started_at=format_ts(s.started_at_ns),
        ended_at=format_ts(s.ended_at_ns),
        duration_ms=_duration_ms(s.started_at_ns, s.ended_at_ns),
        error=_error(s.error),
        provider=s.provider,
        model=s.model,
        attempt=s.attempt,
        retry_of=s.retry_of,
        fallback_from=s.fallback_from,
        usage=None if s.usage is None else _usage(s.usage),
        cost_usd=_usd(s.cost_nanos),
        cost_source=s.cost_source,
        reported_cost_usd=_usd(s.reported_cost_nanos),
        computed_cost_usd=_usd(s.computed_cost_nanos),
        rollup=s.rollup,
        orphan=s.orphan,
        children=[span_out(c, payloads=payloads) for c in s.children],
    )


def run_approval(a: ap.Approval) -> RunApproval:
    return RunApproval(
        id=a.id,
        span_id=a.span_id,
        action=a.action,
        status=a.status,
        min_role=a.min_role.name,
        arguments_hash=a.arguments_hash,
        requested_at=format_ts(a.requested_at) or "",
        decided_at=format_ts(a.decided_at),
        decided_by=a.decided_by,
        decided_role=a.decided_role.name if a.decided_role else None,
        reason=a.reason,
        completed_at=format_ts(a.completed_at),
    )


def detail_out(
    d: queries.RunDetail, approvals: list[ap.Approval] | None = None, *, payloads: bool = True
) -> RunDetail:
    return RunDetail(
        **summary_fields(d.summary),
        inputs=d.inputs,
        output=d.output,
        metadata=d.metadata,
        spans=[span_out(s, payloads=payloads) for s in d.spans],
        scores=[
            ScoreOut(
                name=s.name,
                value=s.value,
                label=s.label,
                comment=s.comment,
                span_id=s.span_id,
                source=s.source,
                evaluator=s.evaluator,
                ts=format_ts(s.ts_ns),
                evaluator_version=s.evaluator_version,
                kind=s.kind,
                normalised=s.normalised,
                author=s.author,
            )
            for s in d.scores
        ],
        approvals=[run_approval(a) for a in sorted(approvals or (), key=lambda a: (a.requested_at, a.id))],
    )


def costs_out(c: queries.DailyCosts) -> DailyCosts:
    return DailyCosts(
        since=c.since.isoformat(),
        until=c.until.isoformat(),
        timezone=c.timezone,
        group_by=list(c.group_by),
        days=[
            CostRow(
                day=d.day.isoformat(),
                **d.group,
                calls=d.calls,
                usage=_usage(d.usage),
                cost_usd=to_usd(d.cost_nanos),
                unpriced_calls=d.unpriced_calls,
                succeeded_runs=d.succeeded_runs,
                refused_calls=d.refused_calls,
            )
            for d in c.days
        ],
        total=CostTotal(
            calls=c.calls,
            cost_usd=to_usd(c.cost_nanos),
            unpriced_calls=c.unpriced_calls,
            succeeded_runs=c.succeeded_runs,
            refused_calls=c.refused_calls,
        ),
    )


def as_json(model: BaseModel) -> dict[str, Any]:
    """A response model as the API sends it (members left at their defaults on purpose are absent:
    a cost row lists only its group_by keys)."""
    return model.model_dump(mode="json", exclude_unset=True)


def page_json(page: queries.RunPage) -> dict[str, Any]:
    items = [
        RunListItem(
            **summary_fields(r),
            scores=[
                BriefScoreOut(name=s.name, value=s.value, label=s.label, source=s.source)
                for s in page.scores.get(r.run_id, ())
            ],
        )
        for r in page.runs
    ]
    return as_json(RunList(runs=items, next_cursor=page.next_cursor))


def run_json(
    run: queries.RunDetail, approvals: list[ap.Approval] | None = None, *, payloads: bool = True
) -> dict[str, Any]:
    return as_json(detail_out(run, approvals, payloads=payloads))


MAX_RUN_APPROVALS = 500


def run_with_approvals(conn: Any, project_id: int, run_id: str, *, payloads: bool = True) -> dict[str, Any]:
    """The run and its approval requests, read in one transaction."""
    run = queries.get_run(conn, project_id, run_id, payloads=payloads)
    approvals = ap.queue(conn, project_id=project_id, run_id=run_id, limit=MAX_RUN_APPROVALS)
    return run_json(run, approvals, payloads=payloads)


def costs_json(costs: queries.DailyCosts) -> dict[str, Any]:
    return as_json(costs_out(costs))


@router.get("/v1/runs", response_model=RunList, responses=PROBLEMS, summary="List runs, newest first")
async def list_runs(
    project: ReadProject,
    store: StoreDep,
    agent: QueryText = None,
    status: Annotated[
        str | None,
        Query(
            description="One status or several, comma-separated",
        ),
        WithJsonSchema({"type": "string", "pattern": STATUSES}),
    ] = None,
    environment: QueryText = None,
    tag: QueryText = None,
    since: Annotated[
        str | None,
        Query(description="Runs started at or after (RFC 3339, or epoch ns)"),
        WithJsonSchema(TIME_SCHEMA),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="Runs started before (RFC 3339, or epoch ns)"),
        WithJsonSchema(TIME_SCHEMA),
    ] = None,
    min_cost_usd: Annotated[
        str | None,
        Query(description="Only runs that cost at least this (USD)"),
        WithJsonSchema({"type": "string", "pattern": USD_PATTERN}),
    ] = None,
    has_error: Annotated[
        bool | None,
        Query(description="Runs that failed or had an errored span"),
        WithJsonSchema({"type": "boolean"}),
    ] = None,
    score_name: Annotated[QueryText, Query(description="Runs with a score of this name")] = None,
    score_min: Annotated[
        float | None,
        Query(description="Runs with a score (of score_name, else any) at least this", allow_inf_nan=False),
    ] = None,
    score_max: Annotated[
        float | None,
        Query(description="Runs with a score (of score_name, else any) at most this", allow_inf_nan=False),
    ] = None,
    order: Annotated[
        str,
        Query(
            description="newest (the default), or by the score_name score: score_asc (worst first), score_desc"
        ),
        WithJsonSchema({"type": "string", "enum": list(queries.ORDERS)}),
    ] = "newest",
    awaiting_approval: Annotated[
        bool,
        Query(description="true: only runs with an approval request still pending"),
        WithJsonSchema({"type": "boolean"}),
    ] = False,
    refused_by_cap: Annotated[
        bool,
        Query(description="true: only runs with a call the budget refused (refused_calls > 0)"),
        WithJsonSchema({"type": "boolean"}),
    ] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(description="next_cursor of the previous page"),
        WithJsonSchema({"type": "string", "pattern": f"^$|{queries.CURSOR_PATTERN}"}),
    ] = None,
) -> JSONResponse:
    min_cost_nanos = _nanos(min_cost_usd)
    f = queries.RunFilter(
        agent=agent,
        status=tuple(s.strip() for s in status.split(",") if s.strip()) if status else (),
        environment=environment,
        tag=tag,
        since=_time(since, "since"),
        until=_time(until, "until"),
        min_cost_nanos=min_cost_nanos,
        has_error=has_error,
        score_name=score_name,
        score_min=score_min,
        score_max=score_max,
        order=order,
        awaiting_approval=awaiting_approval,
        refused_by_cap=refused_by_cap,
    )
    return JSONResponse(
        page_json(await in_read(store, queries.list_runs, project.id, f, limit=limit, cursor=cursor))
    )


@router.get(
    "/v1/runs/{run_id}",
    response_model=RunDetail,
    responses=problems(400, 401, 403, 404, s404="not_found: no such run (or not yet projected)"),
    summary="One run with its span tree, scores and approval requests",
)
async def get_run(
    run_id: Annotated[str, Path(description="32 hex digits", json_schema_extra={"pattern": HEX_RUN_ID})],
    project: ReadProject,
    store: StoreDep,
    payloads: Annotated[
        bool,
        Query(
            description="false: each span without its input, output and attributes (the tree alone, "
            "for a large run; GET /v1/runs/{run_id}/spans/{span_id} has one span's)"
        ),
        WithJsonSchema({"type": "boolean"}),
    ] = True,
) -> JSONResponse:
    rid = _hex_id(run_id, "run_id", 32)
    return JSONResponse(await in_read(store, run_with_approvals, project.id, rid, payloads=payloads))


def _hex_id(value: str, name: str, length: int) -> str:
    v = value.lower()
    if len(v) != length or any(c not in "0123456789abcdef" for c in v):
        raise InvalidQuery(f"{name} {value!r} is not {length} hex characters", parameter=name)
    return v


@router.get(
    "/v1/runs/{run_id}/spans/{span_id}",
    response_model=SpanPayloadOut,
    responses=problems(400, 401, 403, 404, s404="not_found: no such span (or not yet projected)"),
    summary="One span's input, output and attributes",
)
async def get_span_payload(
    run_id: Annotated[str, Path(description="32 hex digits", json_schema_extra={"pattern": HEX_RUN_ID})],
    span_id: Annotated[
        str, Path(description="16 hex digits", json_schema_extra={"pattern": "^[0-9a-fA-F]{16}$"})
    ],
    project: ReadProject,
    store: StoreDep,
) -> JSONResponse:
    rid, sid = _hex_id(run_id, "run_id", 32), _hex_id(span_id, "span_id", 16)
    p = await in_read(store, queries.get_span, project.id, rid, sid)
    return JSONResponse(
        as_json(SpanPayloadOut(span_id=p.span_id, input=p.input, output=p.output, attributes=p.attributes))
    )


@router.get(
    "/v1/costs/daily", response_model=DailyCosts, responses=PROBLEMS, summary="Cost and tokens per day"
)
async def costs_daily(
    project: ReadProject,
    store: StoreDep,
    since: Annotated[
        str | None,
        Query(description="First day (YYYY-MM-DD, project timezone); default 29 days before until"),
        WithJsonSchema(DAY_SCHEMA),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="Last day, inclusive; default today"),
        WithJsonSchema(DAY_SCHEMA),
    ] = None,
    group_by: Annotated[
        str | None,
        Query(description="Comma-separated: agent, provider, model"),
        WithJsonSchema({"type": "string", "pattern": GROUPS}),
    ] = None,
) -> JSONResponse:
    groups = tuple(g.strip() for g in group_by.split(",") if g.strip()) if group_by else ()
    costs = await in_read(
        store, queries.daily_costs, project.id, project.timezone, since=since, until=until, group_by=groups
    )
    return JSONResponse(costs_json(costs))
