"""Revision 0009 fills runs.refused_count in for the runs already projected, from their spans (the
same rule as the fold's), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import insert, select

from controlroom.accounts.projects import Project
from controlroom.store.engine import Store, _alembic_config
from controlroom.store.tables import runs, spans


def _to(store: Store, revision: str, *, up: bool) -> None:
    with store.engine.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, revision)


def test_revision_0009_counts_the_refusals_already_projected(store: Store, project: Project) -> None:
    _to(store, "0008", up=False)
    try:

        def span(run_id: str, n: int, status: str, reason: str | None) -> dict[str, Any]:
            attributes = {"controlroom.budget.reason": reason} if reason else {"other": 1}
            return {
                "project_id": project.id,
                "run_id": run_id,
                "span_id": f"{n:016x}",
                "status": status,
                "error_type": "BudgetExceeded" if status == "error" else None,
                "attributes": attributes,
                "first_seq": n,
            }

        with store.engine.begin() as conn:
            for i, run_id in enumerate(("a" * 32, "b" * 32, "c" * 32)):
                conn.execute(
                    insert(runs).values(
                        project_id=project.id, run_id=run_id, status="failed", last_event_at=1, first_seq=i
                    )
                )
            conn.execute(
                insert(spans),
                [
                    span("a" * 32, 1, "error", "cap_reached"),
                    span("a" * 32, 2, "error", "unpriced_model"),
                    span("a" * 32, 3, "ok", None),
                    span("b" * 32, 4, "error", "ledger_unavailable"),
                    span("b" * 32, 5, "ok", "cap_reached"),  # not an error: not a refusal
                    span("c" * 32, 6, "error", "held_by_in_flight_calls"),
                ],
            )
        _to(store, "head", up=True)
    finally:
        store.migrate()
    with store.read() as conn:
        counts = dict(conn.execute(select(runs.c.run_id, runs.c.refused_count).order_by(runs.c.run_id)).all())
    assert counts == {"a" * 32: 2, "b" * 32: 0, "c" * 32: 1}
