"""Routes each stored Matrix event to what cares about it: the bot, the commands."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from mautrix.appservice import IntentAPI
from mautrix.errors import MatrixRequestError
from mautrix.types import (
    Event,
    EventType,
    Membership,
    MessageType,
    RoomID,
    SerializerError,
    StateEvent,
    TextMessageEventContent,
    UserID,
)

from ..calls.manager import CALL_EVENT_TYPES, CallManager
from ..commands.processor import CommandProcessor
from ..config import Config, PermissionLevel
from ..crypto.device import ENCRYPTED
from ..crypto.olm_machine import DecryptionError, MissingSessionError
from ..storage.portals import PortalStore
from .ghosts import GhostDirectory
from .inbox import AwaitingKeyError, PermanentEventError
from .room_state import may_send
from .rooms import RoomAccess
from .rtc import CALL_MEMBER

log = logging.getLogger(__name__)

NOT_PERMITTED_INVITE = "You are not permitted to use this bridge."


def parse_event(raw: dict[str, Any]) -> Event:
    if not isinstance(raw.get("content"), dict):
        raise PermanentEventError(f"{raw.get('type')!r} event has no content object")
    raw = dict(raw)
    unsigned = raw.get("unsigned")
    if isinstance(unsigned, dict) and "prev_content" not in unsigned and "prev_content" in raw:
        raw["unsigned"] = {**unsigned, "prev_content": raw["prev_content"]}
    try:
        event: Event = Event.deserialize(raw)
    except (SerializerError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise PermanentEventError(f"malformed {raw.get('type')!r} event: {e}") from e
    event.type = event.type.with_class(
        EventType.Class.STATE if "state_key" in raw else EventType.Class.MESSAGE
    )
    return event


class MatrixEventRouter:
    def __init__(
        self,
        config: Config,
        bot: IntentAPI,
        commands: CommandProcessor,
        calls: CallManager,
        ghosts: GhostDirectory,
        portals: PortalStore,
        rooms: RoomAccess,
    ) -> None:
        self.config = config
        self.bot = bot
        self.commands = commands
        self.calls = calls
        self.ghosts = ghosts
        self.portals = portals
        self.rooms = rooms

    def is_bridge_user(self, user_id: str) -> bool:
        return user_id == self.config.bot_mxid or self.ghosts.is_ghost(user_id)

    async def handle(self, raw: dict[str, Any]) -> None:
        if raw.get("type") == ENCRYPTED and "state_key" not in raw:
            raw = self._decrypted(raw)
        event = parse_event(raw)
        if isinstance(event, StateEvent):
            await self.bot.state_store.update_state(event)
        if raw["type"] in CALL_EVENT_TYPES:
            await self.calls.on_room_event(raw)
        elif event.type == EventType.ROOM_MEMBER:
            await self._membership(event)
        elif event.type == EventType.ROOM_MESSAGE:
            await self._message(event)

    def _decrypted(self, raw: dict[str, Any]) -> dict[str, Any]:
        devices = self.rooms.devices
        if devices is None:
            return raw  # encryption is off: nothing here reads it
        try:
            return devices.decrypt(raw)
        except MissingSessionError as e:
            raise AwaitingKeyError(
                f"cannot decrypt {raw['event_id']} from {raw['sender']} yet: {e}", e.session_id
            ) from e
        except DecryptionError as e:
            raise PermanentEventError(f"cannot decrypt {raw['event_id']}: {e}") from e

    async def _membership(self, event: Event) -> None:
        assert isinstance(event, StateEvent)
        if event.content.membership != Membership.INVITE:
            return
        if self.ghosts.is_ghost(event.state_key):
            # The bot invites ghosts into linked rooms itself; only people open portals.
            if not self.is_bridge_user(event.sender):
                await self._ghost_invited(event)
            return
        if event.state_key != self.config.bot_mxid:
            return
        inviter = event.sender
        room_id = event.room_id
        if self.config.permission_of(inviter) is PermissionLevel.NONE:
            log.info("declining %s's invite to %s: no permission", inviter, room_id)
            await self._leave(room_id, NOT_PERMITTED_INVITE)
            return
        log.info("joining %s, invited by %s", room_id, inviter)
        await self.bot.join_room(room_id)
        await self.bot.state_store.joined(room_id, self.bot.mxid)
        await self._notice(
            room_id, f"Hello! Type `{self.commands.prefix} help` to see what I can do."
        )

    async def _ghost_invited(self, event: StateEvent) -> None:
        """A user invites a number's ghost: the room becomes their portal to that number."""
        number = self.ghosts.number_of(event.state_key)
        assert number is not None
        inviter, room_id = event.sender, event.room_id
        if self.config.permission_of(inviter) is PermissionLevel.NONE:
            log.info("%s may not invite %s; declining", inviter, event.state_key)
            ghost = self.bot.user(UserID(event.state_key))
            await ghost.leave_room(room_id, reason=NOT_PERMITTED_INVITE)
            return
        ghost = await self.ghosts.intent_for(number)
        await ghost.join_room(room_id)
        await self.portals.save(inviter, number, room_id)
        log.info("%s opened a portal to %s in %s", inviter, number, room_id)
        state = await self.rooms.state(room_id, ghost)
        if not may_send(state, ghost.mxid, CALL_MEMBER):
            await self.rooms.notice(
                ghost,
                room_id,
                f"I cannot join calls here: allow {CALL_MEMBER} at power level 0 in this "
                "room's settings (or give me power level 50).",
            )

    async def _leave(self, room_id: RoomID, reason: str) -> None:
        try:
            await self.bot.leave_room(room_id, reason=reason)
        except MatrixRequestError as e:
            log.warning("could not decline the invite to %s: %s", room_id, e)

    async def _message(self, event: Event) -> None:
        if self.is_bridge_user(event.sender):
            return
        content = event.content
        if not isinstance(content, TextMessageEventContent):
            return
        if content.msgtype not in (MessageType.TEXT, MessageType.NOTICE) or not content.body:
            return
        if content.msgtype == MessageType.NOTICE or not self.commands.is_command(content.body):
            return
        reply = await self.commands.run(event.sender, event.room_id, event.event_id, content.body)
        await self._notice(event.room_id, reply)

    async def _notice(self, room_id: RoomID, text: str) -> None:
        formatted = "<br>".join(
            re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line, quote=False))
            for line in text.split("\n")
        )
        await self.rooms.notice(self.bot, room_id, text, formatted)
