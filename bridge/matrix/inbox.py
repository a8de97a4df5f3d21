"""Processes stored Matrix events in order per room, with retries and parking.

Rooms are independent: each has one task that works through its events oldest first. An
event whose handler fails is retried with back-off; one that keeps failing (or can never
succeed) is parked with an error log, so it never blocks the events behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from ..storage.database import StorageError
from ..storage.inbox import InboxStore
from ..storage.models import InboxEvent, utcnow

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]

RESCAN_SECONDS = 5.0
STORAGE_RETRY_SECONDS = 2.0


class PermanentEventError(Exception):
    """This event can never be handled (malformed, impossible); park it at once."""


class AwaitingKeyError(Exception):
    """An encrypted event whose room key has not arrived: set aside until it does, without
    holding up the room's later events."""

    def __init__(self, message: str, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


def backoff(attempt: int, base: float, ceiling: float) -> float:
    """Seconds to wait after the given failed attempt (1-based): base, 2·base, 4·base, …"""
    return float(min(ceiling, base * (2 ** max(0, attempt - 1))))


class InboxProcessor:
    def __init__(
        self,
        store: InboxStore,
        handler: Handler,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        self.store = store
        self.handler = handler
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._wake = asyncio.Event()
        self._rooms: dict[str, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name="inbox")
        self.wake()

    async def stop(self) -> None:
        tasks = [t for t in (self._dispatcher, *self._rooms.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _dispatch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESCAN_SECONDS)
            self._wake.clear()
            try:
                rooms = await self.store.rooms_with_pending()
            except StorageError as e:
                log.warning("inbox: %s; retrying", e)
                continue
            for room_id in rooms:
                task = self._rooms.get(room_id)
                if task is None or task.done():
                    task = asyncio.create_task(self._work_room(room_id), name=f"room {room_id}")
                    # A room task that ends may have missed a late event: look again.
                    task.add_done_callback(lambda _t: self._wake.set())
                    self._rooms[room_id] = task
            for room_id in [r for r, t in self._rooms.items() if t.done()]:
                del self._rooms[room_id]

    async def _work_room(self, room_id: str) -> None:
        while True:
            try:
                item = await self.store.next_pending(room_id)
            except StorageError as e:
                log.warning("inbox %s: %s; retrying", room_id, e)
                await asyncio.sleep(STORAGE_RETRY_SECONDS)
                continue
            if item is None:
                return
            if item.next_attempt_at is not None:
                wait = (item.next_attempt_at - utcnow()).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                await self._process(item)
            except StorageError as e:
                log.warning("inbox %s: %s; retrying", room_id, e)
                await asyncio.sleep(STORAGE_RETRY_SECONDS)

    async def _process(self, item: InboxEvent) -> None:
        try:
            await self.handler(item.event)
        except PermanentEventError as e:
            log.error("parking event %s in %s: %s", item.event_id, item.room_id, e)
            await self.store.park(item.id, str(e))
            return
        except AwaitingKeyError as e:
            log.warning("%s; it waits until the key arrives", e)
            await self.store.await_key(item.id, e.session_id, str(e))
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            attempt = item.attempts + 1
            error = f"{e.__class__.__name__}: {e}"
            if attempt >= self.max_attempts:
                log.error(
                    "parking event %s in %s after %d attempts: %s",
                    item.event_id,
                    item.room_id,
                    attempt,
                    error,
                    exc_info=True,
                )
                await self.store.park(item.id, error)
                return
            delay = backoff(attempt, self.base_delay, self.max_delay)
            log.warning(
                "event %s in %s failed (attempt %d of %d), retrying in %.0f s: %s",
                item.event_id,
                item.room_id,
                attempt,
                self.max_attempts,
                delay,
                error,
            )
            await self.store.mark_retry(item.id, error, utcnow() + timedelta(seconds=delay))
            return
        await self.store.mark_done(item.id)
