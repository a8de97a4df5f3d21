"""What a call's actions do: SIP through its worker, Matrix through its side, records."""

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
    SendDecline,
)
from ..matrix.ghosts import GhostDirectory
from ..matrix.livekit_auth import LiveKitTokens
from ..matrix.rooms import RoomAccess
from ..metrics import Metrics
from ..workers.protocol import AnswerCall, HangupCall, MakeCall, Message, RejectCall
from .records import RecordKeeper
from .sides import CallSide

log = logging.getLogger(__name__)


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
    tokens: LiveKitTokens


@dataclass
class CallContext:
    """What one call is, beyond its state: who, where, on which worker, and how in Matrix."""

    services: CallServices
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
    caller_name: str | None = None
    ghost: IntentAPI | None = None
    side: CallSide | None = None
    hangup_reason: str = ""  # a Reason for the SIP side when the bridge ends the call
    membership_device: str | None = None  # the ghost's encryption device, in an encrypted room
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        """The device the ghost's membership names: its encryption device where members must
        send it keys, else one of the call's own."""
        return self.membership_device or "SIP" + self.record_id[:10].upper()

    def send_to_worker(self, message: Message) -> None:
        if not self.services.sip.send(self.worker_id, message):
            log.warning(
                "call %s: worker %d is gone; %s not sent",
                self.record_id,
                self.worker_id,
                type(message).__name__,
            )

    async def note(self, **fields: object) -> None:
        await self.services.records.note(self.record_id, **fields)

    async def ghost_intent(self) -> IntentAPI:
        if self.ghost is None:
            self.ghost = await self.services.ghosts.intent_for(self.remote_number, self.remote_name)
        return self.ghost


class CallEffects:
    def __init__(self, ctx: CallContext, flow: CallFlow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.s = ctx.services
        # When the call ended, not when its last action ran: a slow homeserver delays those.
        self.ended_at: float | None = None

    @property
    def side(self) -> CallSide:
        assert self.ctx.side is not None
        return self.ctx.side

    async def execute(self, action: Action) -> Event | None:
        ctx = self.ctx
        if self.flow.ended and self.ended_at is None:
            self.ended_at = time.time()
        if isinstance(action, RespondSip):
            if action.code == 200:
                await self.side.before_answer()
            if action.code < 300:
                ctx.send_to_worker(AnswerCall(call_ref=ctx.call_ref, code=action.code))
            else:
                ctx.send_to_worker(
                    RejectCall(
                        call_ref=ctx.call_ref, code=action.code, reason=action.reason or None
                    )
                )
        elif isinstance(action, HangUpSip):
            ctx.send_to_worker(HangupCall(call_ref=ctx.call_ref, reason=ctx.hangup_reason or None))
        elif isinstance(action, PlaceSipCall):
            assert ctx.trunk is not None
            ctx.send_to_worker(
                MakeCall(
                    call_ref=ctx.call_ref,
                    trunk=ctx.trunk,
                    number=ctx.remote_number,
                    caller_id=ctx.caller_id,
                    caller_name=ctx.caller_name,
                )
            )
        elif isinstance(action, JoinSession):
            return await self.side.join(await ctx.ghost_intent())
        elif isinstance(action, Ring):
            return await self.side.ring(action.kind, list(action.mentions))
        elif isinstance(action, LeaveSession):
            await self.side.leave()
        elif isinstance(action, SendDecline):
            ghost = await ctx.ghost_intent()
            await self.side.decline(ghost, action.notification_event_id, action.busy)
        elif isinstance(action, PostNotice):
            await self._notice(action.text, action.by_bot)
        elif isinstance(action, Finish):
            await self._finish(action)
        return None

    async def _notice(self, text: str, by_bot: bool) -> None:
        room = RoomID(self.ctx.room_id or "")
        # The ghost speaks in its own rooms (portals have no bot); the bot is the fallback.
        sender = self.s.rooms.bot if by_bot else await self.ctx.ghost_intent()
        try:
            await self.s.rooms.notice(sender, room, text)
        except (MatrixError, IntentError) as e:
            log.warning(
                "call %s: notice %r not sent as %s: %s", self.ctx.record_id, text, sender.mxid, e
            )
            if sender is not self.s.rooms.bot:
                await self.s.rooms.notice(self.s.rooms.bot, room, text)

    async def _finish(self, action: Finish) -> None:
        ctx = self.ctx
        flow = self.flow
        if ctx.room_id is not None:  # a call refused before it had a room has no Matrix side
            try:
                ghost = await ctx.ghost_intent()
                await self.side.end(ghost, action, ctx.direction is Direction.INBOUND)
            except Exception:
                # Whatever went wrong on the Matrix side, the call's record is closed below.
                log.exception("call %s: ending the Matrix side failed", ctx.record_id)
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
            ended_at=self.ended_at,
        )
        self.s.metrics.calls.labels(ctx.direction.value, action.outcome.value).inc()
        log.info("call %s ended: %s (%s)", ctx.record_id, action.outcome.value, action.reason)
