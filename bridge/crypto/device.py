"""One encryption device of the bridge's (the bot's or a ghost's), against the homeserver:
keys uploaded, to-device messages taken from appservice transactions, room keys shared, room
events decrypted and encrypted.

How Synapse carries each piece to an appservice is in docs/encryption.md: the device is made
with MSC4190 (PUT /devices as the appservice), requests act as it with `device_id`
(MSC3202), to-device messages arrive in transactions (MSC2409/MSC4203) and one-time-key
counts and device-list changes with them (MSC3202).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mautrix.api import Method, Path
from mautrix.appservice import IntentAPI

from ..matrix.room_state import State, members
from ..matrix.send import send_event
from ..storage.crypto import CryptoStore
from .keys import Device, read_device_keys
from .olm_machine import DecryptionError, OlmMachine, ToDevice
from .pickling import pickle_machine, unpickle_machine

log = logging.getLogger(__name__)

ENCRYPTED = "m.room.encrypted"
DEVICE_NAME = "SIP bridge"

# What the device does with a decrypted to-device message other than a room key: whose
# device got it, the message, and the sender's device as its Olm key proves (None: unknown).
MessageHandler = Callable[[str, ToDevice, Device | None], Awaitable[None]]


def pickle_key(as_token: str) -> bytes:
    """The key the stored sessions are encrypted with: only the as_token's holder has it."""
    return hashlib.sha256(b"sip-bridge crypto store\0" + as_token.encode()).digest()


