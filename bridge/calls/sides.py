"""How a call appears in Matrix: as a MatrixRTC session member, or as a legacy 1:1 call.

The state machine says "join", "ring", "leave", "decline"; a side says how. Both sides post
their events as the phone number's ghost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from mautrix.appservice import IntentAPI
from mautrix.errors import IntentError, MatrixError

from ..config import Config
from ..core.callflow import Event, Finish, RingSent, SessionJoined, SessionJoinFailed
from ..matrix.legacy import (
    CALL_ANSWER,
    CALL_CANDIDATES,
    CALL_HANGUP,
    CALL_INVITE,
    CALL_NEGOTIATE,
    CALL_REJECT,
    CALL_SELECT_ANSWER,
    answer_content,
    hangup_content,
    hangup_reason,
    invite_content,
    negotiate_content,
    new_party_id,
    reject_content,
    select_answer_content,
)
from ..matrix.livekit_auth import LiveKitAuthError, LiveKitTokens
from ..matrix.presence import GhostPresence, now_ms
from ..matrix.room_state import is_encrypted, session_members
from ..matrix.rooms import RoomAccess
from ..matrix.rtc import RtcMember, livekit_focus
from ..workers.protocol import LiveKitMembers, RemoteDescription, StartLiveKit, StartWebRtc
from .media_e2ee import CallMediaKeys

log = logging.getLogger(__name__)

DESCRIPTION_TIMEOUT = 15.0


class CallSide(Protocol):
    async def join(self, ghost: IntentAPI) -> Event: ...
    async def ring(self, kind: str, mentions: list[str]) -> Event | None: ...
    async def before_answer(self) -> None: ...
    async def leave(self) -> None: ...
    async def decline(self, ghost: IntentAPI, ring_event_id: str, busy: bool) -> None: ...
    async def end(self, ghost: IntentAPI, finish: Finish, inbound: bool) -> None: ...


class SideContext(Protocol):
    """What a side needs from its call."""

    record_id: str
    call_ref: str
    room_id: str | None
    membership_device: str | None  # the ghost's encryption device, in an encrypted room

    @property
    def device_id(self) -> str: ...

    def send_to_worker(self, message: Any) -> None: ...
    async def note(self, **fields: object) -> None: ...


class RtcSide:
    """The ghost as a MatrixRTC member of the room's session (Element Call, Element X),
    with the phone's audio in the session's LiveKit room."""

    def __init__(
        self,
        ctx: SideContext,
        config: Config,
        rooms: RoomAccess,
        inbound: bool,
        tokens: LiveKitTokens,
        members: Callable[[], list[RtcMember]],
    ):
        self.ctx = ctx
        self.config = config
        self.rooms = rooms
        self.inbound = inbound
        self.tokens = tokens
        self.members = members  # the people in the call now (valid memberships)
        self.presence: GhostPresence | None = None
        self.ghost: IntentAPI | None = None
        self.media_started = False
        self.media_keys: CallMediaKeys | None = None  # in an encrypted room

    def _identities(self) -> list[str]:
        return [m.identity for m in self.members()]

    def _presence(self, ghost: IntentAPI) -> GhostPresence:
        if self.presence is None:
            assert self.ctx.room_id is not None
            self.presence = GhostPresence(
                ghost, self.ctx.room_id, self.ctx.device_id, self.config.matrixrtc
            )
        return self.presence

    async def join(self, ghost: IntentAPI) -> Event:
        room_id = self.ctx.room_id
        assert room_id is not None
        self.ghost = ghost
        try:
            await self.rooms.ensure_in_room(ghost, room_id)
            state = await self.rooms.state(room_id, ghost)
            self.rooms.note_member_power(room_id, state, ghost.mxid)
            if self.inbound:
                await self.rooms.ensure_slot_open(room_id, state, [self.rooms.bot, ghost])
            if is_encrypted(state) and not await self._encrypt_media(ghost, room_id):
                return SessionJoinFailed("an encrypted room, and the bridge's encryption is off")
            presence = self._presence(ghost)
            await self.ctx.note(ghost_user_id=ghost.mxid, rtc_state_key=presence.state_key)
            foci = self._foci(state)
            event_id = await presence.join(foci)
            name = await ghost.get_displayname(ghost.mxid) or ghost.mxid
            access = await self.tokens.for_ghost(
                ghost, room_id, self.ctx.device_id, foci[0], str(name)
            )
        except LiveKitAuthError as e:
            log.warning("call %s: no way into the SFU: %s", self.ctx.record_id, e)
            return SessionJoinFailed(f"the call's audio service refused: {e}")
        except (MatrixError, IntentError, OSError) as e:
            log.warning("call %s: joining %s failed: %s", self.ctx.record_id, room_id, e)
            return SessionJoinFailed(str(e))
        keys = self.media_keys
        self.ctx.send_to_worker(
            StartLiveKit(
                call_ref=self.ctx.call_ref,
                url=access.url,
                token=access.token,
                identities=self._identities(),
                own_key=keys.own_key() if keys is not None else None,
            )
        )
        self.media_started = True
        if keys is not None:
            keys.members_changed()
        return SessionJoined(event_id)

    async def _encrypt_media(self, ghost: IntentAPI, room_id: str) -> bool:
        """Frames encrypted per participant, as Element Call does in an encrypted room: the
        ghost's membership names its encryption device, where members send their keys.
        False if the bridge has no encryption."""
        devices = self.rooms.devices
        if devices is None:
            return False
        device = await devices.of(ghost)
        self.ctx.membership_device = device.ready.device_id
        self.media_keys = CallMediaKeys(
            self.ctx.record_id,
            self.ctx.call_ref,
            room_id,
            ghost.mxid,
            device.ready.device_id,
            device,
            self.members,
            self.ctx.send_to_worker,
            lambda text: self.rooms.notice(ghost, room_id, text),
            self.config.matrixrtc.media_key_timeout,
        )
        return True

    def update_members(self) -> None:
        if self.media_started:
            self.ctx.send_to_worker(
                LiveKitMembers(call_ref=self.ctx.call_ref, identities=self._identities())
            )
            if self.media_keys is not None:
                self.media_keys.members_changed()

    def _foci(self, state: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The oldest member's first focus (as clients pick it), else our own service."""
        for member in session_members(state, now_ms()):
            if member.foci_preferred:
                return [member.foci_preferred[0]]
        url = self.config.matrixrtc.livekit_service_url
        return [livekit_focus(url, self.ctx.room_id or "")]

    async def ring(self, kind: str, mentions: list[str]) -> Event | None:
        assert self.presence is not None
        event_id = await self.presence.ring(kind, mentions, self.config.matrixrtc.send_call_notify)
        return RingSent(event_id)

    async def before_answer(self) -> None:
        return None

    async def leave(self) -> None:
        if self.media_keys is not None:
            await self.media_keys.close()
        if self.presence is not None and self.presence.membership_event_id is not None:
            await self.presence.leave()

    async def decline(self, ghost: IntentAPI, ring_event_id: str, busy: bool) -> None:
        await self._presence(ghost).decline(ring_event_id)

    async def end(self, ghost: IntentAPI, finish: Finish, inbound: bool) -> None:
        if self.media_keys is not None:
            await self.media_keys.close()


