from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from controlroom.errors import InvalidQuery
from controlroom.events import parse_ts
from controlroom.money import parse_usd
from controlroom.projections import queries
from controlroom.server.deps import ProjectDep, StoreDep, in_read
from controlroom.server.responses import JSONResponse
from controlroom.server.schemas import HEX_RUN_ID, DailyCosts, RunDetail, RunList, problems

router = APIRouter(tags=["runs"])
PROBLEMS = problems(400, 401)


def _nanos(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_usd(value, "min_cost_usd")
    except ValueError as e:
        raise InvalidQuery(str(e), parameter="min_cost_usd") from None


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_ts(int(value) if value.isdigit() else value)
    except ValueError as e:
        raise InvalidQuery(f"{name}: {e}", parameter=name) from None


@router.get("/v1/runs", response_model=RunList, responses=PROBLEMS, summary="List runs, newest first")
async def list_runs(
    project: ProjectDep,
    store: StoreDep,
    agent: str | None = None,
    status: Annotated[str | None, Query(description="One status or several, comma-separated")] = None,
    environment: str | None = None,
    tag: str | None = None,
    since: Annotated[str | None, Query(description="Runs started at or after (RFC 3339)")] = None,
    until: Annotated[str | None, Query(description="Runs started before (RFC 3339)")] = None,
    min_cost_usd: Annotated[str | None, Query(description="Only runs that cost at least this (USD)")] = None,
    has_error: Annotated[bool | None, Query(description="Runs that failed or had an errored span")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
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
    )
    return JSONResponse(await in_read(store, queries.list_runs, project.id, f, limit=limit, cursor=cursor))


@router.get(
    "/v1/runs/{run_id}",
    response_model=RunDetail,
    responses=problems(400, 401, 404, s404="not_found: no such run (or not yet projected)"),
    summary="One run with its span tree and scores",
)
async def get_run(
    run_id: Annotated[str, Path(description="32 hex digits", json_schema_extra={"pattern": HEX_RUN_ID})],
    project: ProjectDep,
    store: StoreDep,
) -> JSONResponse:
    rid = run_id.lower()
    if len(rid) != 32 or any(c not in "0123456789abcdef" for c in rid):
        raise InvalidQuery(f"run_id {run_id!r} is not 32 hex characters", parameter="run_id")
    return JSONResponse(await in_read(store, queries.get_run, project.id, rid))


@router.get(
    "/v1/costs/daily", response_model=DailyCosts, responses=PROBLEMS, summary="Cost and tokens per day"
)
async def costs_daily(
    project: ProjectDep,
    store: StoreDep,
    since: Annotated[
        str | None,
        Query(description="First day (YYYY-MM-DD, project timezone); default 29 days before until"),
    ] = None,
    until: Annotated[str | None, Query(description="Last day, inclusive; default today")] = None,
    group_by: Annotated[str | None, Query(description="Comma-separated: agent, provider, model")] = None,
) -> JSONResponse:
    groups = tuple(g.strip() for g in group_by.split(",") if g.strip()) if group_by else ()
    return JSONResponse(
        await in_read(
            store,
            queries.daily_costs,
            project.id,
            project.timezone,
            since=since,
            until=until,
            group_by=groups,
        )
    )
