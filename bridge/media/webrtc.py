"""A WebRTC audio leg (aiortc) between a call's frame pump and a Matrix client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcpeerconnection import filter_preferred_codecs
from aiortc.sdp import candidate_from_sdp

from .dtmf_rtp import TelephoneEvents, is_telephone_event
from .frames import CLOCK_RATE, SAMPLES_PER_FRAME
from .pump import FramePump
from .resample import Chunker, Resampler

log = logging.getLogger(__name__)


def restrict_host_addresses(addresses: list[str]) -> None:
    """Offer only these local addresses as ICE host candidates (all when empty).

    aioice has no setting for it, so its address lookup is wrapped.
    """
    if not addresses:
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


class PhoneTrack(MediaStreamTrack):
    """The phone's audio as a WebRTC track: one 20 ms frame per frame from pjmedia."""

    kind = "audio"

    def __init__(self, pump: FramePump) -> None:
        super().__init__()
        self.pump = pump
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        pcm = await self.pump.from_phone()
        if pcm is None:
            self.stop()
            raise MediaStreamError
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES_PER_FRAME)
        frame.planes[0].update(pcm)
        frame.sample_rate = CLOCK_RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, CLOCK_RATE)
        self._pts += SAMPLES_PER_FRAME
        return frame


class WebRtcLeg:
    def __init__(
        self,
        name: str,
        pump: FramePump,
        ice_servers: list[dict[str, Any]],
        codecs: list[str],
        on_state: Callable[[str], None],
        jitter_frames: int = 4,
        on_dtmf: Callable[[str], None] | None = None,
    ) -> None:
        self.jitter_frames = jitter_frames
        self.telephone_events = TelephoneEvents(on_dtmf) if on_dtmf is not None else None
        self.name = name
        self.pump = pump
        self.codecs = [c.lower() for c in codecs]
        servers = [RTCIceServer(**server) for server in ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._on_state = on_state
        self._consumers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._state_changed)

    def _state_changed(self) -> None:
        log.info("WebRTC leg %s: %s", self.name, self.pc.connectionState)
        self._on_state(self.pc.connectionState)

    def _shorten_jitter_buffers(self) -> None:
        """aiortc holds 4 audio packets (80 ms) before it plays any; take our own setting.

        The buffer is private to RTCRtpReceiver, so it is replaced by its mangled name.
        """
        for receiver in self.pc.getReceivers():
            if receiver.track is not None and receiver.track.kind == "audio":
                receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(  # type: ignore[attr-defined]
                    capacity=16, prefetch=self.jitter_frames
                )
                if self.telephone_events is not None:
                    receiver.dtmf_listener = self.telephone_events.packet  # type: ignore[attr-defined]

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._consumers.append(asyncio.create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        resampler = Resampler(CLOCK_RATE)
        chunker = Chunker()
        source = f"webrtc:{track.id}"
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                for chunk in chunker.feed(resampler.convert(frame)):
                    self.pump.to_phone(source, chunk)
        except MediaStreamError:
            pass
        finally:
            self.pump.mixer.remove(source)

    def _attach_phone_track(self) -> None:
        transceiver = next((t for t in self.pc.getTransceivers() if t.kind == "audio"), None)
        track = PhoneTrack(self.pump)
        if transceiver is None:
            self.pc.addTrack(track)
            transceiver = self.pc.getTransceivers()[-1]
        else:
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendrecv"
        available = RTCRtpSender.getCapabilities("audio").codecs
        ordered = sorted(
            (c for c in available if c.name.lower() in self.codecs),
            key=lambda c: self.codecs.index(c.name.lower()),
        ) + [c for c in available if is_telephone_event(c)]
        if ordered:
            transceiver.setCodecPreferences(ordered)
            # Answering, aiortc has already negotiated in the offer's order; the answerer
            # may state its own (RFC 3264), and the first codec is the one both send.
            if transceiver._codecs:
                transceiver._codecs = filter_preferred_codecs(transceiver._codecs, ordered)

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        self._shorten_jitter_buffers()
        if not any(t.sender.track for t in self.pc.getTransceivers()):
            self._attach_phone_track()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def offer(self) -> str:
        self._attach_phone_track()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        self._shorten_jitter_buffers()

    async def add_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        if not candidate:
            return  # end of candidates
        parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pc.close()
