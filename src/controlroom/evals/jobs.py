"""Eval jobs: judging runs with a configuration's evaluator, and recording the scores.

A **batch** job (``scheduled``, or ``backfill``: asked for now) walks the runs that started in its
window, in (start, id) order, a chunk at a time; its cursor and counts are saved after every chunk,
so a job survives restarts and reports progress. A configuration's **post-run** job is a rolling
one: its counts grow as runs end (see :mod:`controlroom.evals.postrun`).

How a chunk of runs is claimed, judged and recorded (once per evaluator version and run) is
:mod:`controlroom.evals.judging`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, tuple_, update

from controlroom.errors import Conflict, NotFound, ValidationFailed
from controlroom.evals import configs as cf
from controlroom.evals.judging import COSTLY_CHUNK, MAX_ERROR, judge_chunk
from controlroom.store.engine import Store
from controlroom.store.tables import eval_items, eval_jobs, runs

CHUNK = 1000
JOB_LEASE_NS = 120 * 10**9  # a running batch job not heard of for this long is resumed elsewhere
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    project_id: int
    config_id: int
    config: str  # its name
    kind: str
    state: str
    since_ns: int | None
    until_ns: int | None
    total: int | None
    processed: int
    scored: int
    not_applicable: int
    errors: int
    skipped: int
    note: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None


# -- reading ---------------------------------------------------------------------------------------


def _select_jobs() -> Any:
    from controlroom.store.tables import eval_configs

    return select(*eval_jobs.c, eval_configs.c.name.label("config_name")).join(
        eval_configs, eval_configs.c.id == eval_jobs.c.config_id
    )


def _job(r: Any) -> Job:
    return Job(
        r.id,
        r.project_id,
        r.config_id,
        r.config_name,
        r.kind,
        r.state,
        r.since_ns,
        r.until_ns,
        r.total,
        r.processed,
        r.scored,
        r.not_applicable,
        r.errors,
        r.skipped,
        r.note,
        r.created_at,
        r.started_at,
        r.finished_at,
    )


def get_job(conn: Connection, *, project_id: int, job_id: int) -> Job:
    row = conn.execute(
        _select_jobs().where(eval_jobs.c.id == job_id, eval_jobs.c.project_id == project_id)
    ).first()
    if row is None:
        raise NotFound(f"no eval job {job_id}")
    return _job(row)


def list_jobs(
    conn: Connection, *, project_id: int, config_id: int | None = None, limit: int = 100
) -> list[Job]:
    q = _select_jobs().where(eval_jobs.c.project_id == project_id)
    if config_id is not None:
        q = q.where(eval_jobs.c.config_id == config_id)
    return [_job(r) for r in conn.execute(q.order_by(eval_jobs.c.id.desc()).limit(limit))]


def item_errors(conn: Connection, *, job_id: int, limit: int = 20) -> list[tuple[str, str, str | None]]:
    """A job's eval errors: (run id, error type, message), the latest first."""
    rows = conn.execute(
        select(eval_items.c.run_id, eval_items.c.error_type, eval_items.c.error_message)
        .where(eval_items.c.job_id == job_id, eval_items.c.state == "error")
        .order_by(eval_items.c.finished_at.desc())
        .limit(limit)
    )
    return [(r.run_id, r.error_type or "", r.error_message) for r in rows]


