"""Portal rooms, and what a call left in Matrix (for reconciliation after a crash).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portals",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("room_id", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("ghost_user_id", sa.String(255)))
        batch.add_column(sa.Column("rtc_state_key", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("rtc_state_key")
        batch.drop_column("ghost_user_id")
    op.drop_table("portals")
