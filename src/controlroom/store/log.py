"""The run log: append (idempotent by event id) and read in sequence order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from controlroom.store.engine import LOG_APPEND_LOCK, Store
from controlroom.store.ledger import LedgerTx
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


_COLUMNS = ("project_id", "event_id", "type", "run_id", "ts", "received_at", "body")
# The hot path of ingest: one prepared statement through the driver's executemany (SQLAlchemy's
# per-row parameter handling and RETURNING cost more than the insert itself).
_APPEND = {
    dialect: f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join([mark] * len(_COLUMNS))})"
    " ON CONFLICT (project_id, event_id) DO NOTHING"
    for dialect, mark in (("sqlite", "?"), ("postgresql", "%s"))
}


_APPEND_ONE = (
    f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join(f':{c}' for c in _COLUMNS)})"
    " ON CONFLICT (project_id, event_id) DO NOTHING"
)
_LOCK_FOR_APPEND = f"SELECT pg_advisory_xact_lock({LOG_APPEND_LOCK})"  # see Store.lock_log_for_append


def append(store: Store, conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Append rows (dicts of the ``events`` columns but ``seq``); returns how many were inserted.
    Rows whose (project, event_id) is already in the log are skipped (idempotent by event id)."""
    if not rows:
        return 0
    store.lock_log_for_append(conn)
    result = conn.exec_driver_sql(_APPEND[store.dialect], [tuple(r[c] for c in _COLUMNS) for r in rows])
    return int(result.rowcount)


def append_in(tx: LedgerTx, rows: Sequence[dict[str, Any]]) -> int:
    """:func:`append` in a plain transaction (``Store.plain_write``): a few rows, one statement each."""
    if not rows:
        return 0
    if tx.postgresql:
        tx.run(_LOCK_FOR_APPEND, {})
    return sum(tx.run(_APPEND_ONE, r) for r in rows)


def read_after(
    conn: Connection,
    position: int,
    limit: int,
    *,
    types: Sequence[str] | None = None,
    until: int | None = None,
) -> list[LoggedEvent]:
    """Events after ``position`` in sequence order: only of ``types`` if given, up to ``until``."""
    query = select(events).where(events.c.seq > position)
    if types is not None:
        query = query.where(events.c.type.in_(types))
    if until is not None:
        query = query.where(events.c.seq <= until)
    rows = conn.execute(query.order_by(events.c.seq).limit(limit)).all()
    return [LoggedEvent(*r) for r in rows]


def head(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())
