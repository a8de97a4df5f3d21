"""A Matrix user in a room's MatrixRTC call the way Element Call joins it: a membership
event, a token from the MatrixRTC auth service, and a LiveKit participant that publishes a
tone and records what it hears."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np
from livekit import api, rtc

from bridge.matrix.livekit_auth import livekit_room_name
from bridge.matrix.rtc import (
    CALL_MEMBER,
    livekit_focus,
    membership_content,
    membership_state_key,
)

from .matrix_client import MatrixUser

RATE = 48_000
FRAME = 960


class RtcParticipant:
    def __init__(
        self,
        user: MatrixUser,
        room_id: str,
        auth_url: str,
        tone_hz: float,
        sound: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]] | None = None,
    ) -> None:
        """`sound(t)` gives the samples for times `t` (seconds); a sine at tone_hz if None."""
        self.sound = sound or (lambda t: 8000 * np.sin(2 * np.pi * tone_hz * t))
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.user = user
        self.room_id = room_id
        self.auth_url = auth_url
        self.tone_hz = tone_hz
        self.device_id = "EC" + uuid.uuid4().hex[:8].upper()
        self.room = rtc.Room()
        self.heard: dict[str, list[bytes]] = defaultdict(list)  # by participant identity
        self.membership_event_id: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.room.on("track_subscribed", self._subscribed)

    @property
    def identity(self) -> str:
        return f"{self.user.user_id}:{self.device_id}"

    def _subscribed(self, track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._tasks.append(asyncio.create_task(self._record(participant.identity, track)))

    async def _record(self, identity: str, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=16_000, num_channels=1)
        async for event in stream:
            self.heard[identity].append(bytes(event.frame.data))
            self.arrivals[identity].append(time.monotonic())

    def recording(self, identity: str) -> np.ndarray[Any, np.dtype[np.int16]]:
        return np.frombuffer(b"".join(self.heard.get(identity, [])), np.int16)

    async def _membership(self) -> str:
        key = membership_state_key(self.user.user_id, self.device_id)
        content = membership_content(
            self.user.user_id,
            self.device_id,
            [livekit_focus(self.auth_url, self.room_id)],
            int(time.time() * 1000),
            14_400_000,
        )
        self.membership_event_id = await self.user.send_state(
            self.room_id, CALL_MEMBER, key, content
        )
        return self.membership_event_id

    async def join(self) -> str:
        """Membership first (as Element Call does), then the SFU, then the microphone."""
        membership = await self._membership()
        openid = await self.user.request(
            "POST", f"/v3/user/{quote(self.user.user_id)}/openid/request_token", {}
        )
        body = {"room": self.room_id, "openid_token": openid, "device_id": self.device_id}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.auth_url}/sfu/get", json=body) as response,
        ):
            grant = await response.json()
            if response.status != 200:
                raise RuntimeError(f"the auth service refused: {grant}")
        await self._connect(grant["url"], grant["jwt"])
        return membership

    async def join_with_token(self, url: str, key: str, secret: str) -> str:
        """Membership, then the SFU with a token minted from the SFU's own key."""
        membership = await self._membership()
        grant = api.VideoGrants(room_join=True, room=livekit_room_name(self.room_id))
        token = (
            api.AccessToken(key, secret).with_identity(self.identity).with_grants(grant).to_jwt()
        )
        await self._connect(url, token)
        return membership

    async def _connect(self, url: str, token: str) -> None:
        await self.room.connect(url, token)
        source = rtc.AudioSource(RATE, 1, queue_size_ms=60)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self._tasks.append(asyncio.create_task(self._speak(source)))

    async def _speak(self, source: rtc.AudioSource) -> None:
        """A microphone: one 20 ms frame every 20 ms."""
        pts = 0
        start = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, start + pts / RATE - time.monotonic()))
            t = (np.arange(FRAME) + pts) / RATE
            samples = self.sound(t).astype(np.int16)
            await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
            pts += FRAME

    async def leave(self) -> None:
        key = membership_state_key(self.user.user_id, self.device_id)
        await self.user.send_state(self.room_id, CALL_MEMBER, key, {})
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.room.disconnect()
