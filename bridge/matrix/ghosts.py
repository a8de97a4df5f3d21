"""Ghost users for phone numbers: named from the template, registered before they act."""

from __future__ import annotations

import asyncio
import logging
import re

from mautrix.appservice import AppService, IntentAPI
from mautrix.errors import MatrixRequestError
from mautrix.types import UserID

from ..config import Config
from ..crypto.devices import Devices
from ..storage.ghosts import GhostStore

log = logging.getLogger(__name__)


class GhostDirectory:
    def __init__(
        self, config: Config, az: AppService, store: GhostStore, devices: Devices | None = None
    ) -> None:
        self.devices = devices  # when encryption is on, each ghost gets a device
        self.config = config
        self.az = az
        self.store = store
        prefix, suffix = config.bridge.username_template.split("{number}")
        self._pattern = re.compile(
            f"^@{re.escape(prefix)}(.+){re.escape(suffix)}:{re.escape(config.homeserver.domain)}$"
        )
        # One set-up per ghost at a time: two calls from a new number at once would both
        # register and store it. Entries go when nobody holds or awaits them.
        self._setting_up: dict[str, tuple[asyncio.Lock, int]] = {}

    def user_id(self, number: str) -> UserID:
        localpart = self.config.bridge.username_template.replace("{number}", number.lower())
        return UserID(f"@{localpart}:{self.config.homeserver.domain}")

    def number_of(self, user_id: str) -> str | None:
        match = self._pattern.match(user_id)
        return match.group(1) if match else None

    def is_ghost(self, user_id: str) -> bool:
        return self._pattern.match(user_id) is not None

    def display_name(self, number: str, caller_name: str | None) -> str:
        name = caller_name.strip() if caller_name and caller_name.strip() else number
        return self.config.bridge.displayname_template.replace("{name}", name)

    async def intent_for(self, number: str, caller_name: str | None = None) -> IntentAPI:
        """The ghost's intent, registered and named; the name follows the latest caller id."""
        user_id = self.user_id(number)
        lock, users = self._setting_up.get(user_id, (asyncio.Lock(), 0))
        self._setting_up[user_id] = (lock, users + 1)
        try:
            async with lock:
                intent = await self._set_up(user_id, number, caller_name)
                if self.devices is not None:
                    await self.devices.of(intent)
                return intent
        finally:
            lock, users = self._setting_up[user_id]
            if users == 1:
                del self._setting_up[user_id]
            else:
                self._setting_up[user_id] = (lock, users - 1)

    async def _set_up(self, user_id: UserID, number: str, caller_name: str | None) -> IntentAPI:
        intent = self.az.intent.user(user_id)
        wanted = self.display_name(number, caller_name)
        known = await self.store.get(user_id)
        if (
            known is not None
            and known.registered
            and (known.display_name == wanted or not caller_name)
        ):
            await self.az.state_store.registered(user_id)
            return intent
        await intent.ensure_registered()
        try:
            await intent.set_displayname(wanted)
        except MatrixRequestError as e:
            log.warning("could not name %s %r: %s", user_id, wanted, e)
        await self.store.save(user_id, number, wanted)
        return intent