# -- choosing runs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    """What a backfill would judge: the runs in the window that the selector and sampling choose,
    and (for an evaluator that says what a run costs it to judge, like the LLM judge) the estimate."""

    runs: int
    estimated_cost_usd: str | None


def _window_query(
    project_id: int, selector: cf.Selector, since: int | None, until: int | None, *columns: Any
) -> Any:
    wanted = columns or (runs.c.run_id, runs.c.started_at, runs.c.agent, runs.c.environment)
    if selector.tags and not columns:
        wanted = (*wanted, runs.c.tags)  # decoded only when a selector needs them
    q = select(*wanted).where(runs.c.project_id == project_id, runs.c.status != "running")
    if since is not None:
        q = q.where(runs.c.started_at >= since)
    if until is not None:
        q = q.where(runs.c.started_at < until)
    if selector.agents:
        q = q.where(runs.c.agent.in_(selector.agents))
    if selector.environments:
        q = q.where(runs.c.environment.in_(selector.environments))
    return q


def _chosen(rows: Sequence[Any], selector: cf.Selector) -> list[str]:
    if not selector.tags:
        return [r.run_id for r in rows if selector.sampled(r.run_id)]
    return [
        r.run_id
        for r in rows
        if selector.sampled(r.run_id) and selector.matches(r.agent, r.environment, r.tags)
    ]


def preview(conn: Connection, config: cf.EvalConfig, *, since: int | None, until: int | None) -> Preview:
    """How many runs a backfill over [since, until) would judge, before it is started."""
    n = 0
    cursor: tuple[int, str] | None = None
    if not config.selector.tags and config.selector.sample_rate >= 1:  # every run of the window
        q = _window_query(config.project_id, config.selector, since, until, func.count())
        n = int(conn.execute(q).scalar_one())
    else:
        while page := _page(conn, config, since, until, cursor):
            n += len(_chosen(page, config.selector))
            cursor = (page[-1].started_at, page[-1].run_id)
    per_run = getattr(config.resolve(), "estimated_cost_per_run_usd", None)
    estimate = None
    if per_run is not None:
        from decimal import Decimal

        estimate = str((Decimal(str(per_run)) * n).quantize(Decimal("0.000001")))
    return Preview(n, estimate)


def _page(
    conn: Connection,
    config: cf.EvalConfig,
    since: int | None,
    until: int | None,
    cursor: tuple[int, str] | None,
) -> list[Any]:
    q = _window_query(config.project_id, config.selector, since, until)
    if cursor is not None:
        q = q.where(tuple_(runs.c.started_at, runs.c.run_id) > tuple_(*cursor))
    return list(conn.execute(q.order_by(runs.c.started_at, runs.c.run_id).limit(CHUNK)))


# -- starting --------------------------------------------------------------------------------------


def start_job(
    conn: Connection,
    config: cf.EvalConfig,
    *,
    kind: str,
    since: int | None,
    until: int | None,
    total: int | None = None,
    now: int | None = None,
) -> int:
    """Queue a batch job over the runs that started in [since, until); a worker takes it."""
    now = time.time_ns() if now is None else now
    if kind not in ("scheduled", "backfill"):
        raise ValueError(kind)
    if since is not None and until is not None and since >= until:
        raise ValidationFailed("the window's start must be before its end", field="since")
    return int(
        conn.execute(
            eval_jobs.insert()
            .values(
                project_id=config.project_id,
                config_id=config.id,
                kind=kind,
                state="queued",
                since_ns=since,
                until_ns=until,
                total=total,
                created_at=now,
            )
            .returning(eval_jobs.c.id)
        ).scalar_one()
    )


def cancel_job(conn: Connection, *, project_id: int, job_id: int, now: int | None = None) -> Job:
    now = time.time_ns() if now is None else now
    n = conn.execute(
        update(eval_jobs)
        .where(
            eval_jobs.c.id == job_id,
            eval_jobs.c.project_id == project_id,
            eval_jobs.c.kind != "post_run",
            eval_jobs.c.state.in_(("queued", "running")),
        )
        .values(state="cancelled", finished_at=now)
    ).rowcount
    job = get_job(conn, project_id=project_id, job_id=job_id)
    if n != 1:
        raise Conflict(
            f"eval job {job_id} is {job.state}: only a queued or running batch job can be cancelled"
        )
    return job


# -- judging ---------------------------------------------------------------------------------------


# -- running batch jobs ----------------------------------------------------------------------------


def take_job(store: Store, *, job_id: int | None = None, now: int | None = None) -> Job | None:
    """The oldest queued batch job (or job ``job_id``, if it is one), or a running one whose worker
    went quiet, now this caller's (compare-and-set on its state and lease)."""
    now = time.time_ns() if now is None else now
    candidates = or_(
        eval_jobs.c.state == "queued",
        and_(eval_jobs.c.state == "running", eval_jobs.c.kind != "post_run", eval_jobs.c.lease_until < now),
    )
    q = select(eval_jobs.c.id, eval_jobs.c.state, eval_jobs.c.lease_until).where(candidates)
    if job_id is not None:
        q = q.where(eval_jobs.c.id == job_id)
    with store.read() as conn:
        found = conn.execute(q.order_by(eval_jobs.c.created_at, eval_jobs.c.id).limit(1)).first()
    if found is None:
        return None
    with store.write() as conn:
        n = conn.execute(
            update(eval_jobs)
            .where(eval_jobs.c.id == found.id, eval_jobs.c.state == found.state, candidates)
            .values(
                state="running",
                lease_until=now + JOB_LEASE_NS,
                started_at=func.coalesce(eval_jobs.c.started_at, now),
            )
        ).rowcount
        if n != 1:
            return None
        row = conn.execute(_select_jobs().where(eval_jobs.c.id == found.id)).one()
    return _job(row)


