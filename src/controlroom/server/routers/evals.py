"""Evals over HTTP: configurations (admins), jobs and their progress, backfills (with a preview
of how many runs and what a judge would cost), regressions with their evidence, the detection
settings, and scores people and agents add by hand."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Path, Query
from pydantic import WithJsonSchema
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool

from controlroom.errors import ValidationFailed
from controlroom.evals import configs as cf
from controlroom.evals import jobs, monitor
from controlroom.events import format_ts, parse_ts
from controlroom.server.auth import AdminProject, Permission, Principal, ReadProject, requires
from controlroom.server.deps import QueryText, StoreDep, in_read
from controlroom.server.eval_schemas import (
    CheckOut,
    ConfigIn,
    ConfigList,
    ConfigOut,
    ConfigPatch,
    DailyScore,
    DailyScores,
    EvalSettings,
    EvalSettingsOut,
    ItemError,
    JobDetail,
    JobList,
    JobOut,
    PreviewOut,
    RegressionList,
    RegressionOut,
    RunJobIn,
    ScoreCreated,
    ScoreIn,
    SelectorOut,
    Side,
)
from controlroom.server.responses import JSONResponse
from controlroom.server.schemas import DAY_SCHEMA, problems
from controlroom.store import log
from controlroom.store.tables import runs, scores

router = APIRouter(tags=["evals"])
ConfigName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", description="The configuration's name")
]
RECENT_JOBS = 5


def job_out(j: jobs.Job) -> JobOut:
    return JobOut(
        id=j.id,
        config=j.config,
        kind=j.kind,
        state=j.state,
        since=format_ts(j.since_ns),
        until=format_ts(j.until_ns),
        total=j.total,
        processed=j.processed,
        scored=j.scored,
        not_applicable=j.not_applicable,
        errors=j.errors,
        skipped=j.skipped,
        note=j.note,
        created_at=format_ts(j.created_at) or "",
        started_at=format_ts(j.started_at),
        finished_at=format_ts(j.finished_at),
    )


def config_out(conn: Connection, c: cf.EvalConfig) -> ConfigOut:
    e = c.resolve()
    return ConfigOut(
        name=c.name,
        evaluator=c.evaluator,
        evaluator_name=e.name,
        evaluator_version=e.version,
        params=c.params,
        selector=SelectorOut(**c.selector.as_json()),
        trigger=c.trigger,
        schedule=c.schedule,
        timezone=c.timezone,
        window_seconds=c.window_seconds,
        grace_seconds=c.grace_seconds,
        next_run_at=format_ts(c.next_run_at),
        paused=c.paused,
        created_at=format_ts(c.created_at) or "",
        jobs=[
            job_out(j)
            for j in jobs.list_jobs(conn, project_id=c.project_id, config_id=c.id, limit=RECENT_JOBS)
        ],
    )


def _time(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_ts(value, future_ok=True)
    except ValueError as e:
        raise ValidationFailed(f"{field}: {e}", field=field) from None


# -- configurations --------------------------------------------------------------------------------


@router.get(
    "/v1/evals/configs",
    response_model=ConfigList,
    responses=problems(400, 401, 403),
    summary="Eval configurations",
)
async def list_configs(project: ReadProject, store: StoreDep) -> ConfigList:
    def read(conn: Connection) -> ConfigList:
        return ConfigList(configs=[config_out(conn, c) for c in cf.list_configs(conn, project_id=project.id)])

    return await in_read(store, read)


@router.post(
    "/v1/evals/configs",
    response_model=ConfigOut,
    status_code=201,
    responses=problems(400, 401, 403, 409, 422),
    summary="Add an eval configuration",
)
async def add_config(body: ConfigIn, project: AdminProject, store: StoreDep) -> ConfigOut:
    """Which evaluator (a built-in by name with its ``params``, or ``module:attribute`` importable
    by the server and its worker), over which runs (``selector``), and when (``trigger``):
    ``post_run`` (each run, ``grace_seconds`` after it ends), ``schedule`` (a cron ``schedule`` in
    ``timezone``, over the ``window_seconds`` before each time) or ``manual`` (backfills only).
    Checked when saved: an evaluator that cannot be made, bad parameters or a bad schedule are 422."""

    def write() -> ConfigOut:
        with store.write() as conn:
            c = cf.create_config(
                store,
                conn,
                project_id=project.id,
                name=body.name,
                evaluator=body.evaluator,
                params=body.params,
                selector=cf.Selector(
                    tuple(body.selector.agents),
                    tuple(body.selector.environments),
                    tuple(body.selector.tags),
                    body.selector.sample_rate,
                ),
                trigger=body.trigger,
                schedule=body.schedule,
                timezone=body.timezone,
                window_seconds=body.window_seconds,
                grace_seconds=body.grace_seconds,
            )
            return config_out(conn, c)

    return await run_in_threadpool(write)


@router.get(
    "/v1/evals/configs/{name}",
    response_model=ConfigOut,
    responses=problems(400, 401, 403, 404),
    summary="One eval configuration with its latest jobs",
)
async def get_config(name: ConfigName, project: ReadProject, store: StoreDep) -> ConfigOut:
    def read(conn: Connection) -> ConfigOut:
        return config_out(conn, cf.get_config(conn, project_id=project.id, name=name))

    return await in_read(store, read)


@router.patch(
    "/v1/evals/configs/{name}",
    response_model=ConfigOut,
    responses=problems(400, 401, 403, 404, 422),
    summary="Pause or resume an eval configuration",
)
async def patch_config(
    name: ConfigName, body: ConfigPatch, project: AdminProject, store: StoreDep
) -> ConfigOut:
    """Paused: runs that end are not queued for it and its schedule skips; resumed, its schedule
    goes on from now (missed times are not made up)."""

    def write() -> ConfigOut:
        with store.write() as conn:
            c = cf.set_paused(conn, project_id=project.id, name=name, paused=body.paused)
            return config_out(conn, c)

    return await run_in_threadpool(write)


@router.post(
    "/v1/evals/configs/{name}/jobs",
    response_model=JobOut,
    status_code=201,
    responses={
        200: {"description": "dry_run: how many runs it would judge, and the cost", "model": PreviewOut},
        **problems(400, 401, 403, 404, 422),
    },
    summary="Run a configuration now over a window of past runs (a backfill)",
)
async def run_config(name: ConfigName, body: RunJobIn, project: AdminProject, store: StoreDep) -> Any:
    """Queues a batch job over the runs that started in [``since``, ``until``) that the
    configuration's selector chooses; a worker judges them and the job reports its progress.
    Runs this evaluator version judged before are not judged again. With ``dry_run``, nothing is
    queued: the answer says how many runs it would judge and, for an LLM judge, the estimated cost."""
    since, until = _time(body.since, "since"), _time(body.until, "until")
    until = until if until is not None else time.time_ns()
    if since is not None and since >= until:
        raise ValidationFailed("since must be before until", field="since")

    def write() -> Any:
        with store.read() as conn:
            c = cf.get_config(conn, project_id=project.id, name=name)
            preview = jobs.preview(conn, c, since=since, until=until)
        if body.dry_run:  # the 200 answer's own model (the route's is the 201's)
            out = PreviewOut(runs=preview.runs, estimated_cost_usd=preview.estimated_cost_usd)
            return JSONResponse(out.model_dump(), status_code=200)
        with store.write() as conn:
            job_id = jobs.start_job(conn, c, kind="backfill", since=since, until=until, total=preview.runs)
            return job_out(jobs.get_job(conn, project_id=project.id, job_id=job_id))

    return await run_in_threadpool(write)


# -- jobs ------------------------------------------------------------------------------------------


@router.get(
    "/v1/evals/jobs",
    response_model=JobList,
    responses=problems(400, 401, 403, 404),
    summary="Eval jobs, newest first",
)
async def list_jobs(
    project: ReadProject,
    store: StoreDep,
    config: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobList:
    def read(conn: Connection) -> JobList:
        config_id = None if config is None else cf.get_config(conn, project_id=project.id, name=config).id
        return JobList(
            jobs=[
                job_out(j)
                for j in jobs.list_jobs(conn, project_id=project.id, config_id=config_id, limit=limit)
            ]
        )

    return await in_read(store, read)


@router.get(
    "/v1/evals/jobs/{job_id}",
    response_model=JobDetail,
    responses=problems(400, 401, 403, 404),
    summary="One eval job: its progress and its latest eval errors",
)
async def get_job(
    job_id: Annotated[int, Path(ge=1, le=2**31 - 1)], project: ReadProject, store: StoreDep
) -> JobDetail:
    def read(conn: Connection) -> JobDetail:
        j = jobs.get_job(conn, project_id=project.id, job_id=job_id)
        errors = [ItemError(run_id=r, type=t, message=m) for r, t, m in jobs.item_errors(conn, job_id=j.id)]
        return JobDetail(**job_out(j).model_dump(), recent_errors=errors)

    return await in_read(store, read)


@router.post(
    "/v1/evals/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses=problems(400, 401, 403, 404, 409),
    summary="Cancel a queued or running batch job",
)
async def cancel_job(
    job_id: Annotated[int, Path(ge=1, le=2**31 - 1)], project: AdminProject, store: StoreDep
) -> JobOut:
    def write() -> JobOut:
        with store.write() as conn:
            return job_out(jobs.cancel_job(conn, project_id=project.id, job_id=job_id))

    return await run_in_threadpool(write)


# -- regressions -----------------------------------------------------------------------------------


def regression_out(r: monitor.Regression) -> RegressionOut:
    d = r.details
    return RegressionOut(
        id=r.id,
        agent=r.agent,
        evaluator=r.evaluator,
        evaluator_version=r.evaluator_version,
        name=r.name,
        state=r.state,
        opened_at=format_ts(r.opened_at) or "",
        resolved_at=format_ts(r.resolved_at),
        checked_at=format_ts(r.checked_at) or "",
        clean_windows=r.clean_windows,
        evidence=r.evidence,
        test=d["test"],
        baseline=Side(**d["baseline"]),
        recent=Side(**d["recent"]),
        change=d["change"],
        ci=d["ci"],
        p=d["p"],
        q=d["q"],
        worst_run_ids=d["worst_run_ids"],
    )


@router.get(
    "/v1/evals/regressions",
    response_model=RegressionList,
    responses=problems(400, 401, 403),
    summary="Eval regressions with their evidence (open ones by default)",
)
async def list_regressions(
    project: ReadProject,
    store: StoreDep,
    state: Annotated[str, Query(pattern="^(open|resolved|all)$")] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> RegressionList:
    found = await in_read(
        store,
        monitor.list_regressions,
        project_id=project.id,
        state=None if state == "all" else state,
        limit=limit,
    )
    return RegressionList(regressions=[regression_out(r) for r in found])


@router.post(
    "/v1/evals/regressions/check",
    response_model=CheckOut,
    responses=problems(400, 401, 403),
    summary="Look for regressions now (the worker does every few minutes)",
)
async def check_regressions(project: AdminProject, store: StoreDep) -> CheckOut:
    r = await run_in_threadpool(lambda: monitor.check(store, project_id=project.id))
    return CheckOut(tested=r.tested, opened=r.opened, refreshed=r.refreshed, resolved=r.resolved)


@router.get(
    "/v1/evals/settings",
    response_model=EvalSettingsOut,
    responses=problems(400, 401, 403),
    summary="How regressions are looked for in this project",
)
async def get_settings(project: ReadProject, store: StoreDep) -> EvalSettingsOut:
    return EvalSettingsOut(**asdict(await in_read(store, monitor.get_settings, project_id=project.id)))


@router.put(
    "/v1/evals/settings",
    response_model=EvalSettingsOut,
    responses=problems(400, 401, 403, 422),
    summary="Set how regressions are looked for",
)
async def put_settings(body: EvalSettings, project: AdminProject, store: StoreDep) -> EvalSettingsOut:
    def write() -> monitor.Settings:
        with store.write() as conn:
            return monitor.set_settings(
                store, conn, project_id=project.id, settings=monitor.Settings(**body.model_dump())
            )

    return EvalSettingsOut(**asdict(await run_in_threadpool(write)))


# -- scores ----------------------------------------------------------------------------------------


@router.post(
    "/v1/scores",
    response_model=ScoreCreated,
    status_code=201,
    responses=problems(400, 401, 403, 404, 422),
    summary="Add a score to a run (a person, or an agent's key)",
)
async def add_score(
    body: ScoreIn, store: StoreDep, principal: Annotated[Principal, requires(Permission.SCORE)]
) -> ScoreCreated:
    """A score in the run log like any other, marked as a person's (``source: human``, with who)
    or an API key's (``source: sdk``). The run must be known to the read model (404 otherwise)."""
    import secrets

    from controlroom.errors import NotFound

    if body.value is None and body.label is None:
        raise ValidationFailed("a score needs a value or a label", field="value")
    person = principal.user.login if principal.user is not None else None
    score = {
        "name": body.name,
        "source": "human" if person else "sdk",
        **{
            k: v
            for k, v in (
                ("value", body.value),
                ("label", body.label),
                ("comment", body.comment),
                ("span_id", body.span_id),
            )
            if v is not None
        },
        **({"author": person} if person else {}),
    }
    now = time.time_ns()
    event_id = f"score-{'human' if person else 'api'}-{secrets.token_hex(16)}"
    run_id = body.run_id.lower()

    def write() -> None:
        with store.write() as conn:
            known = conn.execute(
                select(runs.c.run_id).where(
                    runs.c.project_id == principal.project.id, runs.c.run_id == run_id
                )
            ).first()
            if known is None:
                raise NotFound(f"no run {run_id} (or not yet projected)")
            log.append(
                store,
                conn,
                [
                    {
                        "project_id": principal.project.id,
                        "event_id": event_id,
                        "type": "score.recorded",
                        "run_id": run_id,
                        "ts": now,
                        "received_at": now,
                        "body": orjson.dumps(score),
                    }
                ],
            )

    await run_in_threadpool(write)
    return ScoreCreated(
        event_id=event_id, run_id=run_id, name=body.name, source=score["source"], author=person
    )


