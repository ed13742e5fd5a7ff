"""runs count their calls the budget refused (runs.refused_count), with a partial index for the
runs list's refused_by_cap filter; filled in from the spans already projected

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The reasons of a 402 from POST /v1/budget/reservations (the SDK records them on the refused span
# as controlroom.budget.reason); the same list as controlroom.projections.fold.CAP_REFUSALS.
REASONS = "'cap_reached', 'held_by_in_flight_calls', 'unpriced_model'"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("refused_count", sa.Integer(), server_default="0", nullable=False))
    where = sa.text("refused_count > 0")
    op.create_index(
        "ix_runs_refused",
        "runs",
        ["project_id", "started_at", "run_id"],
        sqlite_where=where,
        postgresql_where=where,
    )
    if op.get_bind().dialect.name == "postgresql":
        reason = "s.attributes ->> 'controlroom.budget.reason'"
    else:
        reason = "json_extract(s.attributes, '$.\"controlroom.budget.reason\"')"
    op.execute(
        "UPDATE runs SET refused_count = (SELECT count(*) FROM spans s WHERE s.project_id = runs.project_id"
        f" AND s.run_id = runs.run_id AND s.status = 'error' AND {reason} IN ({REASONS}))"
        " WHERE run_id IN (SELECT run_id FROM spans WHERE error_type IS NOT NULL)"
    )


def downgrade() -> None:
    op.drop_index("ix_runs_refused", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("refused_count")
