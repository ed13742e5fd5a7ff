"""Approval requests' storage on their hot path: plain statements in a durable plain transaction
(``Store.plain_write``), in the approvals' terms. ``controlroom.approvals.requests`` decides; this
module reads and writes.

A row is a dict of the ``approvals`` columns in which ``decided_by`` (a user id) is replaced by
``decider``, that user's login; JSON columns are decoded.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from sqlalchemy import Connection, text

from controlroom.store.engine import sqlite_json_loads
from controlroom.store.ledger import LedgerTx

COLUMNS = (
    "id",
    "project_id",
    "run_id",
    "span_id",
    "agent",
    "action",
    "arguments",
    "arguments_hash",
    "idempotency_key",
    "started_by",
    "status",
    "min_role",
    "four_eyes",
    "requested_at",
    "expires_at",
    "decided_at",
    "decided_role",
    "reason",
    "claimed_at",
    "completed_at",
    "error",
)
NEW_COLUMNS = COLUMNS[: COLUMNS.index("expires_at") + 1]  # a new request's; the others start NULL
_JSON_COLUMNS = frozenset({"arguments", "error"})


def _value(column: str, postgresql: bool) -> str:
    """The parameter of a column's value (JSON is sent as its text)."""
    return f"CAST(:{column} AS JSONB)" if postgresql and column in _JSON_COLUMNS else f":{column}"


_SELECT = (
    f"SELECT {', '.join(f'a.{c}' for c in COLUMNS)}, u.login AS decider"
    " FROM approvals a LEFT JOIN users u ON u.id = a.decided_by"
)
# Read by the transaction that moves it: on PostgreSQL the row stays locked until the commit, so
# what the transition checks (status, role, arguments hash) is what it changes. SQLite has one writer.
_LOCKED = {
    pg: _SELECT + " WHERE a.id = :id AND a.project_id = :project_id" + (" FOR UPDATE OF a" if pg else "")
    for pg in (False, True)
}
_BOUND = (
    _SELECT + " WHERE a.project_id = :project_id AND a.run_id = :run_id"
    " AND a.idempotency_key = :idempotency_key AND a.arguments_hash = :arguments_hash"
)
_INSERT = {
    pg: f"INSERT INTO approvals ({', '.join(NEW_COLUMNS)})"
    f" VALUES ({', '.join(_value(c, pg) for c in NEW_COLUMNS)}) ON CONFLICT DO NOTHING"
    for pg in (False, True)
}
_POLICY = (
    "SELECT min_role, four_eyes, expires_after_seconds, notify_webhooks FROM approval_policies"
    " WHERE project_id = :project_id AND action = :action"
)


@functools.cache
def _move_sql(from_: tuple[str, ...], columns: tuple[str, ...], postgresql: bool) -> str:
    states = ", ".join(f":_from{i}" for i in range(len(from_)))
    sets = "".join(f", {c} = {_value(c, postgresql)}" for c in columns)
    return f"UPDATE approvals SET status = :_to{sets} WHERE id = :_id AND status IN ({states})"


def locked(tx: LedgerTx, *, project_id: int, approval_id: str) -> dict[str, Any] | None:
    """The project's request, locked for the rest of the transaction; None if there is none."""
    found = tx.rows(_LOCKED[tx.postgresql], {"id": approval_id, "project_id": project_id})
    return _decoded(found[0], tx.postgresql) if found else None


def bound(
    tx: LedgerTx, *, project_id: int, run_id: str, idempotency_key: str, arguments_hash: str
) -> dict[str, Any] | None:
    """The request with this binding (run, idempotency key, arguments hash), or None."""
    params = {
        "project_id": project_id,
        "run_id": run_id,
        "idempotency_key": idempotency_key,
        "arguments_hash": arguments_hash,
    }
    found = tx.rows(_BOUND, params)
    return _decoded(found[0], tx.postgresql) if found else None


def insert(tx: LedgerTx, row: dict[str, Any]) -> bool:
    """Write a new request (``row``: the :data:`NEW_COLUMNS`); False if its id or its binding
    exists already (on PostgreSQL it waits for a concurrent twin to finish)."""
    params = {**row, "arguments": _json(row["arguments"])}
    return tx.run(_INSERT[tx.postgresql], params) == 1


def move(tx: LedgerTx, approval_id: str, *, from_: tuple[str, ...], to: str, values: dict[str, Any]) -> bool:
    """The compare-and-set: the request moves to ``to``, with ``values`` (columns), only if it is
    in one of the states ``from_``; False if it is not."""
    params = {k: _json(v) if k in _JSON_COLUMNS else v for k, v in values.items()}
    params.update({f"_from{i}": s for i, s in enumerate(from_)}, _to=to, _id=approval_id)
    return tx.run(_move_sql(from_, tuple(values), tx.postgresql), params) == 1


def policy(db: Connection | LedgerTx, *, project_id: int, action: str) -> dict[str, Any] | None:
    """The action's policy row {min_role, four_eyes, expires_after_seconds, notify_webhooks (a
    list of webhook ids, or None)}, or None; in a plain transaction or not."""
    params = {"project_id": project_id, "action": action}
    if isinstance(db, LedgerTx):
        found = db.rows(_POLICY, params)
    else:
        found = [dict(r) for r in db.execute(text(_POLICY), params).mappings()]
    if not found:
        return None
    row = found[0]
    if isinstance(row["notify_webhooks"], str | bytes):  # SQLite's JSON text (PostgreSQL decodes JSONB)
        row["notify_webhooks"] = sqlite_json_loads(row["notify_webhooks"])
    return row


def _json(value: Any) -> str:
    """A JSON column's text (None is JSON null, as SQLAlchemy writes it)."""
    return orjson.dumps(value).decode()


def _decoded(row: dict[str, Any], postgresql: bool) -> dict[str, Any]:
    """JSON columns decoded: psycopg decodes JSONB itself; SQLite returns the text (or, for a bare
    number, the number: see ``sqlite_json_loads``)."""
    if not postgresql:
        for c in _JSON_COLUMNS:
            if row[c] is not None:
                row[c] = sqlite_json_loads(row[c])
    return row
