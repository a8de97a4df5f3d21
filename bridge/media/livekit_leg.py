"""A call's audio in a LiveKit room (the SFU Element Call and Element X use).

The phone's ghost joins the room as a participant: it publishes the phone as a microphone
track at 48 kHz, and mixes into the phone the audio of the participants the controller
names (those with a valid MatrixRTC membership; anyone else stays unheard, as Element Call
would not show them either). In an encrypted room every frame is encrypted with a key per
participant, as Element Call's key provider derives them (docs/encryption.md, media keys).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable

from livekit import rtc

from ..workers.protocol import MediaKey
from .frames import CLOCK_RATE, FRAME_MS
from .pump import FramePump
from .resample import Chunker, Resampler, pcm_frame

log = logging.getLogger(__name__)

SFU_RATE = 48_000
SFU_FRAME = SFU_RATE * FRAME_MS // 1000

# Element Call's key provider (MatrixKeyProvider over livekit-client's BaseKeyProvider):
# HKDF-SHA256 from the raw key, salt "LKFrameEncryptionKey", ratchet window 10, 256 key slots.
FRAME_ENCRYPTION = rtc.E2EEOptions(
    key_provider_options=rtc.KeyProviderOptions(
        ratchet_salt=b"LKFrameEncryptionKey",
        ratchet_window_size=10,
        key_ring_size=256,
        key_derivation_function=rtc.KeyDerivationFunction.HKDF,
    )
)


class LiveKitLeg:
    def __init__(self, name: str, pump: FramePump, on_state: Callable[[str, str], None]) -> None:
        self.name = name
        self.pump = pump
        self.on_state = on_state
        self.room = rtc.Room()
        self.allowed: set[str] = set()
        self._listening: dict[str, asyncio.Task[None]] = {}  # identity → its audio task
        # identity → its subscribed audio track, and whether it was published encrypted
        self._tracks: dict[str, tuple[rtc.Track, bool]] = {}
        self.encrypted = False  # frames are encrypted: hear only encrypted tracks with a key
        self._keyed: set[str] = set()  # identities whose frame key arrived
        self._sender: asyncio.Task[None] | None = None
        self._own_index = 0  # the phone's key index, for cryptors made after a rotation
        self.room.on("track_subscribed", self._track_subscribed)
        self.room.on("track_unsubscribed", self._track_unsubscribed)
        self.room.on("disconnected", lambda reason: self.on_state("closed", str(reason)))

    async def start(
        self, url: str, token: str, identities: list[str], own_key: MediaKey | None
    ) -> None:
        self.allowed = set(identities)
        room_options = rtc.RoomOptions(auto_subscribe=True)
        if own_key is not None:
            room_options.encryption = FRAME_ENCRYPTION
            self.encrypted = True
        await self.room.connect(url, token, room_options)
        if own_key is not None:
            self.set_key(own_key, own=True)  # before the phone's first frame goes out
        # Short queues both ways: a worker that falls behind drops audio, not time.
        source = rtc.AudioSource(SFU_RATE, 1, queue_size_ms=60)
        track = rtc.LocalAudioTrack.create_audio_track("phone", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)
        if own_key is not None:
            self._send_with_own_index()
        self._sender = asyncio.create_task(self._send_phone(source), name=f"sfu send {self.name}")
        log.info(
            "call %s: in LiveKit room %s as %s",
            self.name,
            self.room.name,
            self.room.local_participant.identity,
        )
        self.on_state("connected", "")

    async def _send_phone(self, source: rtc.AudioSource) -> None:
        resampler = Resampler(SFU_RATE)
        chunker = Chunker(SFU_FRAME * 2)
        pts = 0
        while True:
            pcm = await self.pump.from_phone()
            if pcm is None:
                return
            upsampled = resampler.convert(pcm_frame(pcm, CLOCK_RATE, pts))
            pts += len(pcm) // 2
            for chunk in chunker.feed(upsampled):
                await source.capture_frame(rtc.AudioFrame(chunk, SFU_RATE, 1, SFU_FRAME))

    def set_key(self, key: MediaKey, own: bool) -> None:
        """A participant's frame key; `own`: the phone's, which its track sends with now."""
        provider = self.room.e2ee_manager.key_provider
        if provider is None:
            log.warning("call %s: a media key for a call without encryption; ignored", self.name)
            return
        provider.set_key(key.identity, base64.b64decode(key.key), key.index)
        if own:
            self._own_index = key.index
            self._send_with_own_index()
        else:
            self._keyed.add(key.identity)
            self._refresh()
        log.info("call %s: media key %d of %s in use", self.name, key.index, key.identity)

    def _send_with_own_index(self) -> None:
        identity = self.room.local_participant.identity
        for cryptor in self.room.e2ee_manager.frame_cryptors():
            if cryptor.participant_identity == identity:
                cryptor.set_key_index(self._own_index)

    def set_members(self, identities: list[str]) -> None:
        """The participants the phone may hear, as memberships come and go."""
        self.allowed = set(identities)
        self._refresh()

    def _not_heard(self, identity: str) -> str | None:
        """Why the phone may not hear this participant's track, or None."""
        if identity not in self.allowed:
            return "has no membership"
        if not self.encrypted:
            return None
        if not self._tracks[identity][1]:
            # The SDK passes an unencrypted track through: in an encrypted call it stays out.
            return "sends unencrypted audio into an encrypted call"
        if identity not in self._keyed:
            return "has sent no media key yet"
        return None

    def _refresh(self) -> None:
        for identity in list(self._listening):
            if identity not in self._tracks or self._not_heard(identity) is not None:
                self._stop_listening(identity)
        for identity, (track, _) in self._tracks.items():
            if identity not in self._listening and self._not_heard(identity) is None:
                self._listen(identity, track)

    def _track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        identity = participant.identity
        sealed = publication.encryption_type != rtc.EncryptionType.NONE
        self._tracks[identity] = (track, sealed)
        why = self._not_heard(identity)
        if why is not None:
            log.info("call %s: %s %s; not mixed in", self.name, identity, why)
        self._refresh()

    def _track_unsubscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        self._tracks.pop(participant.identity, None)
        self._stop_listening(participant.identity)

    def _listen(self, identity: str, track: rtc.Track) -> None:
        self._listening[identity] = asyncio.create_task(
            self._receive(identity, track), name=f"sfu receive {identity}"
        )

    def _stop_listening(self, identity: str) -> None:
        task = self._listening.pop(identity, None)
        if task is not None:
            task.cancel()
        self.pump.mixer.remove(identity)

    async def _receive(self, identity: str, track: rtc.Track) -> None:
        stream = rtc.AudioStream(
            track, sample_rate=CLOCK_RATE, num_channels=1, frame_size_ms=FRAME_MS, capacity=5
        )
        chunker = Chunker()
        try:
            async for event in stream:
                for chunk in chunker.feed(bytes(event.frame.data)):
                    self.pump.to_phone(identity, chunk)
        finally:
            await stream.aclose()

    async def close(self) -> None:
        tasks = [t for t in (self._sender, *self._listening.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.room.disconnect()
