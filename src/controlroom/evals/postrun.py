"""Post-run evals: each run that ends is judged by the project's post-run configurations, a grace
period after it ended (late spans arrive first).

The ``evals`` log consumer follows the run log for ``run.ended`` and ``run.abandoned`` with a
position of its own, and queues (configuration, run) with the time it is due, in the transaction
that saves its position: a duplicate event is not in the log twice, and a rebuild of the read model
replays the projector only — this consumer never sees those events again, so evals never re-run.
The ``evals_postrun`` job judges what is due (:func:`judge_due`); the unique key of
:mod:`controlroom.evals.jobs` keeps two workers from judging a run twice.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Connection, delete, select, tuple_, update

from controlroom import events as ev
from controlroom.errors import ValidationFailed
from controlroom.evals import configs as cf
from controlroom.evals import judging
from controlroom.store.engine import Store
from controlroom.store.log import LoggedEvent
from controlroom.store.tables import eval_jobs, eval_postrun, runs

NAME = "evals"
ENDINGS = (ev.RUN_ENDED, ev.RUN_ABANDONED)
NOT_PROJECTED_RETRY_NS = 5 * 10**9  # a due run the read model does not hold yet: look again then
BATCH = 1000


def handle(store: Store, conn: Connection, batch: Sequence[LoggedEvent]) -> int:
    """Queue the runs of ``batch`` that ended for the active post-run configurations of their
    project, in the caller's transaction (which also saves the position). Returns how many."""
    ended = [e for e in batch if e.type in ENDINGS]
    if not ended:
        return 0
    by_project: dict[int, list[cf.EvalConfig]] = defaultdict(list)
    for c in cf.list_configs(conn, trigger="post_run"):
        if not c.paused:
            by_project[c.project_id].append(c)
    rows = [
        {
            "config_id": c.id,
            "run_id": e.run_id,
            "project_id": e.project_id,
            "due_at": e.received_at + int(c.grace_seconds * 1e9),
        }
        for e in ended
        for c in by_project.get(e.project_id, ())
    ]
    if rows:
        store.insert_many(conn, eval_postrun, rows, lambda stmt: stmt.on_conflict_do_nothing())
    return len(rows)


def judge_due(store: Store, *, now: int | None = None) -> int:
    """Judge the queued runs that are due, configuration by configuration; returns how many runs
    were looked at. A run judged before (by this evaluator version) is not judged again."""
    now = time.time_ns() if now is None else now
    with store.read() as conn:
        due = conn.execute(
            select(eval_postrun.c.config_id, eval_postrun.c.run_id, eval_postrun.c.project_id)
            .where(eval_postrun.c.due_at <= now)
            .order_by(eval_postrun.c.due_at)
            .limit(BATCH)
        ).all()
    if not due:
        return 0
    by_config: dict[int, list[str]] = defaultdict(list)
    for r in due:
        by_config[r.config_id].append(r.run_id)
    for config_id, run_ids in by_config.items():
        _judge_config(store, config_id, run_ids, now)
    return len(due)


def judge_all_due(store: Store, *, stop: threading.Event | None = None) -> int:
    """:func:`judge_due` until nothing is due (or ``stop``); how many runs were looked at."""
    n = 0
    while stop is None or not stop.is_set():
        done = judge_due(store)
        if not done:
            break
        n += done
    return n


def _judge_config(store: Store, config_id: int, run_ids: list[str], now: int) -> None:
    with store.read() as conn:
        config = cf.config_by_id(conn, config_id)
        job_id = conn.execute(
            select(eval_jobs.c.id).where(eval_jobs.c.config_id == config_id, eval_jobs.c.kind == "post_run")
        ).scalar_one()
        found = {
            r.run_id: r
            for r in conn.execute(
                select(runs.c.run_id, runs.c.agent, runs.c.environment, runs.c.tags, runs.c.status).where(
                    runs.c.project_id == config.project_id, runs.c.run_id.in_(run_ids)
                )
            )
        }
    later = [r for r in run_ids if r not in found or found[r].status == "running"]
    chosen = [
        r
        for r in run_ids
        if r not in later
        and config.selector.sampled(r)
        and config.selector.matches(found[r].agent, found[r].environment, found[r].tags)
    ]
    if chosen and not config.paused:
        try:
            e = config.resolve()
        except ValidationFailed as err:  # e.g. its module is gone: say so, keep the runs queued
            with store.write() as conn:
                conn.execute(
                    update(eval_jobs)
                    .where(eval_jobs.c.id == job_id)
                    .values(note=f"the evaluator cannot be made: {err.detail}")
                )
            return
        step = judging.COSTLY_CHUNK if config.claim_first else len(chosen)  # see jobs.run_job
        for i in range(0, len(chosen), step):
            judging.judge_chunk(
                store,
                project_id=config.project_id,
                e=e,
                job_id=job_id,
                run_ids=chosen[i : i + step],
                config=config.name,
                claim_first=config.claim_first,
            )
    with store.write() as conn:
        done = [r for r in run_ids if r not in later]
        if done:
            conn.execute(
                delete(eval_postrun).where(
                    tuple_(eval_postrun.c.config_id, eval_postrun.c.run_id).in_(
                        [(config_id, r) for r in done]
                    )
                )
            )
        if later:  # not in the read model yet (or it ran again): look again shortly
            conn.execute(
                update(eval_postrun)
                .where(eval_postrun.c.config_id == config_id, eval_postrun.c.run_id.in_(later))
                .values(due_at=now + NOT_PROJECTED_RETRY_NS)
            )


def queued(conn: Connection, *, config_id: int) -> int:
    """Runs waiting for their grace period (or for the read model) before this configuration judges them."""
    from sqlalchemy import func

    return int(
        conn.execute(
            select(func.count()).select_from(eval_postrun).where(eval_postrun.c.config_id == config_id)
        ).scalar_one()
    )