@router.get(
    "/v1/scores/daily",
    response_model=DailyScores,
    responses=problems(400, 401, 403, 422),
    summary="Scores per day, per agent and evaluator",
)
async def daily_scores(
    project: ReadProject,
    store: StoreDep,
    since: Annotated[
        str | None,
        Query(description="Runs that started on or after this day (YYYY-MM-DD)"),
        WithJsonSchema(DAY_SCHEMA),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="Runs that started before this day (YYYY-MM-DD)"),
        WithJsonSchema(DAY_SCHEMA),
    ] = None,
    agent: QueryText = None,
    evaluator: QueryText = None,
) -> DailyScores:
    """By the day each judged run started, in the project's timezone: how many scores, their mean
    value and mean normalised value (0..1, 1 the best), and for boolean scores how many passed.
    Without ``since`` and ``until``: the last 30 days."""
    from controlroom.projections.outcomes import NEVER
    from controlroom.projections.queries import parse_day

    tz = ZoneInfo(project.timezone)
    today = datetime.now(tz).date()
    end = parse_day(until, "until") if until else today.fromordinal(today.toordinal() + 1)
    start = parse_day(since, "since") if since else end.fromordinal(end.toordinal() - 30)
    # epoch nanoseconds (what is stored, and what SQL integers hold) end in 2262: clamped to them
    start_ns = min(
        max(0, int(datetime(start.year, start.month, start.day, tzinfo=tz).timestamp()) * 10**9), NEVER
    )
    end_ns = min(max(0, int(datetime(end.year, end.month, end.day, tzinfo=tz).timestamp()) * 10**9), NEVER)

    def read(conn: Connection) -> DailyScores:
        q = (
            select(
                runs.c.started_at,
                runs.c.agent,
                scores.c.evaluator,
                scores.c.evaluator_version,
                scores.c.name,
                scores.c.source,
                scores.c.kind,
                scores.c.value,
                scores.c.normalised,
            )
            .join(runs, (runs.c.project_id == scores.c.project_id) & (runs.c.run_id == scores.c.run_id))
            .where(
                scores.c.project_id == project.id, runs.c.started_at >= start_ns, runs.c.started_at < end_ns
            )
        )
        if agent is not None:
            q = q.where(runs.c.agent == agent)
        if evaluator is not None:
            q = q.where(scores.c.evaluator == evaluator)
        groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
        for r in conn.execute(q):
            day = datetime.fromtimestamp(r.started_at / 1e9, tz).date().isoformat()
            groups[(day, r.agent, r.evaluator, r.evaluator_version, r.name, r.source)].append(r)
        days = []
        for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
            rs = groups[key]
            values = [r.value for r in rs if r.value is not None]
            norms = [r.normalised for r in rs if r.normalised is not None]
            booleans = [r.value for r in rs if r.kind == "boolean" and r.value is not None]
            days.append(
                DailyScore(
                    day=key[0],
                    agent=key[1],
                    evaluator=key[2],
                    evaluator_version=key[3],
                    name=key[4],
                    source=key[5],
                    scores=len(rs),
                    mean_value=sum(values) / len(values) if values else None,
                    mean_normalised=sum(norms) / len(norms) if norms else None,
                    passed=int(sum(booleans)) if booleans else None,
                )
            )
        return DailyScores(timezone=project.timezone, days=days)

    return await in_read(store, read)