def run_job(store: Store, job: Job, *, stop: threading.Event | None = None) -> Job:
    """Work a batch job to its end, a chunk at a time (its cursor saved with each chunk's outcome,
    so another worker resumes where this one stopped). Stops early, leaving it resumable, when
    ``stop`` is set or the job was cancelled."""
    with store.read() as conn:
        config = cf.config_by_id(conn, job.config_id)
        cursor_text = conn.execute(select(eval_jobs.c.cursor).where(eval_jobs.c.id == job.id)).scalar()
    try:
        e = config.resolve()
    except ValidationFailed as err:
        return _finish(store, job, "failed", note=f"the evaluator cannot be made: {err.detail}")
    cursor: tuple[int, str] | None = None
    if cursor_text:
        started, _, run_id = cursor_text.partition(":")
        cursor = (int(started), run_id)
    if job.total is None:
        with store.read() as conn:
            total = preview(conn, config, since=job.since_ns, until=job.until_ns).runs
        with store.write() as conn:
            conn.execute(update(eval_jobs).where(eval_jobs.c.id == job.id).values(total=total))
    while stop is None or not stop.is_set():
        with store.read() as conn:
            page = _page(conn, config, job.since_ns, job.until_ns, cursor)
            state = conn.execute(select(eval_jobs.c.state).where(eval_jobs.c.id == job.id)).scalar()
        if state != "running":
            break  # cancelled
        if not page:
            return _finish(store, job, "done")
        chosen = _chosen(page, config.selector)
        cursor = (page[-1].started_at, page[-1].run_id)
        # an evaluator that costs (a judge: a model call a run) goes a few runs at a time, so its
        # claims and the job's lease are renewed long before they run out
        step = COSTLY_CHUNK if config.claim_first else max(1, len(chosen))
        for i in range(0, max(1, len(chosen)), step):
            last = i + step >= len(chosen)
            values: dict[str, Any] = {"lease_until": time.time_ns() + JOB_LEASE_NS}
            if last:
                values["cursor"] = f"{cursor[0]}:{cursor[1]}"
            judge_chunk(
                store,
                project_id=job.project_id,
                e=e,
                job_id=job.id,
                run_ids=chosen[i : i + step],
                config=config.name,
                job_values=values,
                claim_first=config.claim_first,
            )
            if stop is not None and stop.is_set() and not last:
                break
    with store.read() as conn:
        return get_job(conn, project_id=job.project_id, job_id=job.id)


def _finish(store: Store, job: Job, state: str, *, note: str | None = None) -> Job:
    now = time.time_ns()
    with store.write() as conn:
        values: dict[str, Any] = {"state": state, "finished_at": now, "lease_until": None}
        if note is not None:
            values["note"] = note
        conn.execute(
            update(eval_jobs).where(eval_jobs.c.id == job.id, eval_jobs.c.state == "running").values(**values)
        )
        return get_job(conn, project_id=job.project_id, job_id=job.id)


def run_due(store: Store, *, stop: threading.Event | None = None) -> int:
    """Take and work batch jobs until none is waiting; how many were worked."""
    n = 0
    while stop is None or not stop.is_set():
        job = take_job(store)
        if job is None:
            return n
        try:
            run_job(store, job, stop=stop)
        except Exception as e:
            logger.exception("eval job %s failed", job.id)
            _finish(store, job, "failed", note=f"{type(e).__name__}: {e}"[:MAX_ERROR])
        n += 1
    return n


class OnItsOwnThread:
    """A periodic job's work on a thread of its own (one at a time), so judging runs — a long
    backfill, a post-run judge calling a model — never holds up the projector or the other jobs.
    ``work(stop)`` does what is due and returns; it should look at ``stop`` between steps."""

    def __init__(self, name: str, work: Callable[[threading.Event], object]) -> None:
        self.name, self.work = name, work
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __call__(self) -> int:
        if self._thread is not None and self._thread.is_alive():
            return 0
        self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()
        return 1

    def _work(self) -> None:
        try:
            self.work(self._stop)
        except Exception:
            logger.exception("%s failed; it starts again at its next turn", self.name)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
