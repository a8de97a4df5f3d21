"""Call records that survive a database outage: writes that fail are kept and retried."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from ..storage.calls import CallStore
from ..storage.database import StorageError
from ..storage.models import CallRecord

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


class RecordKeeper:
    def __init__(self, store: CallStore) -> None:
        self.store = store
        self._pending: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._retry: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def open(self, record: CallRecord) -> None:
        """Create a call's record; raises StorageError, so the caller can refuse the call."""
        await self.store.create(record)

    async def keep(self, record: CallRecord) -> None:
        """Write a finished call's record now, or as soon as the database is back."""

        async def create() -> None:
            await self.store.create(record)

        await self._write(record.id, create)

    async def note(self, record_id: str, **fields: object) -> None:
        """Record what a live call has become (its room, its ghost's membership)."""
        await self._write(record_id, lambda: self.store.update(record_id, **fields))

    async def add_note(self, record_id: str, text: str) -> None:
        """Add a line to what the record says happened inside the call."""
        await self._write(record_id, lambda: self.store.add_note(record_id, text))

    async def finish(
        self,
        record_id: str,
        outcome: str,
        sip_code: int | None,
        reason: str,
        q850_cause: int | None = None,
        answered_at: float | None = None,
        matrix_user: str | None = None,
        ended_at: float | None = None,
    ) -> None:
        ended = datetime.fromtimestamp(ended_at, UTC) if ended_at is not None else datetime.now(UTC)

        async def write() -> None:
            if answered_at is not None or matrix_user is not None:
                fields: dict[str, object] = {"matrix_user": matrix_user}
                if answered_at is not None:
                    fields["answered_at"] = datetime.fromtimestamp(answered_at, UTC)
                await self.store.update(record_id, **fields)
            await self.store.finish(record_id, outcome, sip_code, reason, q850_cause, ended)

        await self._write(record_id, write)

    async def _write(self, record_id: str, write: Callable[[], Awaitable[None]]) -> None:
        if self._pending:
            # Keep the order of a call's writes: behind what is already waiting.
            self._pending.append((record_id, write))
            return
        try:
            await write()
        except StorageError as e:
            log.error("call %s: record not written (%s); keeping it to retry", record_id, e)
            self._pending.append((record_id, write))
            self._ensure_retrying()

    def _ensure_retrying(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._retry_pending(), name="record retry")

    async def _retry_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(RETRY_SECONDS)
            while self._pending:
                record_id, write = self._pending[0]
                try:
                    await write()
                except StorageError as e:
                    log.warning("records still waiting for the database: %s", e)
                    break
                self._pending.pop(0)
                log.info("call %s: record written after the database came back", record_id)

    async def close(self, timeout: float = 5.0) -> None:
        """Give waiting writes a last chance; say what is lost if the database is still away."""
        if self._pending and self._retry is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._retry), timeout)
        if self._retry is not None:
            self._retry.cancel()
        if self._pending:
            ids = sorted({record_id for record_id, _ in self._pending})
            log.error("database still unreachable: records of calls %s not written", ids)
