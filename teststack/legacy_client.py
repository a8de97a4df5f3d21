"""A Matrix user placing and answering legacy 1:1 calls (MSC2746) with aiortc.

It speaks a tone into the call and records what it hears, so tests can check real audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from bridge.matrix.legacy import (
    CALL_ANSWER,
    CALL_CANDIDATES,
    CALL_HANGUP,
    CALL_INVITE,
    CALL_SELECT_ANSWER,
    answer_content,
    hangup_content,
    invite_content,
    select_answer_content,
)
from bridge.media.resample import Resampler
from bridge.media.webrtc import restrict_host_addresses

from .matrix_client import Event, MatrixUser

RATE = 48_000
FRAME = 960  # 20 ms


class PacedTrack(MediaStreamTrack):
    """Audio made by `samples`, paced in real time as a microphone would be."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pts = 0
        self._start: float | None = None

    def samples(self, t: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, Any]:
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._pts / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (np.arange(FRAME) + self._pts) / RATE
        samples = self.samples(t).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, RATE)
        self._pts += FRAME
        return frame


class ToneTrack(PacedTrack):
    """A sine tone."""

    def __init__(self, frequency: float, amplitude: int = 8000) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude

    def samples(self, t: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, Any]:
        return self.amplitude * np.sin(2 * np.pi * self.frequency * t)


def offer_only(sdp: str, codec: str, payload_type: int = 103) -> str:
    """The same offer with one codec in its audio section."""
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        if line.startswith("m=audio "):
            line = " ".join([*line.split(" ")[:3], str(payload_type)])
            lines += [line, f"a=rtpmap:{payload_type} {codec}"]
            continue
        lines.append(line)
    return "\r\n".join(lines)


class LegacyCaller:
    def __init__(
        self,
        user: MatrixUser,
        room_id: str,
        tone_hz: float,
        track: MediaStreamTrack | None = None,
        jitter_frames: int | None = None,
    ) -> None:
        self.jitter_frames = jitter_frames
        self.user = user
        self.track = track or ToneTrack(tone_hz)
        self.room_id = room_id
        self.tone_hz = tone_hz
        self.call_id = uuid.uuid4().hex
        self.party_id = uuid.uuid4().hex[:12]
        restrict_host_addresses(["127.0.0.1"])
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.heard: list[bytes] = []
        self.arrivals: list[float] = []  # when each heard chunk arrived (monotonic)
        self._recorder: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)
        self.their_party: str | None = None

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.jitter_frames is not None:  # as the bridge's own legs do (see bridge.media)
            for receiver in self.pc.getReceivers():
                receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(  # type: ignore[attr-defined]
                    capacity=16, prefetch=self.jitter_frames
                )
        if track.kind == "audio":
            self._recorder = asyncio.create_task(self._record(track))

    async def _record(self, track: MediaStreamTrack) -> None:
        resampler = Resampler(16_000)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.AudioFrame):
                    self.heard.append(resampler.convert(frame))
                    self.arrivals.append(time.monotonic())

    def recording(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        return np.frombuffer(b"".join(self.heard), np.int16)

    async def _send(self, kind: str, content: dict[str, Any]) -> str:
        return await self.user.send(self.room_id, kind, content)

    async def call(self, lifetime_ms: int = 60_000, only_codec: str | None = None) -> str:
        """Place the call (m.call.invite); returns the invite's event id. `only_codec`
        offers that codec alone (named as in SDP, e.g. "ISAC/16000")."""
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        if only_codec is not None:
            sdp = offer_only(sdp, only_codec)
        return await self._send(
            CALL_INVITE, invite_content(self.call_id, self.party_id, sdp, lifetime_ms, "")
        )

    async def wait_for(self, kind: str, sender: str, timeout: float = 30.0) -> Event:
        def match(event: Event) -> bool:
            content = event.get("content", {})
            return (
                event.get("type") == kind
                and event.get("sender") == sender
                and content.get("call_id") == self.call_id
            )

        return await self.user.wait_for_event(self.room_id, match, timeout)

    async def connect_answer(self, ghost: str, timeout: float = 30.0) -> Event:
        """Wait for the ghost's m.call.answer, apply it, and select it."""
        answer = await self.wait_for(CALL_ANSWER, ghost, timeout)
        self.their_party = answer["content"]["party_id"]
        await self.pc.setRemoteDescription(
            RTCSessionDescription(answer["content"]["answer"]["sdp"], "answer")
        )
        await self._send(
            CALL_SELECT_ANSWER, select_answer_content(self.call_id, self.party_id, self.their_party)
        )
        return answer

    async def answer(self, ghost: str, timeout: float = 30.0, unreachable: bool = False) -> Event:
        """Wait for the ghost's m.call.invite and answer it (with no way to reach us, if
        `unreachable`: ICE must then fail)."""

        def match(event: Event) -> bool:
            return event.get("type") == CALL_INVITE and event.get("sender") == ghost

        invite = await self.user.wait_for_event(self.room_id, match, timeout)
        self.call_id = invite["content"]["call_id"]
        self.their_party = invite["content"]["party_id"]
        await self.pc.setRemoteDescription(
            RTCSessionDescription(invite["content"]["offer"]["sdp"], "offer")
        )
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        if unreachable:
            lines = [line for line in sdp.split("\r\n") if not line.startswith("a=candidate")]
            sdp = "\r\n".join(lines)
        await self._send(CALL_ANSWER, answer_content(self.call_id, self.party_id, sdp))
        return invite

    async def send_candidates(self, candidates: list[dict[str, Any]]) -> None:
        await self._send(
            CALL_CANDIDATES,
            {
                "call_id": self.call_id,
                "party_id": self.party_id,
                "version": "1",
                "candidates": candidates,
            },
        )

    async def hangup(self, reason: str = "user_hangup") -> None:
        await self._send(CALL_HANGUP, hangup_content(self.call_id, self.party_id, reason))

    async def close(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder
        await self.pc.close()

    async def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline or self.pc.connectionState == "failed":
                raise TimeoutError(f"WebRTC is {self.pc.connectionState}")
            await asyncio.sleep(0.1)
