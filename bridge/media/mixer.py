"""Mixes the Matrix speakers into the one stream a phone hears."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from .frames import FRAME_BYTES


class Mixer:
    """Per-speaker queues of frames; each pop takes one frame of each speaker that has one.

    Filled on the asyncio thread, emptied on pjmedia's clock thread, hence the lock (held
    for microseconds, never across anything that waits).
    """

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self._queues: dict[str, deque[bytes]] = {}
        self._lock = threading.Lock()
        self.overruns = 0

    def push(self, source: str, frame: bytes) -> None:
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes, not {len(frame)}")
        with self._lock:
            queue = self._queues.get(source)
            if queue is None:
                queue = self._queues[source] = deque(maxlen=self.max_frames)
            if len(queue) == self.max_frames:
                self.overruns += 1  # the oldest frame goes: latency stays bounded
            queue.append(frame)

    def remove(self, source: str) -> None:
        with self._lock:
            self._queues.pop(source, None)

    @property
    def speakers(self) -> int:
        return len(self._queues)

    def pop_mixed(self) -> bytes | None:
        """One mixed frame, or None when no speaker has a frame ready."""
        with self._lock:
            frames = [q.popleft() for q in self._queues.values() if q]
        if not frames:
            return None
        if len(frames) == 1:
            return frames[0]
        total = np.sum([np.frombuffer(f, np.int16) for f in frames], axis=0, dtype=np.int32)
        return bytes(np.clip(total, -32768, 32767).astype(np.int16).tobytes())
