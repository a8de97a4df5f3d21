"""Initial schema: number links, ghosts, trunk states, call records, appservice inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "number_links",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("linked_by", sa.String(255), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
    )
    op.create_index("ix_number_links_room_id", "number_links", ["room_id"])
    op.create_table(
        "ghosts",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("number", sa.String(32), nullable=False, unique=True),
        sa.Column("display_name", sa.String(255)),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
    )
    op.create_table(
        "trunk_states",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("registration", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("reason", sa.String(255)),
        sa.Column("updated_at", _ts(), nullable=False),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("callee", sa.String(255), nullable=False),
        sa.Column("caller_name", sa.String(255)),
        sa.Column("room_id", sa.String(255)),
        sa.Column("matrix_user", sa.String(255)),
        sa.Column("trunk", sa.String(64)),
        sa.Column("worker_id", sa.Integer()),
        sa.Column("sip_call_id", sa.String(255)),
        sa.Column("source", sa.String(64)),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("answered_at", _ts()),
        sa.Column("ended_at", _ts()),
        sa.Column("outcome", sa.String(32)),
        sa.Column("sip_code", sa.Integer()),
        sa.Column("q850_cause", sa.Integer()),
        sa.Column("reason", sa.Text()),
    )
    op.create_index("ix_calls_room_id", "calls", ["room_id"])
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_table(
        "appservice_transactions",
        sa.Column("txn_id", sa.String(255), primary_key=True),
        sa.Column("received_at", _ts(), nullable=False),
    )
    op.create_index(
        "ix_appservice_transactions_received_at", "appservice_transactions", ["received_at"]
    )
    op.create_table(
        "inbox_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("txn_id", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False, unique=True),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts()),
        sa.Column("last_error", sa.Text()),
        sa.Column("received_at", _ts(), nullable=False),
    )
    op.create_index("ix_inbox_events_status_room", "inbox_events", ["status", "room_id", "id"])


def downgrade() -> None:
    op.drop_table("inbox_events")
    op.drop_table("appservice_transactions")
    op.drop_table("calls")
    op.drop_table("trunk_states")
    op.drop_table("ghosts")
    op.drop_table("number_links")
