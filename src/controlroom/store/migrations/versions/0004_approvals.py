"""approvals and approval policies

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=True),
        sa.Column("agent", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=256), nullable=False),
        sa.Column("arguments", Json, nullable=True),
        sa.Column("arguments_hash", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=256), nullable=False),
        sa.Column("started_by", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("min_role", sa.String(length=16), nullable=False),
        sa.Column("four_eyes", sa.Boolean(), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_role", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.BigInteger(), nullable=True),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.Column("error", Json, nullable=True),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"], name=op.f("fk_approvals_decided_by_users")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_approvals_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint(
            "project_id",
            "run_id",
            "idempotency_key",
            "arguments_hash",
            name=op.f("uq_approvals_project_id_run_id_idempotency_key_arguments_hash"),
        ),
    )
    op.create_index("ix_approvals_queue", "approvals", ["project_id", "status", "requested_at"], unique=False)
    op.create_index("ix_approvals_expiry", "approvals", ["status", "expires_at"], unique=False)
    op.create_table(
        "approval_policies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=256), nullable=False),
        sa.Column("min_role", sa.String(length=16), nullable=False),
        sa.Column("four_eyes", sa.Boolean(), nullable=False),
        sa.Column("expires_after_seconds", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_approval_policies_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "action", name=op.f("pk_approval_policies")),
    )


def downgrade() -> None:
    op.drop_table("approval_policies")
    op.drop_index("ix_approvals_expiry", table_name="approvals")
    op.drop_index("ix_approvals_queue", table_name="approvals")
    op.drop_table("approvals")
