"""cost_hourly: spend per UTC hour, agent and model (the overview's hourly costs and spikes),
runs_hourly: runs per UTC hour and status, and run_outcomes: runs that succeeded per 15 minutes,
agent and model-call group (the costs view's cost per successful run); part of the read model,
kept by the projector. A store
upgraded with runs in it has both filled here from its runs and spans, with the projector's own
fold: the projector goes on from them (it adds a run's new share and takes its old one away, so
they must hold every run's share already)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from controlroom.projections import fold

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cost_hourly",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("agent", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "hour", "agent", "model", name=op.f("pk_cost_hourly")),
    )
    op.create_table(
        "runs_hourly",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "hour", "status", name=op.f("pk_runs_hourly")),
    )
    op.create_table(
        "run_outcomes",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("grouping", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("agent", sa.String(length=256), nullable=False),
        sa.Column("provider", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("succeeded_runs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "project_id", "grouping", "bucket", "agent", "provider", "model", name=op.f("pk_run_outcomes")
        ),
    )
    _backfill(op.get_bind())


RUN_COLUMNS = ("project_id", "run_id", "agent", "started_at", "status")
OUTCOME_COLUMNS = ("project_id", "grouping", "bucket", "agent", "provider", "model", "succeeded_runs")
SPAN_COLUMNS = (
    "project_id",
    "run_id",
    "span_id",
    "parent_span_id",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "provider",
    "model",
    "cost_source",
    "cost_nanos",
)


def _backfill(conn: sa.Connection) -> None:
    runs = sa.table("runs", *(sa.column(c) for c in RUN_COLUMNS))
    spans = sa.table("spans", *(sa.column(c) for c in SPAN_COLUMNS))
    conn.execute(
        sa.text(
            "INSERT INTO runs_hourly (project_id, hour, status, runs) "
            "SELECT project_id, started_at / 3600000000000, status, count(*) FROM runs "
            "WHERE started_at IS NOT NULL GROUP BY project_id, started_at / 3600000000000, status"
        )
    )
    agents = {
        (r.project_id, r.run_id): dict(r._mapping)
        for r in conn.execute(sa.select(*runs.c).where(runs.c.started_at.is_not(None)))
    }
    hours: dict[fold.HourKey, list[int]] = {}
    succeeded: dict[fold.OutcomeKey, int] = {}
    seen: set[tuple[int, str]] = set()
    for run_key, run_spans in _by_run(conn, spans):
        run = agents.get(run_key)
        if run is None:
            continue
        seen.add(run_key)
        for key, (n, cost) in fold.hourly(run, run_spans).items():
            acc = hours.setdefault(key, [0, 0])
            acc[0] += n
            acc[1] += cost
        for ok in fold.outcomes(run, run_spans):
            succeeded[ok] = succeeded.get(ok, 0) + 1
    for run_key, run in agents.items():  # runs without spans count as runs too
        if run_key not in seen:
            for ok in fold.outcomes(run, []):
                succeeded[ok] = succeeded.get(ok, 0) + 1
    rows = [
        {"project_id": p, "hour": h, "agent": a, "model": m, "calls": n, "cost_nanos": c}
        for (p, h, a, m), (n, c) in hours.items()
    ]
    cost_hourly = sa.table(
        "cost_hourly",
        *(sa.column(c) for c in ("project_id", "hour", "agent", "model", "calls", "cost_nanos")),
    )
    for i in range(0, len(rows), 5000):
        conn.execute(cost_hourly.insert(), rows[i : i + 5000])
    run_outcomes = sa.table("run_outcomes", *(sa.column(c) for c in OUTCOME_COLUMNS))
    counted = [dict(zip(OUTCOME_COLUMNS, (*k, n), strict=True)) for k, n in succeeded.items()]
    for i in range(0, len(counted), 5000):
        conn.execute(run_outcomes.insert(), counted[i : i + 5000])


def _by_run(conn: sa.Connection, spans: Any) -> Iterator[tuple[tuple[int, str], list[dict[str, Any]]]]:
    """The spans of each run with any, one run at a time (read in the primary key's order)."""
    current: tuple[int, str] | None = None
    batch: list[dict[str, Any]] = []
    query = (
        sa.select(*spans.c)
        .order_by(spans.c.project_id, spans.c.run_id)
        .execution_options(stream_results=True, yield_per=10_000)
    )
    for row in conn.execute(query):
        key = (row.project_id, row.run_id)
        if key != current:
            if current is not None:
                yield current, batch
            current, batch = key, []
        batch.append(dict(row._mapping))
    if current is not None:
        yield current, batch


def downgrade() -> None:
    op.drop_table("run_outcomes")
    op.drop_table("runs_hourly")
    op.drop_table("cost_hourly")
