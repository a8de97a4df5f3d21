"""Call records: one row per call, written as the call moves and never deleted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from .models import CallRecord, utcnow
from .repository import Repository


class CallStore(Repository):
    async def create(self, record: CallRecord) -> CallRecord:
        async with self.transaction() as session:
            session.add(record)
        return record

    async def update(self, call_id: str, **fields: Any) -> None:
        async with self.transaction() as session:
            await session.execute(update(CallRecord).where(CallRecord.id == call_id).values(fields))

    async def add_note(self, call_id: str, text: str) -> None:
        async with self.transaction() as session:
            record = await session.get(CallRecord, call_id, with_for_update=True)
            if record is not None:
                record.notes = f"{record.notes}\n{text}" if record.notes else text

    async def finish(
        self,
        call_id: str,
        outcome: str,
        sip_code: int | None = None,
        reason: str | None = None,
        q850_cause: int | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        """Close a call once; a call already ended keeps its first outcome."""
        async with self.transaction() as session:
            await session.execute(
                update(CallRecord)
                .where(CallRecord.id == call_id, CallRecord.state != "ended")
                .values(
                    state="ended",
                    outcome=outcome,
                    sip_code=sip_code,
                    reason=reason,
                    q850_cause=q850_cause,
                    ended_at=ended_at or utcnow(),
                )
            )

    async def get(self, call_id: str) -> CallRecord | None:
        async with self.transaction() as session:
            return await session.get(CallRecord, call_id)

    async def open_calls(self, worker_id: int | None = None) -> Sequence[CallRecord]:
        query = select(CallRecord).where(CallRecord.state != "ended")
        if worker_id is not None:
            query = query.where(CallRecord.worker_id == worker_id)
        async with self.transaction() as session:
            return (await session.scalars(query.order_by(CallRecord.started_at))).all()

    async def recent(self, limit: int = 20) -> Sequence[CallRecord]:
        query = select(CallRecord).order_by(CallRecord.started_at.desc()).limit(limit)
        async with self.transaction() as session:
            return (await session.scalars(query)).all()
