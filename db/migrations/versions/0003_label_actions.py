"""label_events.action_id and undo_of: one action (one button press) is one undo step

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:30:00

Every earlier change becomes an action of its own (``e<id>``), so that undoing one of them
takes back that change only, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("label_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("undo_of", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_label_events_action_id"), ["action_id"], unique=False)
    op.execute(sa.text("UPDATE label_events SET action_id = 'e' || CAST(id AS VARCHAR(20))"))


def downgrade() -> None:
    with op.batch_alter_table("label_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_events_action_id"))
        batch_op.drop_column("undo_of")
        batch_op.drop_column("action_id")
