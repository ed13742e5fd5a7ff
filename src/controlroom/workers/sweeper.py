"""The abandoned-run sweeper: a run with no end and no event for the quiet period gets a
``run.abandoned`` event in the log (so a rebuild reproduces it), which marks it failed. A run with
an approval request still open (pending: waiting for a person; approved or claimed: its action about
to run or running) is waiting, not abandoned: it is left alone however long that takes."""

from __future__ import annotations

import time

from sqlalchemy import exists, select

from controlroom import events as ev
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.ingest import event_row
from controlroom.store.tables import approvals, runs

OPEN_REQUESTS = ("pending", "approved", "claimed")


def sweep_abandoned(
    store: Store, *, quiet_seconds: float, now_ns: int | None = None, limit: int = 1000
) -> int:
    """Append run.abandoned for runs that went quiet; returns how many."""
    now = time.time_ns() if now_ns is None else now_ns
    cutoff = now - int(quiet_seconds * 1e9)
    with store.read() as conn:
        quiet = conn.execute(
            select(runs.c.project_id, runs.c.run_id, runs.c.last_event_at)
            .where(
                runs.c.status == "running",
                runs.c.last_event_at < cutoff,
                ~exists().where(
                    approvals.c.project_id == runs.c.project_id,
                    approvals.c.run_id == runs.c.run_id,
                    approvals.c.status.in_(OPEN_REQUESTS),
                ),
            )
            .limit(limit)
        ).all()
    if not quiet:
        return 0
    rows = [
        event_row(
            project_id,
            ev.server_event(
                ev.RUN_ABANDONED,
                id=f"abandoned-{run_id}-{last_event_at}",
                run_id=run_id,
                ts=now,
                body={"quiet_seconds": quiet_seconds, "last_event_at": last_event_at},
            ),
            received_at=now,
        )
        for project_id, run_id, last_event_at in quiet
    ]
    with store.write() as conn:
        return log.append(store, conn, rows)