class LegacySide:
    """The ghost as the other party of an MSC2746 1:1 call, with a WebRTC leg in the worker."""

    def __init__(
        self,
        ctx: SideContext,
        config: Config,
        rooms: RoomAccess,
        call_id: str,
        invitee: str,
        their_party: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.rooms = rooms
        self.call_id = call_id
        self.party_id = new_party_id()
        self.invitee = invitee
        self.their_party = their_party
        self.their_answer: str | None = None
        self.ghost: IntentAPI | None = None
        self.finished = False  # no more events to the Matrix side
        self.hangup_reason: str | None = None  # set when the bridge knows better (ice_failed)
        self._description: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # ---- what the worker and the manager tell it ------------------------------------------

    def description_ready(self, sdp: str) -> None:
        if not self._description.done():
            self._description.set_result(sdp)

    def media_failed(self, detail: str) -> None:
        if not self._description.done():
            self._description.set_exception(RuntimeError(detail))
            self._description.exception()  # nobody may be waiting: do not log it as lost

    def matrix_hung_up(self) -> None:
        self.finished = True

    async def _our_sdp(self) -> str:
        return await asyncio.wait_for(asyncio.shield(self._description), DESCRIPTION_TIMEOUT)

    async def _send(self, event_type: str, content: dict[str, Any]) -> str:
        assert self.ghost is not None and self.ctx.room_id is not None
        presence = GhostPresence(
            self.ghost, self.ctx.room_id, self.ctx.device_id, self.config.matrixrtc
        )
        return await presence.send(event_type, content)

    # ---- the state machine's verbs ---------------------------------------------------------

    async def join(self, ghost: IntentAPI) -> Event:
        """Inbound: get our offer ready. Outbound: answer the caller's invite."""
        self.ghost = ghost
        try:
            if self.their_party is None:
                await self.rooms.ensure_in_room(ghost, self.ctx.room_id or "")
                self.ctx.send_to_worker(StartWebRtc(call_ref=self.ctx.call_ref, offer=None))
                await self._our_sdp()
                return SessionJoined(f"legacy:{self.call_id}")
            sdp = await self._our_sdp()
            event_id = await self._send(
                CALL_ANSWER, answer_content(self.call_id, self.party_id, sdp)
            )
            return SessionJoined(event_id)
        except (MatrixError, IntentError, OSError, RuntimeError, TimeoutError) as e:
            log.warning("call %s: legacy call set-up failed: %s", self.ctx.record_id, e)
            self.hangup_reason = "user_media_failed"
            return SessionJoinFailed(str(e) or type(e).__name__)

    async def ring(self, kind: str, mentions: list[str]) -> Event | None:
        sdp = await self._our_sdp()
        lifetime = int(self.config.matrixrtc.ring_lifetime * 1000)
        event_id = await self._send(
            CALL_INVITE,
            invite_content(self.call_id, self.party_id, sdp, lifetime, self.invitee),
        )
        return RingSent(event_id)

    async def before_answer(self) -> None:
        """Inbound: the user answered; give the worker their SDP and pick their answer."""
        if self.their_answer is None or self.their_party is None:
            return
        self.ctx.send_to_worker(
            RemoteDescription(call_ref=self.ctx.call_ref, type="answer", sdp=self.their_answer)
        )
        await self._send(
            CALL_SELECT_ANSWER,
            select_answer_content(self.call_id, self.party_id, self.their_party),
        )

    async def leave(self) -> None:
        return None  # the hangup goes out in end(), where the reason is known

    async def decline(self, ghost: IntentAPI, ring_event_id: str, busy: bool) -> None:
        self.ghost = ghost
        if busy:
            await self._send(CALL_HANGUP, hangup_content(self.call_id, self.party_id, "user_busy"))
        else:
            await self._send(CALL_REJECT, reject_content(self.call_id, self.party_id))
        self.finished = True

    async def end(self, ghost: IntentAPI, finish: Finish, inbound: bool) -> None:
        if self.finished:
            return
        self.ghost = ghost
        self.finished = True
        reason = self.hangup_reason or hangup_reason(finish.outcome.value, finish.sip_code, inbound)
        await self._send(CALL_HANGUP, hangup_content(self.call_id, self.party_id, reason))

    async def answer_renegotiation(self, sdp: str) -> None:
        """The client's m.call.negotiate offer, answered by the worker's leg."""
        self._description = asyncio.get_running_loop().create_future()
        self.ctx.send_to_worker(
            RemoteDescription(call_ref=self.ctx.call_ref, type="offer", sdp=sdp)
        )
        answer = await self._our_sdp()
        lifetime = int(self.config.matrixrtc.ring_lifetime * 1000)
        await self._send(
            CALL_NEGOTIATE,
            negotiate_content(self.call_id, self.party_id, "answer", answer, lifetime),
        )


__all__ = ["CALL_CANDIDATES", "CallSide", "LegacySide", "RtcSide"]
