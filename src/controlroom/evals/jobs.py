"""Eval jobs: judging runs with a configuration's evaluator, and recording the scores.

A **batch** job (``scheduled``, or ``backfill``: asked for now) walks the runs that started in its
window, in (start, id) order, a chunk at a time; its cursor and counts are saved after every chunk,
so a job survives restarts and reports progress. A configuration's **post-run** job is a rolling
one: its counts grow as runs end (see :mod:`controlroom.evals.postrun`).

No run is judged twice by one evaluator version: each chunk first *claims* its runs by inserting
their ``eval_items`` rows (primary key: project, evaluator, version, run) with ``ON CONFLICT DO
NOTHING`` — the database's unique key decides, on SQLite and with any number of workers on
PostgreSQL, never a read-then-insert. Only the runs a chunk claimed are judged; then their scores
(``score.recorded`` events in the run log, with ids derived from evaluator, version, run and score
name, so a replayed score is a no-op; and their rows in the read model, so they are queryable when
the job says done) and the items' outcomes are written in one transaction. A claim whose worker
died before writing its outcome is taken over after :data:`CLAIM_LEASE_NS`.

An evaluator's exception is an eval error on the item and the job (type, message), never a failure
of the judged run, and the next run is judged. Evaluators read recorded runs only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, or_, select, tuple_, update

from controlroom.errors import Conflict, NotFound, ValidationFailed
from controlroom.evals import configs as cf
from controlroom.evals.context import EvalContext, evaluating
from controlroom.evals.evaluator import Evaluator, Outcome, Score, evaluate
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.tables import eval_items, eval_jobs, runs, scores

CHUNK = 1000
COSTLY_CHUNK = 20  # runs judged at a time by an evaluator that costs (claims renewed in between)
CLAIM_LEASE_NS = 300 * 10**9  # a claim older than this, never finished, is taken over
JOB_LEASE_NS = 120 * 10**9  # a running batch job not heard of for this long is resumed elsewhere
MAX_ERROR = 2000
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


@dataclass(frozen=True, slots=True)
class Counts:
    """What one chunk did: runs looked at, scored, not applicable, eval errors, left alone."""

    processed: int = 0
    scored: int = 0
    not_applicable: int = 0
    errors: int = 0
    skipped: int = 0

    def __add__(self, o: Counts) -> Counts:
        return Counts(
            self.processed + o.processed,
            self.scored + o.scored,
            self.not_applicable + o.not_applicable,
            self.errors + o.errors,
            self.skipped + o.skipped,
        )


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


def score_event_id(evaluator: str, version: str, run_id: str, name: str) -> str:
    """The same id every time a run gets a score of that name from that evaluator version."""
    digest = hashlib.sha256(f"{evaluator}\0{version}\0{run_id}\0{name}".encode()).hexdigest()
    return f"score-{digest[:58]}"


def normalised(e: Evaluator[..., Any], s: Score) -> float | None:
    """The score on 0..1, 1 the best: a boolean's True (the good outcome), a number within the
    evaluator's range (flipped when lower is better), a categorical score's value if it has one."""
    if s.value is None:
        return None
    if s.kind == "boolean":
        return s.value
    lo, hi = e.range
    if hi <= lo:
        return None
    x = min(1.0, max(0.0, (s.value - lo) / (hi - lo)))
    return x if e.higher_is_better else 1.0 - x


def _score_rows(
    project_id: int, run_id: str, e: Evaluator[..., Any], o: Outcome, now: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The log rows and read-model rows of an outcome's scores."""
    events, rows = [], []
    for s in o.scores:
        name = s.name or e.name
        body: dict[str, Any] = {
            "name": name,
            "source": "evaluator",
            "evaluator": e.name,
            "evaluator_version": e.version,
            "kind": s.kind,
        }
        norm = normalised(e, s)
        for key, value in (
            ("value", s.value),
            ("label", s.label),
            ("comment", s.comment),
            ("normalised", norm),
        ):
            if value is not None:
                body[key] = value
        event_id = score_event_id(e.name, e.version, run_id, name)
        events.append(
            {
                "project_id": project_id,
                "event_id": event_id,
                "type": "score.recorded",
                "run_id": run_id,
                "ts": now,
                "received_at": now,
                "body": orjson.dumps(body),
            }
        )
        rows.append(
            {
                "project_id": project_id,
                "event_id": event_id,
                "run_id": run_id,
                "span_id": None,
                "name": name,
                "value": s.value,
                "label": s.label,
                "comment": s.comment,
                "source": "evaluator",
                "evaluator": e.name,
                "ts": now,
                "evaluator_version": e.version,
                "kind": s.kind,
                "normalised": norm,
                "author": None,
            }
        )
    return events, rows