class UserDevice:
    def __init__(
        self,
        intent: IntentAPI,
        store: CryptoStore,
        key: bytes,
        on_room_key: Callable[[str], Awaitable[None]],
        on_message: MessageHandler,
    ) -> None:
        self.intent = intent
        self.on_room_key = on_room_key  # events waiting for this session can be read now
        self.on_message = on_message
        self.store = store
        self.key = key
        self.machine: OlmMachine | None = None
        self.devices: dict[str, list[Device]] = {}  # by user, from /keys/query
        self._lock = asyncio.Lock()  # one change to the machine at a time, each saved

    @property
    def ready(self) -> OlmMachine:
        if self.machine is None:
            raise RuntimeError(f"the encryption device of {self.intent.mxid} is not started")
        return self.machine

    async def start(self) -> None:
        user_id = self.intent.mxid
        stored = await self.store.load(user_id)
        if stored is None:
            device_id = f"SIPBRIDGE{secrets.token_hex(4).upper()}"
            self.machine = OlmMachine(user_id, device_id)
            log.info("creating the encryption device %s of %s", device_id, user_id)
        else:
            device_id, pickle = stored
            self.machine = unpickle_machine(user_id, device_id, pickle, self.key)
        await self.intent.api.request(
            Method.PUT, Path.v3.devices[device_id], {"display_name": DEVICE_NAME}
        )
        await self._upload(device_keys=True)

    async def _save(self) -> None:
        machine = self.ready
        await self.store.save(machine.user_id, machine.device_id, pickle_machine(machine, self.key))

    def _as_device(self) -> dict[str, str]:
        return {"device_id": self.ready.device_id}

    async def _upload(self, device_keys: bool = False, uploaded: int | None = None) -> None:
        machine = self.ready
        if uploaded is None:
            counts = await self.intent.api.request(
                Method.POST, Path.v3.keys.upload, {}, query_params=self._as_device()
            )
            uploaded = int(counts.get("one_time_key_counts", {}).get("signed_curve25519", 0))
        body: dict[str, Any] = {"one_time_keys": machine.one_time_keys(uploaded)}
        if device_keys:
            body["device_keys"] = machine.device_keys()
        if not body["one_time_keys"] and not device_keys:
            return
        await self._save()  # the keys exist before the server may hand them out
        await self.intent.api.request(
            Method.POST, Path.v3.keys.upload, body, query_params=self._as_device()
        )
        machine.mark_published()
        await self._save()

    # From appservice transactions

    def forget_devices_of(self, user_id: str) -> None:
        self.devices.pop(user_id, None)

    async def one_time_keys_left(self, left: int) -> None:
        if left < self.ready.account.max_number_of_one_time_keys // 4:
            async with self._lock:
                await self._upload(uploaded=left)

    async def to_device(self, message: dict[str, Any]) -> None:
        if message.get("type") != ENCRYPTED:
            return  # the bot asks for nothing in clear
        async with self._lock:
            try:
                received = self.ready.decrypt_to_device(message)
                session_id = self.ready.accept_room_key(received)
            except DecryptionError as e:
                log.warning("to-device message from %s ignored: %s", message.get("sender"), e)
                return
            await self._save()
        if session_id:
            log.info("room key %s from %s", session_id, received.sender)
            await self.on_room_key(session_id)
        elif received.type != "m.room_key":
            sender = await self._device_with_key(received.sender, received.sender_key)
            await self.on_message(self.intent.mxid, received, sender)

    async def _device_with_key(self, user_id: str, curve25519: str) -> Device | None:
        """The user's device whose identity key this is (asking again if it is new)."""
        for refresh in (False, True):
            if refresh:
                self.forget_devices_of(user_id)
            for device in await self._devices_of(user_id):
                if device.curve25519 == curve25519:
                    return device
        return None

    # Room events

    def decrypt(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.ready.decrypt_room_event(event)

    async def send(
        self, room_id: str, state: State, event_type: str, content: dict[str, Any]
    ) -> str:
        """Send a room event Megolm-encrypted, sharing the room key with whoever lacks it."""
        recipients = members(state, "join", "invite")  # who may read what is sent now
        async with self._lock:
            machine = self.ready
            now_ms = int(time.time() * 1000)
            outbound = machine.room_session(room_id, now_ms)
            if not outbound.readers() <= recipients:
                # Someone who had the key left: what follows must be unreadable to them.
                outbound = machine.new_room_session(room_id, now_ms)
            missing = [
                d
                for user in sorted(recipients)
                for d in await self._devices_of(user)
                if f"{d.user_id}|{d.device_id}" not in outbound.shared_with
                and d.curve25519 != machine.curve25519
            ]
            if missing:
                await self._share(room_id, missing)
            encrypted = machine.encrypt_room_event(room_id, event_type, content, now_ms)
            await self._save()
        return await send_event(self.intent, room_id, ENCRYPTED, encrypted)

    async def _devices_of(self, user_id: str) -> list[Device]:
        known = self.devices.get(user_id)
        if known is not None:
            return known
        answer = await self.intent.api.request(
            Method.POST, Path.v3.keys.query, {"device_keys": {user_id: []}}
        )
        found = answer.get("device_keys", {}).get(user_id, {})
        devices = [
            d
            for device_id, keys in (found.items() if isinstance(found, dict) else [])
            if (d := read_device_keys(user_id, device_id, keys)) is not None
        ]
        self.devices[user_id] = devices
        return devices

    async def _share(self, room_id: str, devices: list[Device]) -> None:
        machine = self.ready
        outbound = machine.room_session(room_id, int(time.time() * 1000))
        key_content = machine.room_key_content(room_id, outbound)
        for d in await self._send_olm(devices, "m.room_key", key_content):
            outbound.shared_with.add(f"{d.user_id}|{d.device_id}")

    async def send_to_devices(
        self, event_type: str, content: dict[str, Any], targets: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """An Olm-encrypted to-device message to each (user, device) that can be reached;
        the ones it went to."""
        devices: list[Device] = []
        for user_id, device_id in targets:
            for refresh in (False, True):  # a device that is new to us: ask once more
                if refresh:
                    self.forget_devices_of(user_id)
                found = [d for d in await self._devices_of(user_id) if d.device_id == device_id]
                if found:
                    devices.extend(found)
                    break
            else:
                log.warning(
                    "%s has no device %s with keys; cannot send it %s",
                    user_id,
                    device_id,
                    event_type,
                )
        async with self._lock:
            sent = await self._send_olm(devices, event_type, content)
        return [(d.user_id, d.device_id) for d in sent]

    async def _send_olm(
        self, devices: list[Device], event_type: str, content: dict[str, Any]
    ) -> list[Device]:
        """Olm sessions made where missing, then one message to each device; the devices it
        went to. Call with the lock held."""
        machine = self.ready
        need_session = [d for d in devices if not machine.has_olm_session(d)]
        if need_session:
            claim: dict[str, dict[str, str]] = {}
            for d in need_session:
                claim.setdefault(d.user_id, {})[d.device_id] = "signed_curve25519"
            answer = await self.intent.api.request(
                Method.POST, Path.v3.keys.claim, {"one_time_keys": claim}
            )
            claimed = answer.get("one_time_keys", {})
            for d in need_session:
                keys = claimed.get(d.user_id, {}).get(d.device_id, {})
                key = next(iter(keys.values()), None) if isinstance(keys, dict) else None
                if not isinstance(key, dict):
                    log.warning("no one-time key for %s %s; it cannot read", d.user_id, d.device_id)
                    continue
                try:
                    machine.start_olm_session(d, key)
                except (DecryptionError, ValueError) as e:
                    log.warning("%s %s: %s", d.user_id, d.device_id, e)
        messages: dict[str, dict[str, Any]] = {}
        sent = [d for d in devices if machine.has_olm_session(d)]
        for d in sent:
            payload = machine.encrypt_to_device(d, event_type, content)
            messages.setdefault(d.user_id, {})[d.device_id] = payload
        if not messages:
            return []
        await self._save()  # the sessions advanced: never reuse a ratchet step
        txn = secrets.token_hex(8)
        await self.intent.api.request(
            Method.PUT, Path.v3.sendToDevice[ENCRYPTED][txn], {"messages": messages}
        )
        return sent
