import asyncio

import numpy as np
import pytest

from bridge.media.frames import FRAME_BYTES, SAMPLES_PER_FRAME, SILENCE
from bridge.media.mixer import Mixer
from bridge.media.pump import FramePump
from bridge.media.resample import Chunker, Resampler, pcm_frame


def frame_of(value: int) -> bytes:
    return np.full(SAMPLES_PER_FRAME, value, np.int16).tobytes()


def test_mixer_sums_speakers_and_clips() -> None:
    mixer = Mixer(max_frames=3)
    assert mixer.pop_mixed() is None
    mixer.push("a", frame_of(1000))
    assert mixer.pop_mixed() == frame_of(1000)
    mixer.push("a", frame_of(20000))
    mixer.push("b", frame_of(20000))
    mixer.push("c", frame_of(-5))
    mixed = np.frombuffer(mixer.pop_mixed() or b"", np.int16)
    assert mixed[0] == 32767  # clipped, not wrapped
    with pytest.raises(ValueError):
        mixer.push("a", b"short")


def test_mixer_bounds_each_queue_and_counts_overruns() -> None:
    mixer = Mixer(max_frames=2)
    for value in (1, 2, 3):
        mixer.push("a", frame_of(value))
    assert mixer.overruns == 1
    assert mixer.pop_mixed() == frame_of(2)  # the oldest went
    mixer.remove("a")
    assert mixer.speakers == 0


async def test_pump_carries_frames_both_ways_and_counts() -> None:
    pump = FramePump(asyncio.get_running_loop(), max_frames=2)
    assert pump.frame_to_phone() == SILENCE  # nobody speaks yet: silence, no underrun
    assert pump.stats.underruns == 0
    pump.to_phone("alice", frame_of(7))
    assert pump.frame_to_phone() == frame_of(7)
    assert pump.frame_to_phone() == SILENCE and pump.stats.underruns == 1

    waiter = asyncio.create_task(pump.from_phone())
    await asyncio.sleep(0)
    pump.frame_from_phone(frame_of(9))  # as the clock thread would
    assert await asyncio.wait_for(waiter, 1) == frame_of(9)
    for value in (1, 2, 3):
        pump.frame_from_phone(frame_of(value))
    assert pump.stats.overruns == 1
    assert await pump.from_phone() == frame_of(2)
    pump.close()
    assert await pump.from_phone() == frame_of(3)
    assert await pump.from_phone() is None


def test_resampler_keeps_the_tone_and_the_chunker_cuts_frames() -> None:
    t = np.arange(48000) / 48000
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    resampler = Resampler(16000)
    chunker = Chunker()
    frames: list[bytes] = []
    for start in range(0, 48000, 960):  # 20 ms at 48 kHz
        pcm = resampler.convert(pcm_frame(tone[start : start + 960].tobytes(), 48000, start))
        frames.extend(chunker.feed(pcm))
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert 48 <= len(frames) <= 50  # about one second
    out = np.frombuffer(b"".join(frames), np.int16).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out))
    peak = np.fft.rfftfreq(len(out), 1 / 16000)[int(np.argmax(spectrum))]
    assert abs(peak - 1000) < 5
