"""Each call's frame pump, shared by the SIP thread and the worker's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from .pump import FramePump


class PumpRegistry:
    """Each call's frame pump, made on first use from either thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pumps: dict[str, FramePump] = {}
        self._lock = threading.Lock()
        self.closed_underruns = 0
        self.closed_overruns = 0

    def get(self, ref: str) -> FramePump:
        with self._lock:
            pump = self._pumps.get(ref)
            if pump is None:
                pump = self._pumps[ref] = FramePump(self._loop)
            return pump

    def close(self, ref: str) -> None:
        with self._lock:
            pump = self._pumps.pop(ref, None)
        if pump is not None:
            self.closed_underruns += pump.stats.underruns
            self.closed_overruns += pump.overruns
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(pump.close)

    def totals(self) -> tuple[int, int]:
        with self._lock:
            live = list(self._pumps.values())
        return (
            self.closed_underruns + sum(p.stats.underruns for p in live),
            self.closed_overruns + sum(p.overruns for p in live),
        )
