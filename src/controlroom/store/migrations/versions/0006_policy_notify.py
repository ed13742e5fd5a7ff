"""who an approval policy notifies: the webhooks told of its action's approval events

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # NULL: every webhook of the project; a list of webhook ids: only those ([]: none)
    with op.batch_alter_table("approval_policies") as batch:
        batch.add_column(sa.Column("notify_webhooks", Json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approval_policies") as batch:
        batch.drop_column("notify_webhooks")