def claim(
    store: Store, *, project_id: int, e: Evaluator[..., Any], job_id: int, run_ids: Sequence[str], now: int
) -> list[str]:
    """Claim ``run_ids`` for judging by ``e``: the ones no one judged or is judging (or whose claim
    went stale). The unique key decides; returns the runs this caller may judge."""
    if not run_ids:
        return []
    with store.write() as conn:
        fresh = _insert_items(store, conn, [_item(project_id, e, job_id, r, "claimed", now) for r in run_ids])
        stale = conn.execute(
            update(eval_items)
            .where(
                eval_items.c.project_id == project_id,
                eval_items.c.evaluator == e.name,
                eval_items.c.evaluator_version == e.version,
                eval_items.c.run_id.in_([r for r in run_ids if r not in fresh]),
                eval_items.c.state == "claimed",
                eval_items.c.claimed_at < now - CLAIM_LEASE_NS,
            )
            .values(job_id=job_id, claimed_at=now)
            .returning(eval_items.c.run_id)
        )
        return [r for r in run_ids if r in fresh or r in {s.run_id for s in stale}]


def _claim_pg(store: Store, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    stmt = store.insert(eval_items).values(rows).on_conflict_do_nothing().returning(eval_items.c.run_id)
    return {r.run_id for r in conn.execute(stmt)}


@dataclass
class _Judged:
    """A chunk's outcomes, as rows to write."""

    log_rows: list[dict[str, Any]]
    score_rows: list[dict[str, Any]]
    items: dict[str, tuple[str, str | None, str | None]]  # run -> (state, error type, message)
    released: list[str]  # not judged now: gone from the read model, or skipped by the evaluator
    skipped: int
    notes: list[str]


def _judge(
    store: Store,
    project_id: int,
    e: Evaluator[..., Any],
    config: str | None,
    run_ids: Sequence[str],
    now: int,
) -> _Judged:
    from controlroom.evals.snapshot import load_runs

    with store.read() as conn:
        loaded = load_runs(conn, project_id, run_ids, reads=e.reads)
    with evaluating(EvalContext(store, project_id, config)):
        judged = [(run_id, evaluate(e, loaded[run_id]) if run_id in loaded else None) for run_id in run_ids]
    out = _Judged([], [], {}, [], 0, [])
    for run_id, o in judged:
        if o is None or o.status == "skipped":
            # gone from the read model (a rebuild under way), or left alone by the evaluator (a
            # judge's budget is spent): released, to be judged later
            out.released.append(run_id)
            if o is not None:
                out.skipped += 1
                if o.error is not None and o.error.message not in out.notes:
                    out.notes.append(o.error.message)
        elif o.status == "scored":
            ev_rows, rows = _score_rows(project_id, run_id, e, o, now)
            out.log_rows += ev_rows
            out.score_rows += rows
            out.items[run_id] = ("scored", None, None)
        elif o.status == "not_applicable":
            out.items[run_id] = ("not_applicable", None, None)
        else:
            err = o.error
            out.items[run_id] = (
                "error",
                (err.type if err else "Error")[:256],
                ((err.message if err else "") or "")[:MAX_ERROR],
            )
    return out


def _counts(j: _Judged, runs_: set[str]) -> Counts:
    states = [state for r, (state, _, _) in j.items.items() if r in runs_]
    return Counts(
        len(states), states.count("scored"), states.count("not_applicable"), states.count("error"), j.skipped
    )


def _save(
    store: Store,
    conn: Connection,
    job_id: int,
    j: _Judged,
    c: Counts,
    job_values: dict[str, Any] | None,
    mine: set[str],
) -> None:
    log.append(store, conn, [r for r in j.log_rows if r["run_id"] in mine])
    store.insert_many(
        conn,
        scores,
        [r for r in j.score_rows if r["run_id"] in mine],
        lambda stmt: stmt.on_conflict_do_nothing(),
    )
    values = dict(job_values or {}) | ({"note": "; ".join(j.notes)[:MAX_ERROR]} if j.notes else {})
    _count(conn, job_id, c, **values)


def judge_chunk(
    store: Store,
    *,
    project_id: int,
    e: Evaluator[..., Any],
    job_id: int,
    run_ids: Sequence[str],
    config: str | None = None,
    job_values: dict[str, Any] | None = None,
    claim_first: bool = True,
    now: int | None = None,
) -> Counts:
    """Judge and record the runs of ``run_ids`` (already chosen by the selector) that no one
    judged before; ``job_values`` (a batch job's cursor and lease) are saved on the job with the
    chunk's outcome.

    ``claim_first`` (any evaluator that costs something: a judge, your own): the runs are claimed
    in a transaction of their own before they are judged, so no two workers ever judge one run.
    Otherwise (the model-free built-ins, which cost nothing to run again) the runs judged before
    are left out, the others judged, and the claim and the outcome written in one transaction —
    half the commits; two workers racing on a run may both judge it, and the unique key keeps
    exactly one outcome."""
    now = time.time_ns() if now is None else now
    key = (
        eval_items.c.project_id == project_id,
        eval_items.c.evaluator == e.name,
        eval_items.c.evaluator_version == e.version,
    )
    if claim_first:
        mine = claim(store, project_id=project_id, e=e, job_id=job_id, run_ids=run_ids, now=now)
        if not mine:
            if job_values:
                with store.write() as conn:
                    conn.execute(update(eval_jobs).where(eval_jobs.c.id == job_id).values(**job_values))
            return Counts()
        j = _judge(store, project_id, e, config, mine, now)
        c = _counts(j, set(j.items))
        with store.write() as conn:
            _save(store, conn, job_id, j, c, job_values, set(j.items))
            mine_key = (*key, eval_items.c.job_id == job_id)
            for state in ("scored", "not_applicable"):
                ids = [r for r, (st, _, _) in j.items.items() if st == state]
                if ids:
                    conn.execute(
                        update(eval_items)
                        .where(*mine_key, eval_items.c.run_id.in_(ids))
                        .values(state=state, finished_at=now)
                    )
            for r, (st, etype, message) in j.items.items():
                if st == "error":
                    conn.execute(
                        update(eval_items)
                        .where(*mine_key, eval_items.c.run_id == r)
                        .values(state="error", finished_at=now, error_type=etype, error_message=message)
                    )
            if j.released:
                conn.execute(eval_items.delete().where(*mine_key, eval_items.c.run_id.in_(j.released)))
        return c
    with store.read() as conn:
        done = set(
            conn.execute(select(eval_items.c.run_id).where(*key, eval_items.c.run_id.in_(run_ids))).scalars()
        )
    j = _judge(store, project_id, e, config, [r for r in run_ids if r not in done], now)
    rows = [
        _item(project_id, e, job_id, r, state, now, finished_at=now, error_type=etype, error_message=message)
        for r, (state, etype, message) in j.items.items()
    ]
    with store.write() as conn:
        inserted = _insert_items(store, conn, rows)
        c = _counts(j, inserted)
        _save(store, conn, job_id, j, c, job_values, inserted)
    return c


def _item(
    project_id: int, e: Evaluator[..., Any], job_id: int, run_id: str, state: str, now: int, **outcome: Any
) -> dict[str, Any]:
    """An ``eval_items`` row: the claim of (evaluator version, run), and its outcome if known."""
    return {
        "project_id": project_id,
        "evaluator": e.name,
        "evaluator_version": e.version,
        "run_id": run_id,
        "job_id": job_id,
        "state": state,
        "claimed_at": now,
        "finished_at": None,
        "error_type": None,
        "error_message": None,
    } | outcome


def _insert_items(store: Store, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert item rows unless their key is taken; the runs whose rows went in."""
    if not rows:
        return set()
    if store.is_sqlite:
        stmt = store.insert(eval_items).on_conflict_do_nothing().returning(eval_items.c.run_id)
        return {r.run_id for r in conn.execute(stmt, rows)}
    return _claim_pg(store, conn, rows)


def _count(conn: Connection, job_id: int, c: Counts, **values: Any) -> None:
    conn.execute(
        update(eval_jobs)
        .where(eval_jobs.c.id == job_id)
        .values(
            processed=eval_jobs.c.processed + c.processed,
            scored=eval_jobs.c.scored + c.scored,
            not_applicable=eval_jobs.c.not_applicable + c.not_applicable,
            errors=eval_jobs.c.errors + c.errors,
            skipped=eval_jobs.c.skipped + c.skipped,
            **values,
        )
    )


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
