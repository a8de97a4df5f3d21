"""The appservice inbox: events are stored before a transaction is acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from .models import AppserviceTransaction, InboxEvent, utcnow
from .repository import Repository

PENDING, DONE, PARKED = "pending", "done", "parked"
AWAITING_KEY = "waitkey"  # an encrypted event whose room key has not arrived


class InboxStore(Repository):
    async def store_transaction(self, txn_id: str, events: list[dict[str, Any]]) -> bool:
        """Store a transaction's events atomically. False if the id was stored before."""
        now = utcnow()
        rows = [
            {
                "txn_id": txn_id,
                "event_id": event["event_id"],
                "room_id": event["room_id"],
                "event": event,
                "status": PENDING,
                "attempts": 0,
                "received_at": now,
            }
            for event in events
        ]
        try:
            async with self.transaction() as session:
                if await session.get(AppserviceTransaction, txn_id) is not None:
                    return False
                session.add(AppserviceTransaction(txn_id=txn_id, received_at=now))
                await session.flush()
                if rows:
                    # The homeserver may repeat an event in a later transaction: keep the first.
                    await session.execute(self.insert_ignoring_duplicates(InboxEvent, rows))
        except IntegrityError:
            return False  # the same transaction raced in on another request
        return True

    async def rooms_with_pending(self) -> Sequence[str]:
        query = select(InboxEvent.room_id).where(InboxEvent.status == PENDING).distinct()
        async with self.transaction() as session:
            return (await session.scalars(query)).all()

    async def next_pending(self, room_id: str) -> InboxEvent | None:
        query = (
            select(InboxEvent)
            .where(InboxEvent.room_id == room_id, InboxEvent.status == PENDING)
            .order_by(InboxEvent.id)
            .limit(1)
        )
        async with self.transaction() as session:
            return (await session.scalars(query)).first()

    async def mark_done(self, inbox_id: int) -> None:
        await self._set(inbox_id, status=DONE, next_attempt_at=None)

    async def mark_retry(self, inbox_id: int, error: str, at: datetime) -> None:
        await self._set(
            inbox_id, attempts=InboxEvent.attempts + 1, last_error=error, next_attempt_at=at
        )

    async def park(self, inbox_id: int, error: str) -> None:
        await self._set(inbox_id, status=PARKED, attempts=InboxEvent.attempts + 1, last_error=error)

    async def await_key(self, inbox_id: int, session_id: str, error: str) -> None:
        await self._set(inbox_id, status=AWAITING_KEY, awaiting_key=session_id, last_error=error)

    async def key_arrived(self, session_id: str) -> int:
        """Events that waited for this room key are pending again; how many."""
        query = (
            update(InboxEvent)
            .where(InboxEvent.status == AWAITING_KEY, InboxEvent.awaiting_key == session_id)
            .values(status=PENDING, awaiting_key=None, next_attempt_at=None)
        )
        async with self.transaction() as session:
            return int((await session.execute(query)).rowcount)  # type: ignore[attr-defined]

    async def _set(self, inbox_id: int, **values: Any) -> None:
        async with self.transaction() as session:
            await session.execute(
                update(InboxEvent).where(InboxEvent.id == inbox_id).values(values)
            )

    async def count_by_status(self) -> dict[str, int]:
        query = select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
        async with self.transaction() as session:
            return {status: count for status, count in (await session.execute(query)).all()}

    async def parked(self, limit: int = 20) -> Sequence[InboxEvent]:
        query = select(InboxEvent).where(InboxEvent.status == PARKED).order_by(InboxEvent.id)
        async with self.transaction() as session:
            return (await session.scalars(query.limit(limit))).all()

    async def prune(self, older_than: timedelta) -> None:
        """Forget processed events, events whose room key never came, and transaction ids
        past the homeserver's retry horizon."""
        cutoff = utcnow() - older_than
        async with self.transaction() as session:
            await session.execute(
                delete(InboxEvent).where(
                    InboxEvent.status.in_((DONE, AWAITING_KEY)), InboxEvent.received_at < cutoff
                )
            )
            await session.execute(
                delete(AppserviceTransaction).where(AppserviceTransaction.received_at < cutoff)
            )
