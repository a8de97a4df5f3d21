"""Where pjmedia's clock thread and asyncio meet, for one call's audio.

The clock thread calls `frame_from_phone` and `frame_to_phone` every 20 ms and must never
wait; asyncio awaits `from_phone` and calls `to_phone`. Both directions are bounded: when a
side falls behind, the oldest frames go (and are counted), so latency cannot grow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from .frames import SILENCE
from .mixer import Mixer

MAX_FRAMES = 10  # 200 ms either way at most


@dataclass
class PumpStats:
    from_phone: int = 0
    to_phone: int = 0
    underruns: int = 0  # the phone needed a frame and Matrix had none
    overruns: int = 0  # frames dropped because the other side was behind


class FramePump:
    def __init__(self, loop: asyncio.AbstractEventLoop, max_frames: int = MAX_FRAMES) -> None:
        self._loop = loop
        self._from_phone: deque[bytes] = deque(maxlen=max_frames)
        self._ready = asyncio.Event()
        self.mixer = Mixer(max_frames)
        self.stats = PumpStats()
        self.closed = False

    # ---- pjmedia's clock thread --------------------------------------------------------

    def frame_from_phone(self, pcm: bytes) -> None:
        if len(self._from_phone) == self._from_phone.maxlen:
            self.stats.overruns += 1
        self._from_phone.append(pcm)
        self.stats.from_phone += 1
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._ready.set)

    def frame_to_phone(self) -> bytes:
        mixed = self.mixer.pop_mixed()
        if mixed is None:
            if self.mixer.speakers:
                self.stats.underruns += 1
            return SILENCE
        self.stats.to_phone += 1
        return mixed

    # ---- asyncio -------------------------------------------------------------------------

    async def from_phone(self) -> bytes | None:
        """The next frame the phone sent; None once the call has ended."""
        while True:
            if self._from_phone:
                return self._from_phone.popleft()
            if self.closed:
                return None
            self._ready.clear()
            if self._from_phone or self.closed:
                continue
            await self._ready.wait()

    def to_phone(self, source: str, pcm: bytes) -> None:
        self.mixer.push(source, pcm)

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    @property
    def overruns(self) -> int:
        return self.stats.overruns + self.mixer.overruns
