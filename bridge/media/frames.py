"""The audio frame the media path passes around: 20 ms of 16-bit mono PCM at 16 kHz.

16 kHz is pjmedia's conference-bridge rate here: it resamples G.711's 8 kHz and G.722's
16 kHz to it, and the Matrix side (WebRTC, LiveKit) resamples from it.
"""

CLOCK_RATE = 16_000
FRAME_MS = 20
SAMPLES_PER_FRAME = CLOCK_RATE * FRAME_MS // 1000
FRAME_BYTES = SAMPLES_PER_FRAME * 2
SILENCE = bytes(FRAME_BYTES)
