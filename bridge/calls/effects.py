"""What a call's actions do: SIP through its worker, Matrix as its ghost, records in the DB."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mautrix.appservice import IntentAPI
from mautrix.errors import IntentError, MatrixError
from mautrix.types import RoomID

from ..config import Config
from ..core.callflow import (
    Action,
    CallFlow,
    Direction,
    Event,
    Finish,
    HangUpSip,
    JoinSession,
    LeaveSession,
    PlaceSipCall,
    PostNotice,
    RespondSip,
    Ring,
    RingSent,
    SendDecline,
    SessionJoined,
    SessionJoinFailed,
)
from ..matrix.ghosts import GhostDirectory
from ..matrix.presence import GhostPresence, now_ms
from ..matrix.room_state import session_members
from ..matrix.rooms import RoomAccess
from ..matrix.rtc import livekit_focus
from ..metrics import Metrics
from ..workers.protocol import AnswerCall, HangupCall, MakeCall, Message, RejectCall
from .records import RecordKeeper

log = logging.getLogger(__name__)


@dataclass
class CallContext:
    """What one call is, beyond its state: who, where, and on which worker."""

    record_id: str
    direction: Direction
    worker_id: int
    call_ref: str
    remote_number: str
    remote_name: str | None
    trunk: str | None
    room_id: str | None = None
    matrix_user: str | None = None  # outbound: who called
    caller_id: str | None = None  # outbound: the number shown to the phone
    ghost: IntentAPI | None = None
    presence: GhostPresence | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        return "SIP" + self.record_id[:10].upper()


class SipSender:
    """Sends to a call's worker; the pool is attached once it exists."""

    def __init__(self) -> None:
        self.pool: Any = None

    def send(self, worker_id: int, message: Message) -> bool:
        return bool(self.pool is not None and self.pool.send(worker_id, message))


@dataclass
class CallServices:
    config: Config
    sip: SipSender
    ghosts: GhostDirectory
    rooms: RoomAccess
    records: RecordKeeper
    metrics: Metrics


class CallEffects:
    def __init__(self, ctx: CallContext, flow: CallFlow, services: CallServices) -> None:
        self.ctx = ctx
        self.flow = flow
        self.s = services

    async def execute(self, action: Action) -> Event | None:
        ctx = self.ctx
        if isinstance(action, RespondSip):
            if action.code < 300:
                self._sip(AnswerCall(call_ref=ctx.call_ref, code=action.code))
            else:
                self._sip(
                    RejectCall(
                        call_ref=ctx.call_ref, code=action.code, reason=action.reason or None
                    )
                )
        elif isinstance(action, HangUpSip):
            self._sip(HangupCall(call_ref=ctx.call_ref))
        elif isinstance(action, PlaceSipCall):
            assert ctx.trunk is not None
            self._sip(
                MakeCall(
                    call_ref=ctx.call_ref,
                    trunk=ctx.trunk,
                    number=ctx.remote_number,
                    caller_id=ctx.caller_id,
                    caller_name=ctx.extra.get("caller_name"),
                )
            )
        elif isinstance(action, JoinSession):
            return await self._join()
        elif isinstance(action, Ring):
            assert ctx.presence is not None
            event_id = await ctx.presence.ring(
                action.kind, list(action.mentions), self.s.config.matrixrtc.send_call_notify
            )
            return RingSent(event_id)
        elif isinstance(action, LeaveSession):
            if ctx.presence is not None and ctx.presence.membership_event_id is not None:
                await ctx.presence.leave()
        elif isinstance(action, SendDecline):
            ghost = await self._ghost()
            presence = ctx.presence or GhostPresence(
                ghost, ctx.room_id or "", ctx.device_id, self.s.config.matrixrtc
            )
            await presence.decline(action.notification_event_id)
        elif isinstance(action, PostNotice):
            await self._notice(action.text)
        elif isinstance(action, Finish):
            await self._finish(action)
        return None

    def _sip(self, message: Message) -> None:
        if not self.s.sip.send(self.ctx.worker_id, message):
            log.warning(
                "call %s: worker %d is gone; %s not sent",
                self.ctx.record_id,
                self.ctx.worker_id,
                type(message).__name__,
            )

    async def _ghost(self) -> IntentAPI:
        if self.ctx.ghost is None:
            self.ctx.ghost = await self.s.ghosts.intent_for(
                self.ctx.remote_number, self.ctx.remote_name
            )
        return self.ctx.ghost

    async def _join(self) -> Event:
        ctx = self.ctx
        assert ctx.room_id is not None
        try:
            ghost = await self._ghost()
            await self.s.rooms.ensure_in_room(ghost, ctx.room_id)
            state = await self.s.rooms.state(ctx.room_id, ghost)
            self.s.rooms.note_member_power(ctx.room_id, state, ghost.mxid)
            if ctx.direction is Direction.INBOUND:
                await self.s.rooms.ensure_slot_open(ctx.room_id, state, [self.s.rooms.bot, ghost])
            presence = GhostPresence(ghost, ctx.room_id, ctx.device_id, self.s.config.matrixrtc)
            ctx.presence = presence
            await self.s.records.note(
                ctx.record_id, ghost_user_id=ghost.mxid, rtc_state_key=presence.state_key
            )
            event_id = await presence.join(self._foci(state))
        except (MatrixError, IntentError, OSError) as e:
            log.warning("call %s: joining %s failed: %s", ctx.record_id, ctx.room_id, e)
            return SessionJoinFailed(str(e))
        return SessionJoined(event_id)

    def _foci(self, state: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The oldest member's first focus (as clients pick it), else our own service."""
        for member in session_members(state, now_ms()):
            if member.foci_preferred:
                return [member.foci_preferred[0]]
        url = self.s.config.matrixrtc.livekit_service_url
        return [livekit_focus(url, self.ctx.room_id or "")]

    async def _notice(self, text: str) -> None:
        room = RoomID(self.ctx.room_id or "")
        # The ghost speaks in its own rooms (portals have no bot); the bot is the fallback.
        sender = await self._ghost()
        try:
            await sender.send_notice(room, text)
        except (MatrixError, IntentError) as e:
            log.warning(
                "call %s: notice %r not sent as %s: %s", self.ctx.record_id, text, sender.mxid, e
            )
            if sender is not self.s.rooms.bot:
                await self.s.rooms.bot.send_notice(room, text)

    async def _finish(self, action: Finish) -> None:
        ctx = self.ctx
        flow = self.flow
        answered_at = None
        if flow.answered_at is not None:
            answered_at = time.time() - (time.monotonic() - flow.answered_at)
        matrix_user = flow.answered_by if ctx.direction is Direction.INBOUND else ctx.matrix_user
        await self.s.records.finish(
            ctx.record_id,
            outcome=action.outcome.value,
            sip_code=action.sip_code,
            reason=action.reason,
            q850_cause=action.q850_cause,
            answered_at=answered_at,
            matrix_user=matrix_user,
        )
        self.s.metrics.calls.labels(ctx.direction.value, action.outcome.value).inc()
        log.info("call %s ended: %s (%s)", ctx.record_id, action.outcome.value, action.reason)
