"""Runs one call: feeds its events to the state machine, one at a time, and executes the
actions that come back. An action's result (a ghost joined, a ring went out) is handled at
once, before the next queued event, so the machine sees the world in the order it changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ..core.callflow import Action, CallFlow, CancelTimer, Event, StartTimer, TimerFired

log = logging.getLogger(__name__)


class _Start:
    """The actions a flow was created with (an outbound call's INVITE)."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = actions


class Effects(Protocol):
    async def execute(self, action: Action) -> Event | None: ...


class CallRunner:
    def __init__(
        self,
        name: str,
        flow: CallFlow,
        effects: Effects,
        on_done: Callable[[CallRunner], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.flow = flow
        self.effects = effects
        self.clock = clock
        self._on_done = on_done
        self._queue: asyncio.Queue[Event | _Start] = asyncio.Queue()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.done = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"call {name}")

    def feed(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def start(self, actions: list[Action]) -> None:
        self._queue.put_nowait(_Start(actions))

    async def _run(self) -> None:
        try:
            while not self.flow.ended:
                event = await self._queue.get()
                if isinstance(event, _Start):
                    await self._execute_all(event.actions)
                else:
                    await self._step(event)
        except Exception:
            log.exception("call %s failed", self.name)
        finally:
            for handle in self._timers.values():
                handle.cancel()
            self.done.set()
            self._on_done(self)

    async def _step(self, event: Event) -> None:
        before = self.flow.state
        actions = self.flow.handle(event, self.clock())
        if actions is None:
            log.debug("call %s: %s ignores %s", self.name, before, type(event).__name__)
            return
        if self.flow.state is not before:
            log.info(
                "call %s: %s → %s on %s", self.name, before, self.flow.state, type(event).__name__
            )
        await self._execute_all(actions)

    async def _execute_all(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, StartTimer):
                self._start_timer(action)
                continue
            if isinstance(action, CancelTimer):
                handle = self._timers.pop(action.name, None)
                if handle is not None:
                    handle.cancel()
                continue
            try:
                result = await self.effects.execute(action)
            except Exception:
                log.exception("call %s: %s failed", self.name, type(action).__name__)
                continue
            if result is not None:
                await self._step(result)

    def _start_timer(self, action: StartTimer) -> None:
        old = self._timers.pop(action.name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[action.name] = loop.call_later(
            action.seconds, self.feed, TimerFired(action.name)
        )

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            return False
        return True
