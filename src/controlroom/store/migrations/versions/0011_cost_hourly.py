"""cost_hourly: spend per UTC hour, agent and model (the overview's hourly costs and spikes), and
runs_hourly: runs per UTC hour and status; part of the read model, filled by the projector (a store
upgraded with runs in it fills them on a rebuild)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

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


def downgrade() -> None:
    op.drop_table("runs_hourly")
    op.drop_table("cost_hourly")
