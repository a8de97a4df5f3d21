"""Every encryption device the bridge speaks with: the bot's, made at start, and each
ghost's, made the first time the ghost is used (so it exists before it joins a room and the
room's members share their keys with it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mautrix.appservice import AppService, IntentAPI
from mautrix.types import UserID

from ..storage.crypto import CryptoStore
from .device import MessageHandler, UserDevice, pickle_key

log = logging.getLogger(__name__)


class Devices:
    def __init__(
        self,
        az: AppService,
        store: CryptoStore,
        as_token: str,
        on_room_key: Callable[[str], Awaitable[None]],
        on_message: MessageHandler,
    ) -> None:
        self.az = az
        self.bot_id = str(az.bot_mxid)
        self.store = store
        self.key = pickle_key(as_token)
        self.on_room_key = on_room_key
        self.on_message = on_message
        self._by_user: dict[str, UserDevice] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._bot_started = asyncio.Event()

    async def of(self, intent: IntentAPI) -> UserDevice:
        """The user's device, made (or loaded) and its keys uploaded the first time."""
        known = self._by_user.get(intent.mxid)
        if known is not None:
            return known
        async with self._locks.setdefault(intent.mxid, asyncio.Lock()):
            known = self._by_user.get(intent.mxid)
            if known is None:
                known = UserDevice(intent, self.store, self.key, self.on_room_key, self.on_message)
                await known.start()
                self._by_user[intent.mxid] = known
                if intent.mxid == self.bot_id:
                    self._bot_started.set()
        return known

    def _intent(self, user_id: str) -> IntentAPI:
        bot = self.az.intent
        return bot if user_id == bot.mxid else bot.user(UserID(user_id))

    async def on_transaction(self, body: dict[str, Any]) -> None:
        """To-device messages, key counts and device-list changes, to the devices they are for.
        A transaction that comes while the bot's device is starting waits for it (answering
        503 would make the homeserver back off from the bridge for a while)."""
        await self._bot_started.wait()
        messages = body.get("de.sorunome.msc2409.to_device") or body.get("to_device") or []
        for message in messages if isinstance(messages, list) else []:
            if not isinstance(message, dict) or not isinstance(message.get("to_user_id"), str):
                continue
            # A ghost's device may not be loaded in this run yet (a restart): load it.
            device = await self.of(self._intent(message["to_user_id"]))
            if message.get("to_device_id") == device.ready.device_id:
                await device.to_device(message)
        changed = body.get("org.matrix.msc3202.device_lists")
        if isinstance(changed, dict):
            for user_id in [*changed.get("changed", []), *changed.get("left", [])]:
                for device in self._by_user.values():
                    device.forget_devices_of(user_id)
        counts = body.get("org.matrix.msc3202.device_one_time_keys_count")
        for user_id, by_device in counts.items() if isinstance(counts, dict) else []:
            holder = self._by_user.get(user_id)
            if holder is None or not isinstance(by_device, dict):
                continue
            ours = by_device.get(holder.ready.device_id)
            left = ours.get("signed_curve25519") if isinstance(ours, dict) else None
            if isinstance(left, int):
                await holder.one_time_keys_left(left)

    def decrypt(self, event: dict[str, Any]) -> dict[str, Any]:
        """Decrypted by whichever of the bridge's devices holds the event's session."""
        session_id = event.get("content", {}).get("session_id")
        for device in self._by_user.values():
            if session_id in device.ready.inbound:
                return device.decrypt(event)
        return self._by_user[self.az.intent.mxid].decrypt(event)  # raises: why not
