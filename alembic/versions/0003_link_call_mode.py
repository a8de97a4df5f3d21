"""How a linked room takes calls: a MatrixRTC session, or legacy 1:1 VoIP (MSC2746).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("number_links") as batch:
        batch.add_column(sa.Column("call_mode", sa.String(8), nullable=False, server_default="rtc"))


def downgrade() -> None:
    with op.batch_alter_table("number_links") as batch:
        batch.drop_column("call_mode")
