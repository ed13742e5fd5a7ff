"""The run log: append (idempotent by event id) and read in sequence order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controlroom.store.engine import Store
from controlroom.store.tables import events


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    seq: int
    project_id: int
    event_id: str
    type: str
    run_id: str
    ts: int
    received_at: int
    body: bytes


def append(store: Store, conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Append rows (dicts of the ``events`` columns but ``seq``) of ONE project; returns the
    event ids actually inserted. Rows whose (project, event_id) is already in the log are skipped."""
    if not rows:
        return set()
    store.lock_log_for_append(conn)
    insert = sqlite_insert if store.is_sqlite else pg_insert
    stmt = (
        insert(events)
        .on_conflict_do_nothing(index_elements=["project_id", "event_id"])
        .returning(events.c.event_id)
    )
    result = conn.execute(stmt, list(rows))
    return set(result.scalars().all())


def read_after(conn: Connection, position: int, limit: int) -> list[LoggedEvent]:
    rows = conn.execute(
        select(events).where(events.c.seq > position).order_by(events.c.seq).limit(limit)
    ).all()
    return [LoggedEvent(*r) for r in rows]


def head(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())
