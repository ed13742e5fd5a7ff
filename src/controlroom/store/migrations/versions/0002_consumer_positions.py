"""consumer positions: the projector's position table serves every log consumer

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

``projector_positions`` becomes ``consumer_positions`` (one row per named log consumer of the worker
runtime; the read model's row, ``read_model``, is kept with its position).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = "name, position, updated_at"


def _positions_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    _positions_table("consumer_positions")
    op.execute(f"INSERT INTO consumer_positions ({COLUMNS}) SELECT {COLUMNS} FROM projector_positions")
    op.drop_table("projector_positions")


def downgrade() -> None:
    _positions_table("projector_positions")
    op.execute(f"INSERT INTO projector_positions ({COLUMNS}) SELECT {COLUMNS} FROM consumer_positions")
    op.drop_table("consumer_positions")
