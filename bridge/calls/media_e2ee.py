"""One call's frame encryption in an encrypted room (docs/encryption.md, media keys): the
ghost's media key made, sent by Olm to each member's device and rotated as members come and
go; the members' keys checked and handed to the worker's LiveKit leg; a member whose key
never comes is said once in the room, not left as a silent mystery."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

from mautrix.errors import MatrixError

from ..crypto.call_keys import (
    CALL_KEYS,
    KEY_BYTES,
    USE_DELAY_MS,
    CallKeyError,
    KeyHolder,
    KeyRollout,
    OutboundKeys,
    OwnKey,
    key_content,
    read_key_content,
)
from ..crypto.keys import Device
from ..crypto.olm_machine import ToDevice
from ..matrix.presence import now_ms
from ..matrix.rtc import RtcMember
from ..workers.protocol import LiveKitKey, MediaKey, Message

log = logging.getLogger(__name__)


class KeySender(Protocol):
    """The ghost's encryption device, as far as media keys need it."""

    async def send_to_devices(
        self, event_type: str, content: dict[str, object], targets: list[tuple[str, str]]
    ) -> list[tuple[str, str]]: ...


class CallMediaKeys:
    def __init__(
        self,
        record_id: str,
        call_ref: str,
        room_id: str,
        user_id: str,
        device_id: str,
        device: KeySender,
        members: Callable[[], list[RtcMember]],
        send_to_worker: Callable[[Message], None],
        notice: Callable[[str], Awaitable[None]],
        key_wait: float,
    ) -> None:
        self.record_id = record_id
        self.call_ref = call_ref
        self.room_id = room_id
        self.user_id = user_id
        self.device_id = device_id
        self.device = device
        self.members = members  # the call's other members now
        self.send_to_worker = send_to_worker
        self.notice = notice
        self.key_wait = key_wait  # seconds a member may take to send their key
        self.keys = OutboundKeys(lambda: secrets.token_bytes(KEY_BYTES), now_ms())
        self.received: dict[tuple[str, str], dict[int, bytes]] = {}  # device → index → key
        self._forwarded: set[tuple[str, str, int, bytes]] = set()
        self._waiting: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._told_room = False
        self._rollout: asyncio.Task[None] | None = None
        self._again = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def identity(self) -> str:
        return f"{self.user_id}:{self.device_id}"

    def own_key(self) -> MediaKey:
        return self._media_key(self.identity, self.keys.current)

    @staticmethod
    def _media_key(identity: str, key: OwnKey) -> MediaKey:
        return MediaKey(identity=identity, index=key.index, key=base64.b64encode(key.key).decode())

    # ---- members came or went -------------------------------------------------------------

    def members_changed(self) -> None:
        """Share or renew our key (one rollout at a time), and use keys held for newcomers."""
        if self._rollout is None or self._rollout.done():
            self._rollout = asyncio.create_task(
                self._roll_out(), name=f"media keys {self.call_ref}"
            )
        else:
            self._again = True
        self._forward_held()
        self._watch_for_keys()

    async def _roll_out(self) -> None:
        while True:
            self._again = False
            holders = [KeyHolder(m.user_id, m.device_id, m.started_ms) for m in self.members()]
            rollout = self.keys.rollout(holders, now_ms())
            if rollout is not None:
                await self._send(rollout)
            if not self._again:
                return

    async def _send(self, rollout: KeyRollout) -> None:
        if rollout.to:
            content = key_content(rollout.key, self.room_id, self.user_id, self.device_id, now_ms())
            targets = [(h.user_id, h.device_id) for h in rollout.to]
            try:
                reached = set(await self.device.send_to_devices(CALL_KEYS, content, targets))
            except (MatrixError, OSError) as e:
                # Not marked as shared: the next change of members tries again.
                log.warning(
                    "call %s: media key %d not sent: %s", self.record_id, rollout.key.index, e
                )
                reached = set()
            to = tuple(h for h in rollout.to if (h.user_id, h.device_id) in reached)
            self.keys.shared(KeyRollout(rollout.key, to, rollout.new))
            log.info(
                "call %s: media key %d sent to %d of %d devices",
                self.record_id,
                rollout.key.index,
                len(to),
                len(rollout.to),
            )
        if rollout.new:
            await asyncio.sleep(USE_DELAY_MS / 1000)  # the members have it before frames do
            if rollout.key == self.keys.current:
                key = self._media_key(self.identity, rollout.key)
                self.send_to_worker(LiveKitKey(call_ref=self.call_ref, key=key, own=True))

    # ---- keys from members ----------------------------------------------------------------

    def key_received(self, message: ToDevice, sender: Device | None) -> None:
        """A decrypted `io.element.call.encryption_keys` for this call's ghost."""
        try:
            key = read_key_content(message.content, self.room_id)
        except CallKeyError as e:
            log.warning(
                "call %s: a media key from %s ignored: %s", self.record_id, message.sender, e
            )
            return
        if sender is None or sender.device_id != key.claimed_device_id:
            log.warning(
                "call %s: a media key from %s claims device %s but came from %s; ignored",
                self.record_id,
                message.sender,
                key.claimed_device_id,
                "an unknown device" if sender is None else sender.device_id,
            )
            return
        self.received.setdefault((sender.user_id, sender.device_id), {})[key.index] = key.key
        if not self._forward_held():
            log.info(
                "call %s: a media key from %s %s, who is not in the call; held",
                self.record_id,
                sender.user_id,
                sender.device_id,
            )

    def _forward_held(self) -> bool:
        """Keys of members in the call to the worker, each once; whether any was new."""
        forwarded = False
        for member in self.members():
            device = (member.user_id, member.device_id)
            for index, key in self.received.get(device, {}).items():
                if (*device, index, key) in self._forwarded:
                    continue
                self._forwarded.add((*device, index, key))
                media_key = MediaKey(
                    identity=member.identity, index=index, key=base64.b64encode(key).decode()
                )
                self.send_to_worker(LiveKitKey(call_ref=self.call_ref, key=media_key))
                forwarded = True
            if device in self.received and (waiting := self._waiting.pop(device, None)):
                waiting.cancel()
        return forwarded

    def _watch_for_keys(self) -> None:
        loop = asyncio.get_running_loop()
        for member in self.members():
            device = (member.user_id, member.device_id)
            if device not in self.received and device not in self._waiting:
                self._waiting[device] = loop.call_later(self.key_wait, self._no_key, device)

    def _no_key(self, device: tuple[str, str]) -> None:
        self._waiting.pop(device, None)
        in_call = any((m.user_id, m.device_id) == device for m in self.members())
        if device in self.received or not in_call:
            return
        user_id, device_id = device
        log.warning(
            "call %s: no media key from %s %s after %.0f s; the phone cannot hear them",
            self.record_id,
            user_id,
            device_id,
            self.key_wait,
        )
        if not self._told_room:
            self._told_room = True
            text = (
                f"{user_id} (device {device_id}) sent the bridge no key for this encrypted "
                "call, so the phone cannot hear them. Their app may not support encrypted calls."
            )
            task = asyncio.create_task(self._tell_room(text))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _tell_room(self, text: str) -> None:
        try:
            await self.notice(text)
        except (MatrixError, OSError) as e:
            log.warning("call %s: cannot post the missing-key notice: %s", self.record_id, e)

    async def close(self) -> None:
        for waiting in self._waiting.values():
            waiting.cancel()
        self._waiting.clear()
        tasks = [t for t in (self._rollout, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
