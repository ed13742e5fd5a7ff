"""judge cache: an LLM judge's answers, by project and digest of (prompt, model, parameters)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "judge_cache",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("choice", sa.String(length=256), nullable=False),
        sa.Column("reasoning", sa.Text(), nullable=False),
        sa.Column("judge_run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "key", name=op.f("pk_judge_cache")),
    )


def downgrade() -> None:
    op.drop_table("judge_cache")
