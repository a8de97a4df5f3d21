"""Tones to send and the checks that prove they arrived: frequency (FFT), level, duration."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


def tone(frequency: float, seconds: float, rate: int, amplitude: int = 8000) -> Samples:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def write_wav(path: Path, samples: Samples, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def read_wav(path: Path) -> tuple[Samples, int]:
    with wave.open(str(path), "rb") as source:
        rate = source.getframerate()
        channels = source.getnchannels()
        data = np.frombuffer(source.readframes(source.getnframes()), np.int16)
    if channels > 1:
        data = data.reshape(-1, channels)[:, 0].copy()
    return data, rate


@dataclass(frozen=True)
class ToneReport:
    frequency: float  # the strongest frequency, Hz
    level_dbfs: float  # RMS level of the whole window
    purity: float  # share of energy within ±30 Hz of the peak
    seconds_heard: float  # time with the signal above -40 dBFS

    def is_tone(self, frequency: float, tolerance: float = 15.0) -> bool:
        return abs(self.frequency - frequency) <= tolerance and self.purity > 0.5


def analyse(samples: Samples, rate: int) -> ToneReport:
    if len(samples) < rate // 10:
        return ToneReport(0.0, -120.0, 0.0, 0.0)
    x = samples.astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(x**2))) or 1e-9
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    spectrum[freqs < 50] = 0  # ignore DC and hum
    peak = int(np.argmax(spectrum))
    near = np.abs(freqs - freqs[peak]) <= 30
    purity = float(spectrum[near].sum() / spectrum.sum()) if spectrum.sum() > 0 else 0.0
    window = rate // 50
    frames = x[: len(x) // window * window].reshape(-1, window)
    frame_db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-9)
    heard = float((frame_db > -40).sum() * window / rate)
    return ToneReport(float(freqs[peak]), 20 * np.log10(rms), purity, heard)


def loudest_stretch(samples: Samples, rate: int, seconds: float) -> Samples:
    """The window of the given length with the most energy (skips ringing and silence)."""
    n = int(seconds * rate)
    if len(samples) <= n:
        return samples
    energy = np.convolve(samples.astype(np.float64) ** 2, np.ones(rate // 10), mode="valid")
    step = rate // 10
    starts = range(0, len(samples) - n, step)
    best = max(starts, key=lambda i: energy[i : i + n - step : step].sum())
    return samples[best : best + n]
