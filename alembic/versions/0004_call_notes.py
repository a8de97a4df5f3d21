"""Notes on a call record: what was refused inside the call (REFER, strangers' media).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("notes", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("notes")
