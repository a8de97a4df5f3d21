"""Room chores for calls: read state, get a ghost in, open the call slot, make portal DMs."""

from __future__ import annotations

import logging
from typing import Any

from mautrix.api import Method, Path
from mautrix.appservice import AppService, IntentAPI
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, RoomCreatePreset, RoomID, UserID

from ..crypto.devices import Devices
from .room_state import State, is_encrypted, may_send, required_level, slot
from .rtc import CALL_MEMBER, RTC_SLOT, SLOT_ID, slot_is_open, slot_open_content
from .send import send_event

log = logging.getLogger(__name__)

SLOT_EVENT = EventType.find(RTC_SLOT, EventType.Class.STATE)
DEFAULT_EVENT_LEVELS = {
    "m.room.name": 50,
    "m.room.power_levels": 100,
    "m.room.history_visibility": 100,
    "m.room.canonical_alias": 50,
    "m.room.avatar": 50,
    "m.room.tombstone": 100,
    "m.room.server_acl": 100,
    "m.room.encryption": 100,
}
CALL_MEMBER_EVENT = EventType.find(CALL_MEMBER, EventType.Class.STATE)


class RoomAccess:
    def __init__(self, az: AppService, devices: Devices | None = None) -> None:
        self.az = az
        self.devices = devices  # set when the bridge works in encrypted rooms
        # Rooms where no bridge user may open the call slot or send memberships, and why.
        self.lacking_power: dict[str, str] = {}

    @property
    def bot(self) -> IntentAPI:
        return self.az.intent

    async def state(self, room_id: str, intent: IntentAPI | None = None) -> State:
        reader = intent or self.bot
        events = await reader.api.request(Method.GET, Path.v3.rooms[RoomID(room_id)].state)
        return [e for e in events if isinstance(e, dict)]

    async def notice(
        self, intent: IntentAPI, room_id: str, text: str, html: str | None = None
    ) -> None:
        """A notice, Megolm-encrypted in an encrypted room."""
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if html is not None:
            content.update(format="org.matrix.custom.html", formatted_body=html)
        if self.devices is not None:
            state = await self.state(room_id, intent)
            if is_encrypted(state):
                device = await self.devices.of(intent)
                await device.send(room_id, state, "m.room.message", content)
                return
        await send_event(intent, room_id, "m.room.message", content)

    async def ensure_in_room(self, intent: IntentAPI, room_id: str) -> None:
        """Join the room as this ghost, with an invite from the bot if the room needs one."""
        await intent.ensure_joined(RoomID(room_id), bot=self.bot)

    async def ensure_slot_open(
        self, room_id: str, state: State, candidates: list[IntentAPI]
    ) -> bool:
        """Open the room's m.call slot if it is not, as the first user allowed to."""
        if slot_is_open(slot(state)):
            return True
        for intent in candidates:
            if not may_send(state, intent.mxid, RTC_SLOT):
                continue
            try:
                await intent.send_state_event(
                    RoomID(room_id), SLOT_EVENT, slot_open_content(), state_key=SLOT_ID
                )
            except MatrixRequestError as e:
                log.warning("%s could not open the call slot in %s: %s", intent.mxid, room_id, e)
                continue
            self.lacking_power.pop(room_id, None)
            log.info("opened the call slot in %s as %s", room_id, intent.mxid)
            return True
        reason = (
            f"no bridge user may send {RTC_SLOT}: current clients will not ring; give the bot "
            f"power level {_slot_level(state)} or allow {RTC_SLOT} at a lower level"
        )
        self.lacking_power[room_id] = reason
        log.warning("room %s: %s", room_id, reason)
        return False

    def note_member_power(self, room_id: str, state: State, ghost: UserID) -> None:
        if not may_send(state, ghost, CALL_MEMBER):
            self.lacking_power[room_id] = (
                f"ghosts may not send {CALL_MEMBER}: allow it at power level 0"
            )

    async def allow_calls(self, room_id: str, state: State) -> list[str]:
        """As the bot, let everyone send call memberships and open the slot; say what is left."""
        problems = []
        levels = next(
            (e.get("content") for e in state if e.get("type") == "m.room.power_levels"), None
        )
        wanted = {CALL_MEMBER: 0, RTC_SLOT: 0}
        if isinstance(levels, dict):
            events = dict(levels.get("events") or {})
            if any(events.get(k) != v for k, v in wanted.items()):
                if may_send(state, self.bot.mxid, "m.room.power_levels"):
                    content: dict[str, Any] = {**levels, "events": {**events, **wanted}}
                    await self.bot.send_state_event(
                        RoomID(room_id), EventType.ROOM_POWER_LEVELS, content
                    )
                    state = await self.state(room_id)
                else:
                    problems.append(
                        f"I may not change power levels here, so ghosts may not be able to "
                        f"send {CALL_MEMBER}; give me power, or set it to level 0 yourself"
                    )
        if not await self.ensure_slot_open(room_id, state, [self.bot]):
            problems.append(self.lacking_power[room_id])
        return problems

    async def create_portal(self, ghost: IntentAPI, user_id: str) -> str:
        """A DM from the number's ghost to the user: two members, calls allowed for both."""
        room_id = await ghost.create_room(
            preset=RoomCreatePreset.TRUSTED_PRIVATE,
            is_direct=True,
            invitees=[UserID(user_id)],
            # Replaces the default "events" map (the override is shallow): keep its entries.
            power_level_override={"events": {**DEFAULT_EVENT_LEVELS, CALL_MEMBER: 0, RTC_SLOT: 0}},
            initial_state=[
                {"type": RTC_SLOT, "state_key": SLOT_ID, "content": slot_open_content()}
            ],
        )
        return str(room_id)


def _slot_level(state: State) -> int:
    return required_level(state, RTC_SLOT, is_state=True)
