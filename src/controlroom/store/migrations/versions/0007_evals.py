"""evals: configurations, jobs, items (one per evaluator version and run), the post-run queue,
regressions and their settings; scores say their kind, evaluator version, normalised value and
author

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.add_column(sa.Column("evaluator_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("normalised", sa.Float(), nullable=True))
        batch.add_column(sa.Column("author", sa.String(length=128), nullable=True))
    op.create_index(
        "ix_scores_series",
        "scores",
        ["project_id", "evaluator", "evaluator_version", "name", "ts"],
        unique=False,
    )
    op.create_table(
        "eval_configs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("evaluator", sa.String(length=512), nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.Column("selector", Json, nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("schedule", sa.String(length=128), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("window_seconds", sa.Float(), nullable=True),
        sa.Column("grace_seconds", sa.Float(), nullable=False),
        sa.Column("next_run_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("paused_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_eval_configs_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_configs")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_eval_configs_project_id_name")),
    )
    op.create_table(
        "eval_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("since_ns", sa.BigInteger(), nullable=True),
        sa.Column("until_ns", sa.BigInteger(), nullable=True),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("processed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("scored", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_applicable", sa.Integer(), server_default="0", nullable=False),
        sa.Column("errors", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["config_id"], ["eval_configs.id"], name=op.f("fk_eval_jobs_config_id_eval_configs")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_eval_jobs_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_jobs")),
    )
    op.create_index("ix_eval_jobs_state", "eval_jobs", ["state", "created_at"], unique=False)
    op.create_index("ix_eval_jobs_project", "eval_jobs", ["project_id", "id"], unique=False)
    op.create_table(
        "eval_items",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("evaluator", sa.String(length=256), nullable=False),
        sa.Column("evaluator_version", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("error_type", sa.String(length=256), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint(
            "project_id", "evaluator", "evaluator_version", "run_id", name=op.f("pk_eval_items")
        ),
    )
    op.create_index("ix_eval_items_job", "eval_items", ["job_id", "state"], unique=False)
    op.create_table(
        "eval_postrun",
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("config_id", "run_id", name=op.f("pk_eval_postrun")),
    )
    op.create_index("ix_eval_postrun_due", "eval_postrun", ["due_at"], unique=False)
    op.create_table(
        "eval_regressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=256), nullable=False),
        sa.Column("evaluator", sa.String(length=256), nullable=False),
        sa.Column("evaluator_version", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.Column("checked_at", sa.BigInteger(), nullable=False),
        sa.Column("clean_windows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("clean_since", sa.BigInteger(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("details", Json, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_eval_regressions_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_regressions")),
    )
    op.create_index(
        "ix_eval_regressions_open", "eval_regressions", ["project_id", "state", "opened_at"], unique=False
    )
    op.create_table(
        "eval_settings",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("settings", Json, nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_eval_settings_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_eval_settings")),
    )


def downgrade() -> None:
    op.drop_table("eval_settings")
    op.drop_index("ix_eval_regressions_open", table_name="eval_regressions")
    op.drop_table("eval_regressions")
    op.drop_index("ix_eval_postrun_due", table_name="eval_postrun")
    op.drop_table("eval_postrun")
    op.drop_index("ix_eval_items_job", table_name="eval_items")
    op.drop_table("eval_items")
    op.drop_index("ix_eval_jobs_project", table_name="eval_jobs")
    op.drop_index("ix_eval_jobs_state", table_name="eval_jobs")
    op.drop_table("eval_jobs")
    op.drop_table("eval_configs")
    op.drop_index("ix_scores_series", table_name="scores")
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("author")
        batch.drop_column("normalised")
        batch.drop_column("kind")
        batch.drop_column("evaluator_version")
