"""Scheduled evals: at each time of a configuration's cron schedule (read in its timezone), a
batch job over the runs that started in the window before it.

The next time is moved forward by compare-and-set in the transaction that queues the job, so with
several workers each time queues one job. Times missed while nothing ran (the server was down)
are not made up one by one: the next job starts at once and covers its window from then.
"""

from __future__ import annotations

import time

from sqlalchemy import select, update

from controlroom.evals import configs as cf
from controlroom.evals import jobs
from controlroom.store.engine import Store
from controlroom.store.tables import eval_configs


def queue_due(store: Store, *, now: int | None = None) -> int:
    """Queue the scheduled jobs that are due; returns how many."""
    now = time.time_ns() if now is None else now
    with store.read() as conn:
        due = [
            c
            for c in cf.list_configs(conn, trigger="schedule")
            if not c.paused and c.next_run_at is not None and c.next_run_at <= now and c.schedule
        ]
    queued = 0
    for c in due:
        assert c.schedule is not None and c.window_seconds is not None and c.next_run_at is not None
        with store.write() as conn:
            moved = conn.execute(
                update(eval_configs)
                .where(eval_configs.c.id == c.id, eval_configs.c.next_run_at == c.next_run_at)
                .values(next_run_at=cf.next_time(c.schedule, c.timezone, now))
            ).rowcount
            if moved != 1:
                continue  # another worker queued it
            until = now
            jobs.start_job(
                conn, c, kind="scheduled", since=until - int(c.window_seconds * 1e9), until=until, now=now
            )
            queued += 1
    return queued


def next_runs(store: Store, *, project_id: int) -> dict[str, int | None]:
    """Each scheduled configuration's next time (epoch ns)."""
    with store.read() as conn:
        return {
            r.name: r.next_run_at
            for r in conn.execute(
                select(eval_configs.c.name, eval_configs.c.next_run_at).where(
                    eval_configs.c.project_id == project_id, eval_configs.c.trigger == "schedule"
                )
            )
        }
