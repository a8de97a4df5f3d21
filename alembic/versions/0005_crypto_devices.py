"""The bridge's own end-to-end encryption devices (Olm accounts and sessions, pickled),
and inbox events that wait for a room key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crypto_devices",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("pickle", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("inbox_events") as batch:
        batch.add_column(sa.Column("awaiting_key", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("inbox_events") as batch:
        batch.drop_column("awaiting_key")
    op.drop_table("crypto_devices")
