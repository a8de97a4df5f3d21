"""The worker's WebRTC legs, one per call that has one, driven by the controller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..media.dtmf_rtp import enable_telephone_events
from ..media.livekit_leg import LiveKitLeg
from ..media.pumps import PumpRegistry
from ..media.webrtc import WebRtcLeg, restrict_host_addresses
from .protocol import (
    LiveKitKey,
    LiveKitMembers,
    LiveKitState,
    Message,
    RemoteCandidates,
    RemoteDescription,
    StartLiveKit,
    StartWebRtc,
    WebRtcDescription,
    WebRtcState,
    WorkerSettings,
)

log = logging.getLogger(__name__)

SfuCommand = StartLiveKit | LiveKitMembers | LiveKitKey
MediaCommand = StartWebRtc | RemoteDescription | RemoteCandidates | SfuCommand


class MediaLegs:
    def __init__(
        self,
        settings: WorkerSettings,
        pumps: PumpRegistry,
        send: Callable[[Message], None],
        on_dtmf: Callable[[str, str], None],
    ) -> None:
        self.on_dtmf = on_dtmf
        self.settings = settings
        self.pumps = pumps
        self.send = send
        self._legs: dict[str, WebRtcLeg] = {}
        self._sfu: dict[str, LiveKitLeg] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # A call's commands run one at a time, in the order they came (candidates after
        # the description they belong to).
        self._locks: dict[str, asyncio.Lock] = {}
        restrict_host_addresses(settings.webrtc_host_addresses)
        enable_telephone_events()

    async def handle(self, command: MediaCommand) -> None:
        lock = self._locks.setdefault(command.call_ref, asyncio.Lock())
        async with lock:
            await self._handle(command)

    async def _handle(self, command: MediaCommand) -> None:
        ref = command.call_ref
        if isinstance(command, SfuCommand):
            await self._livekit(command)
            return
        try:
            if isinstance(command, StartWebRtc):
                await self._start(command)
            elif isinstance(command, RemoteDescription):
                leg = self._legs[ref]
                if command.type == "answer":
                    await leg.accept_answer(command.sdp)
                else:
                    sdp = await leg.answer(command.sdp)
                    self.send(WebRtcDescription(call_ref=ref, type="answer", sdp=sdp))
            else:
                leg = self._legs[ref]
                for candidate in command.candidates:
                    await leg.add_candidate(
                        candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
                    )
        except KeyError:
            log.warning("%s for call %s, which has no WebRTC leg", command.kind, ref)
        except Exception as e:  # a bad SDP must not take the worker down
            log.exception("WebRTC %s for call %s failed", command.kind, ref)
            self.send(WebRtcState(call_ref=ref, state="failed", detail=f"{type(e).__name__}: {e}"))

    async def _livekit(self, command: SfuCommand) -> None:
        ref = command.call_ref
        if not isinstance(command, StartLiveKit):
            leg = self._sfu.get(ref)
            if leg is None:
                log.warning("%s for call %s, which has no LiveKit leg", command.kind, ref)
            elif isinstance(command, LiveKitMembers):
                leg.set_members(command.identities)
            else:
                leg.set_key(command.key, command.own)
            return

        def report(state: str, detail: str) -> None:
            if ref in self._sfu or state != "closed":
                self.send(LiveKitState(call_ref=ref, state=state, detail=detail))

        leg = LiveKitLeg(ref, self.pumps.get(ref), report)
        self._sfu[ref] = leg
        try:
            await leg.start(command.url, command.token, command.identities, command.own_key)
        except Exception as e:  # the SFU refused or is unreachable
            log.warning("call %s: joining LiveKit at %s failed: %s", ref, command.url, e)
            self._sfu.pop(ref, None)
            await leg.close()
            self.send(LiveKitState(call_ref=ref, state="failed", detail=f"{type(e).__name__}: {e}"))

    async def _start(self, command: StartWebRtc) -> None:
        ref = command.call_ref
        if ref in self._legs:
            raise ValueError(f"call {ref} already has a WebRTC leg")
        leg = WebRtcLeg(
            ref,
            self.pumps.get(ref),
            self.settings.ice_servers,
            self.settings.webrtc_codecs,
            lambda state: self.send(WebRtcState(call_ref=ref, state=state)),
            self.settings.webrtc_jitter_frames,
            lambda digit: self.on_dtmf(ref, digit),
        )
        self._legs[ref] = leg
        if command.offer is not None:
            sdp = await leg.answer(command.offer)
            self.send(WebRtcDescription(call_ref=ref, type="answer", sdp=sdp))
        else:
            sdp = await leg.offer()
            self.send(WebRtcDescription(call_ref=ref, type="offer", sdp=sdp))

    def call_ended(self, ref: str) -> None:
        self._locks.pop(ref, None)
        for legs in (self._legs, self._sfu):
            leg = legs.pop(ref, None)
            if leg is not None:
                task = asyncio.create_task(leg.close())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close_all(self) -> None:
        for ref in {*self._legs, *self._sfu}:
            self.call_ended(ref)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
