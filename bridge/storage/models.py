"""Tables. The schema itself comes from alembic migrations only; these classes map it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(UTC)")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class NumberLink(Base):
    """A phone number (E.164) linked to the Matrix room that rings for it."""

    __tablename__ = "number_links"

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    linked_by: Mapped[str] = mapped_column(String(255))
    call_mode: Mapped[str] = mapped_column(String(8), default="rtc")  # "rtc" or "legacy"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Ghost(Base):
    """The Matrix user that stands for a remote phone number."""

    __tablename__ = "ghosts"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    registered: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrunkState(Base):
    """Runtime state of a configured SIP trunk (its registration)."""

    __tablename__ = "trunk_states"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    registration: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallRecord(Base):
    """One row per call, whatever its outcome; never deleted by the bridge."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str] = mapped_column(String(255))
    callee: Mapped[str] = mapped_column(String(255))
    caller_name: Mapped[str | None] = mapped_column(String(255))
    room_id: Mapped[str | None] = mapped_column(String(255), index=True)
    matrix_user: Mapped[str | None] = mapped_column(String(255))
    trunk: Mapped[str | None] = mapped_column(String(64))
    worker_id: Mapped[int | None] = mapped_column(Integer)
    sip_call_id: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    sip_code: Mapped[int | None] = mapped_column(Integer)
    q850_cause: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    # What was refused inside the call (a REFER, a stranger's request or media), a line each.
    notes: Mapped[str | None] = mapped_column(Text)
    # What the call put into Matrix, so a restart can take it out again.
    ghost_user_id: Mapped[str | None] = mapped_column(String(255))
    rtc_state_key: Mapped[str | None] = mapped_column(String(255))


class Portal(Base):
    """A DM between a Matrix user and a phone number's ghost."""

    __tablename__ = "portals"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AppserviceTransaction(Base):
    """Transaction ids already stored, so a replay has no second effect."""

    __tablename__ = "appservice_transactions"

    txn_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class InboxEvent(Base):
    """A Matrix event stored before its transaction is acknowledged, then processed."""

    __tablename__ = "inbox_events"
    __table_args__ = (Index("ix_inbox_events_status_room", "status", "room_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    room_id: Mapped[str] = mapped_column(String(255))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    awaiting_key: Mapped[str | None] = mapped_column(String(64))  # a Megolm session id


class CryptoDevice(Base):
    """One of the bridge's own devices: its Olm account and sessions, pickled (encrypted with
    a key derived from the as_token). Losing it loses only the ability to read old messages."""

    __tablename__ = "crypto_devices"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    pickle: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
