"""Resampling with libswresample (PyAV), and cutting audio into 20 ms frames."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from .frames import CLOCK_RATE, FRAME_BYTES, SAMPLES_PER_FRAME


class Resampler:
    """Any decoded audio frame → 16-bit mono PCM bytes at `rate`."""

    def __init__(self, rate: int = CLOCK_RATE) -> None:
        self.rate = rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)

    def convert(self, frame: av.AudioFrame) -> bytes:
        out = b""
        for resampled in self._resampler.resample(frame):
            out += bytes(resampled.planes[0])[: resampled.samples * 2]
        return out


class Chunker:
    """Collects PCM of any length and hands out whole frames."""

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        self.frame_bytes = frame_bytes
        self._buffer = bytearray()

    def feed(self, pcm: bytes) -> Iterator[bytes]:
        self._buffer += pcm
        while len(self._buffer) >= self.frame_bytes:
            yield bytes(self._buffer[: self.frame_bytes])
            del self._buffer[: self.frame_bytes]


def pcm_frame(pcm: bytes, rate: int = CLOCK_RATE, pts: int = 0) -> av.AudioFrame:
    """PCM bytes → an av.AudioFrame whose pts counts samples (time base 1/rate)."""
    samples = np.frombuffer(pcm, np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


__all__ = ["SAMPLES_PER_FRAME", "Chunker", "Resampler", "pcm_frame"]
