"""The controller's calls: worker reports and Matrix events in, one runner per call.

Inbound: an INVITE becomes a record and a runner; routing finds the linked room and feeds
RouteFound (or a refusal). Outbound: a permitted user's ring in a portal room, or
`!sip call`, becomes a runner that dials. Everything after that is the state machine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from mautrix.api import Method, Path
from mautrix.errors import MatrixError
from mautrix.types import RoomID, UserID

from ..config import Config, PermissionLevel, TrunkConfig
from ..core.callflow import (
    CallFlow,
    CallState,
    Declined,
    Direction,
    HangUp,
    MemberJoined,
    MemberLeft,
    RouteFound,
    RouteRefused,
    SipAnswered,
    SipEnded,
    SipProgress,
    WorkerLost,
)
from ..core.dialplan import DialPlan, NumberError, normalise_incoming
from ..core.outcome import Outcome, outcome_of_sip_end
from ..core.routing import caller_label, ghost_number, trunk_for_source
from ..crypto.call_keys import CALL_KEYS
from ..crypto.keys import Device
from ..crypto.olm_machine import ToDevice
from ..matrix.legacy import (
    CALL_ANSWER,
    CALL_CANDIDATES,
    CALL_HANGUP,
    CALL_INVITE,
    CALL_NEGOTIATE,
    CALL_REJECT,
    CALL_SELECT_ANSWER,
    LEGACY_TYPES,
    LegacyEvent,
    read_legacy,
)
from ..matrix.presence import now_ms
from ..matrix.room_state import is_encrypted, joined_members, session_members
from ..matrix.rtc import (
    CALL_MEMBER,
    CALL_NOTIFY,
    RTC_DECLINE,
    RTC_MEMBER,
    RTC_NOTIFICATION,
    RtcMember,
    membership_state_key,
    read_membership,
    referenced_event,
)
from ..matrix.sessions import SessionTracker
from ..sip.message import uri_user
from ..storage.calls import CallStore
from ..storage.database import StorageError
from ..storage.models import CallRecord, utcnow
from ..storage.numbers import NumberStore
from ..storage.portals import PortalStore
from ..storage.trunks import TrunkStateStore
from ..workers.protocol import (
    CallEnded,
    CallProgress,
    CallRefusedByStack,
    DtmfReceived,
    FromWorker,
    IceCandidate,
    IncomingCall,
    InDialogRefused,
    LiveKitState,
    RejectCall,
    RemoteCandidates,
    RtpDropped,
    SendDtmf,
    SipRequestSeen,
    StartWebRtc,
    TrunkRegistration,
    WebRtcDescription,
    WebRtcState,
)
from .effects import CallContext, CallEffects, CallServices
from .in_call import InCallReports
from .runner import CallRunner
from .sides import LegacySide, RtcSide

log = logging.getLogger(__name__)

CALL_EVENT_TYPES = {
    CALL_MEMBER,
    RTC_MEMBER,
    RTC_DECLINE,
    RTC_NOTIFICATION,
    CALL_NOTIFY,
    *LEGACY_TYPES,
}
DTMF_QUIET_SECONDS = 1.5
DIALLING = (CallState.DIALING, CallState.PROCEEDING)


def dial_plan(trunk: TrunkConfig | None) -> DialPlan:
    if trunk is None:
        return DialPlan()
    plan = trunk.dial_plan
    return DialPlan(
        plan.country_code,
        plan.national_prefix,
        plan.international_prefix,
        tuple(plan.allow),
        tuple(plan.deny),
    )


class CallManager:
    def __init__(
        self,
        config: Config,
        services: CallServices,
        calls: CallStore,
        numbers: NumberStore,
        portals: PortalStore,
        trunk_states: TrunkStateStore,
    ) -> None:
        self.config = config
        self.s = services
        self.call_store = calls
        self.numbers = numbers
        self.portals = portals
        self.trunk_states = trunk_states
        self.sessions = SessionTracker()
        self.in_call = InCallReports(services.records, services.metrics, self.choose_trunk)
        self._runners: dict[tuple[int, str], CallRunner] = {}
        self._contexts: dict[CallRunner, CallContext] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- bookkeeping -----------------------------------------------------------------------

    @property
    def live_calls(self) -> int:
        return len(self._runners)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    def _new_runner(self, ctx: CallContext, flow: CallFlow) -> CallRunner:
        runner = CallRunner(ctx.record_id, flow, CallEffects(ctx, flow), self._runner_done)
        self._runners[(ctx.worker_id, ctx.call_ref)] = runner
        self._contexts[runner] = ctx
        return runner

    def _runner_done(self, runner: CallRunner) -> None:
        ctx = self._contexts.pop(runner, None)
        if ctx is not None:
            self._runners.pop((ctx.worker_id, ctx.call_ref), None)

    def _rtc_side(self, ctx: CallContext, inbound: bool) -> RtcSide:
        return RtcSide(
            ctx,
            self.config,
            self.s.rooms,
            inbound,
            self.s.tokens,
            lambda: self._members(ctx.room_id),
        )

    def _members(self, room_id: str | None) -> list[RtcMember]:
        """The people in a room's call (valid memberships only), oldest first."""
        now = now_ms()
        members = self.sessions.rooms.get(room_id or "", {}).values()
        return sorted(
            (m for m in members if m.valid_at(now) and not self._is_bridge_user(m.user_id)),
            key=lambda m: (m.started_ms, m.key),
        )

    def _in_room(self, room_id: str) -> list[CallRunner]:
        return [r for r, c in self._contexts.items() if c.room_id == room_id]

    # ---- worker reports ------------------------------------------------------------------

    async def on_worker_event(self, worker_id: int, message: FromWorker) -> None:
        if isinstance(message, SipRequestSeen):
            self.s.metrics.sip_requests.labels(message.method).inc()
            log.debug("worker %d: %s from %s", worker_id, message.method, message.source)
        elif isinstance(message, IncomingCall):
            await self._incoming(worker_id, message)
        elif isinstance(message, CallProgress | CallEnded):
            runner = self._runners.get((worker_id, message.call_ref))
            if runner is None:
                log.debug(
                    "worker %d: %s for unknown call %s", worker_id, message.kind, message.call_ref
                )
            elif isinstance(message, CallEnded):
                reason = message.reason
                # Redirects are followed only while the call is still being placed.
                if message.redirect_to is not None and runner.flow.state in DIALLING:
                    refusal = await self.in_call.redirected(self._contexts[runner], message)
                    if refusal is None:
                        return
                    reason = f"{reason}, not followed: {refusal}"
                runner.feed(
                    SipEnded(message.sip_code, reason, message.by_remote, message.q850_cause)
                )
            elif message.state == "answered":
                runner.feed(SipAnswered())
            else:
                runner.feed(SipProgress(message.sip_code))
        elif isinstance(message, CallRefusedByStack):
            await self._refused(worker_id, message)
        elif isinstance(message, WebRtcDescription | WebRtcState | DtmfReceived | LiveKitState):
            runner = self._runners.get((worker_id, message.call_ref))
            if runner is not None:
                await self._media_report(runner, self._contexts[runner], message)
        elif isinstance(message, InDialogRefused | RtpDropped):
            runner = self._runners.get((worker_id, message.call_ref))
            if runner is not None:
                await self.in_call.refused(self._contexts[runner], message)
        elif isinstance(message, TrunkRegistration):
            try:
                await self.trunk_states.set(
                    message.trunk, message.state, message.code, message.reason
                )
            except StorageError as e:
                log.warning("trunk %s state not stored: %s", message.trunk, e)

    async def _media_report(
        self,
        runner: CallRunner,
        ctx: CallContext,
        message: WebRtcDescription | WebRtcState | DtmfReceived | LiveKitState,
    ) -> None:
        side = ctx.side
        if isinstance(message, LiveKitState):
            if message.state != "connected":
                log.warning("call %s: LiveKit %s: %s", ctx.record_id, message.state, message.detail)
                ctx.hangup_reason = "the Matrix side's media failed"
                runner.feed(HangUp(f"its audio could not reach the call ({message.detail})"))
        elif isinstance(message, DtmfReceived):
            self._note_dtmf(ctx, message.digit)
        elif isinstance(message, WebRtcDescription):
            if isinstance(side, LegacySide):
                side.description_ready(message.sdp)
        elif message.state == "failed" and isinstance(side, LegacySide):
            log.warning("call %s: WebRTC failed: %s", ctx.record_id, message.detail or "ICE")
            side.media_failed(message.detail or "ICE failed")
            side.hangup_reason = "ice_failed" if not message.detail else "user_media_failed"
            ctx.hangup_reason = "the Matrix side's media failed"
            runner.feed(HangUp("the call's media (WebRTC) failed"))

    def _note_dtmf(self, ctx: CallContext, digit: str) -> None:
        """Digits from the phone, posted as one notice once the phone pauses."""
        digits: list[str] = ctx.extra.setdefault("dtmf", [])
        digits.append(digit)
        pending = ctx.extra.get("dtmf_task")
        if pending is not None:
            pending.cancel()

        async def flush() -> None:
            await asyncio.sleep(DTMF_QUIET_SECONDS)
            text = "".join(ctx.extra.pop("dtmf", []))
            ctx.extra.pop("dtmf_task", None)
            if text and ctx.room_id:
                ghost = await ctx.ghost_intent()
                await self.s.rooms.notice(ghost, ctx.room_id, f"The phone dialled {text}")

        task = asyncio.create_task(flush())
        ctx.extra["dtmf_task"] = task

    def send_dtmf(self, room_id: str, digits: str) -> bool:
        """`!sip dtmf`: digits to the phone of the call in this room (RFC 4733)."""
        for runner in self._in_room(room_id):
            ctx = self._contexts[runner]
            ctx.send_to_worker(SendDtmf(call_ref=ctx.call_ref, digits=digits))
            return True
        return False

    def _origin(self, call: IncomingCall) -> tuple[str | None, DialPlan, str | None]:
        """Who may be calling: (trunk or peer name, its dial plan, why it is refused)."""
        trunks = self.config.sip.trunks
        if self.config.edge.enabled and not call.via_edge:
            return None, DialPlan(), f"{call.source} called a worker directly, not the SIP edge"
        if call.peer is not None:
            if call.peer not in {p.username for p in self.config.edge.peers}:
                return None, DialPlan(), f"the edge let in {call.peer}, who is not a peer"
            # Phones dial like the first trunk's subscribers (national numbers and all).
            return f"peer:{call.peer}", dial_plan(trunks[0] if trunks else None), None
        trunk = trunk_for_source(call.source, trunks)
        if trunk is None:
            return None, DialPlan(), f"{call.source} is not a trunk's address"
        return trunk.name, dial_plan(trunk), None  # type: ignore[arg-type]

    async def _incoming(self, worker_id: int, call: IncomingCall) -> None:
        origin, plan, refusal = self._origin(call)
        callee = normalise_incoming(uri_user(call.request_uri) or uri_user(call.to_uri), plan)
        caller = ghost_number(normalise_incoming(uri_user(call.from_uri) or "unknown", plan))
        record = CallRecord(
            id=uuid.uuid4().hex,
            direction="inbound",
            state="routing",
            caller=caller,
            callee=callee,
            caller_name=call.from_display,
            worker_id=worker_id,
            sip_call_id=call.sip_call_id,
            source=call.source,
            trunk=origin,
            started_at=utcnow(),
        )
        log.info(
            "incoming call %s on worker %d: %s (%s) → %s from %s via %s",
            record.id,
            worker_id,
            caller,
            call.from_display or "no name",
            callee,
            call.source,
            origin or "nobody we know",
        )
        try:
            await self.s.records.open(record)
        except StorageError as e:
            log.error("no database for call %s (%s); answering 503", call.sip_call_id, e)
            self.s.sip.send(
                worker_id,
                RejectCall(
                    call_ref=call.call_ref, code=503, reason="Service Unavailable", retry_after=30
                ),
            )
            record.state, record.outcome, record.sip_code = "ended", "unavailable", 503
            record.ended_at = utcnow()
            record.reason = f"refused while the database was unreachable ({e})"
            await self.s.records.keep(record)  # written once the database is back
            return
        ctx = CallContext(
            self.s,
            record.id,
            Direction.INBOUND,
            worker_id,
            call.call_ref,
            caller,
            call.from_display,
            origin,
        )
        ctx.side = self._rtc_side(ctx, inbound=True)
        flow = CallFlow.inbound(
            caller_label(caller, call.from_display),
            self.config.matrixrtc.ring_lifetime,
            self.config.matrixrtc.decline_code,
        )
        runner = self._new_runner(ctx, flow)
        if refusal is not None:
            log.warning("call %s: %s; 403", record.id, refusal)
            runner.feed(RouteRefused(403, "Forbidden", refusal))
            return
        self._spawn(self._route(runner, ctx, callee), f"route {record.id}")

    async def _route(self, runner: CallRunner, ctx: CallContext, callee: str) -> None:
        try:
            link = await self.numbers.get(callee)
        except StorageError as e:
            log.error("call %s: %s; 503", ctx.record_id, e)
            runner.feed(RouteRefused(503, "Service Unavailable", str(e)))
            return
        if link is None:
            log.info("call %s: %s is not linked to a room; 404", ctx.record_id, callee)
            runner.feed(RouteRefused(404, "Not Found", f"{callee} is not linked to a room"))
            return
        room_id = link.room_id
        ctx.room_id = room_id
        try:
            state = await self.s.rooms.state(room_id)
            if is_encrypted(state) and link.call_mode == "rtc" and self.s.rooms.devices is None:
                runner.feed(
                    RouteRefused(
                        488,
                        "Not Acceptable Here",
                        f"{room_id} is encrypted",
                        room_id,
                        f"A call from {ctx.remote_number} was refused: this room is encrypted "
                        "and the bridge's encryption is off (bridge.encryption), so the call "
                        "would have been silent.",
                    )
                )
                return
        except (MatrixError, OSError) as e:
            log.error("call %s: cannot read room %s as the bot: %s", ctx.record_id, room_id, e)
            runner.feed(
                RouteRefused(480, "Temporarily Unavailable", f"the bot cannot read {room_id}: {e}")
            )
            return
        await self.s.records.note(ctx.record_id, room_id=room_id)
        humans = sorted(u for u in joined_members(state) if not self._is_bridge_user(u))
        in_call = session_members(state, now_ms())
        self.sessions.seed(
            room_id, [(membership_state_key(m.user_id, m.device_id), m) for m in in_call]
        )
        members = tuple(m.key for m in in_call if m.user_id in humans)
        if link.call_mode == "legacy":
            if len(humans) != 1:
                detail = f"legacy calls need a DM with one person; {room_id} has {len(humans)}"
                runner.feed(RouteRefused(480, "Temporarily Unavailable", detail))
                return
            ctx.side = LegacySide(ctx, self.config, self.s.rooms, uuid.uuid4().hex, humans[0])
            members = ()
        runner.feed(RouteFound(room_id, len(humans) == 1, tuple(humans), members))

    async def _refused(self, worker_id: int, refused: CallRefusedByStack) -> None:
        log.warning(
            "worker %d refused a call from %s itself: %d %s",
            worker_id,
            refused.source,
            refused.sip_code,
            refused.reason,
        )
        outcome = outcome_of_sip_end(refused.sip_code, answered=False)
        now = utcnow()
        record = CallRecord(
            id=uuid.uuid4().hex,
            direction="inbound",
            state="ended",
            caller=uri_user(refused.from_uri) or refused.from_uri,
            callee=uri_user(refused.to_uri) or refused.to_uri,
            worker_id=worker_id,
            sip_call_id=refused.sip_call_id,
            source=refused.source,
            started_at=now,
            ended_at=now,
            outcome=outcome.value,
            sip_code=refused.sip_code,
            reason=f"refused by the SIP stack: {refused.reason}",
        )
        await self.s.records.keep(record)
        self.s.metrics.calls.labels("inbound", outcome.value).inc()

    async def on_worker_lost(self, worker_id: int, reason: str) -> None:
        self.s.metrics.worker_restarts.inc()
        lost = [r for (w, _), r in self._runners.items() if w == worker_id]
        for runner in lost:
            runner.feed(WorkerLost(reason))
        await asyncio.gather(*(r.wait(10) for r in lost))
        # Records of this worker that no runner held (a crash between report and routing).
        try:
            for record in await self.call_store.open_calls(worker_id):
                await self.s.records.finish(
                    record.id,
                    Outcome.FAILED.value,
                    None,
                    f"call worker {worker_id} stopped: {reason}",
                )
        except StorageError as e:
            log.error("cannot close the records of worker %d: %s", worker_id, e)

    # ---- Matrix events -------------------------------------------------------------------

    def _is_bridge_user(self, user_id: str) -> bool:
        return user_id == self.config.bot_mxid or self.s.ghosts.is_ghost(user_id)

    async def on_device_message(
        self, recipient: str, message: ToDevice, sender: Device | None
    ) -> None:
        """A decrypted to-device message for one of the bridge's devices."""
        if message.type != CALL_KEYS:
            log.info("to-device %s from %s to %s ignored", message.type, message.sender, recipient)
            return
        room_id = message.content.get("room_id")
        for ctx in self._contexts.values():
            side = ctx.side
            if (
                isinstance(side, RtcSide)
                and side.media_keys is not None
                and ctx.room_id == room_id
                and ctx.ghost is not None
                and ctx.ghost.mxid == recipient
            ):
                side.media_keys.key_received(message, sender)
                return
        log.info(
            "a media key from %s to %s for no call of ours; ignored", message.sender, recipient
        )

    async def on_room_event(self, event: dict[str, Any]) -> None:
        room_id = event["room_id"]
        sender = event["sender"]
        kind = event["type"]
        if kind in LEGACY_TYPES:
            legacy = read_legacy(event)
            if legacy is None:
                log.warning("ignoring a malformed %s in %s from %s", kind, room_id, sender)
            elif not self._is_bridge_user(sender):
                await self._legacy_event(room_id, legacy)
        elif kind in (CALL_MEMBER, RTC_MEMBER):
            update = read_membership(event)
            if update is None:
                return
            change = self.sessions.update(room_id, update)
            if self._is_bridge_user(sender):
                return
            for runner in self._in_room(room_id):
                side = self._contexts[runner].side
                if isinstance(side, RtcSide):
                    side.update_members()
                if change.left is not None:
                    runner.feed(MemberLeft(change.left.key))
                if change.joined is not None and change.joined.valid_at(now_ms()):
                    runner.feed(MemberJoined(change.joined.key))
        elif kind == RTC_DECLINE and not self._is_bridge_user(sender):
            declined = referenced_event(event.get("content") or {})
            for runner in self._in_room(room_id):
                if declined is not None and runner.flow.ring_event_id == declined:
                    runner.feed(Declined(sender))
        elif kind in (RTC_NOTIFICATION, CALL_NOTIFY) and not self._is_bridge_user(sender):
            await self._ring_from_matrix(room_id, sender, event["event_id"])

    def _legacy_call(
        self, room_id: str, call_id: str
    ) -> tuple[CallRunner, CallContext, LegacySide] | None:
        for runner in self._in_room(room_id):
            ctx = self._contexts[runner]
            if isinstance(ctx.side, LegacySide) and ctx.side.call_id == call_id:
                return runner, ctx, ctx.side
        return None

    async def _legacy_event(self, room_id: str, event: LegacyEvent) -> None:
        if event.type == CALL_INVITE:
            if event.expired:
                log.info("ignoring an expired m.call.invite %s", event.call_id)
            else:
                await self._ring_from_matrix(room_id, event.sender, event.event_id, event)
            return
        found = self._legacy_call(room_id, event.call_id)
        if found is None:
            log.debug("%s for unknown call %s", event.type, event.call_id)
            return
        runner, ctx, side = found
        if side.their_party is not None and event.party_id not in (None, side.their_party):
            return  # another of the user's devices, which lost the race for this call
        member = f"{event.sender}|{event.party_id}"
        if event.type == CALL_ANSWER and side.their_answer is None:
            side.their_party = event.party_id
            side.their_answer = event.sdp
            runner.feed(MemberJoined(member))
        elif event.type == CALL_CANDIDATES:
            candidates = [
                IceCandidate(
                    candidate=c.candidate, sdp_mid=c.sdp_mid, sdp_mline_index=c.sdp_mline_index
                )
                for c in event.candidates
            ]
            ctx.send_to_worker(RemoteCandidates(call_ref=ctx.call_ref, candidates=candidates))
        elif event.type == CALL_SELECT_ANSWER and event.selected_party_id != side.party_id:
            side.matrix_hung_up()
            ctx.hangup_reason = "answered elsewhere"
            runner.feed(HangUp("answered on another device"))
        elif event.type == CALL_REJECT:
            side.matrix_hung_up()
            runner.feed(Declined(event.sender))
        elif event.type == CALL_HANGUP:
            side.matrix_hung_up()
            if side.their_answer is None and ctx.direction is Direction.INBOUND:
                runner.feed(Declined(event.sender, busy=event.reason == "user_busy"))
            else:
                runner.feed(MemberLeft(member))
        elif event.type == CALL_NEGOTIATE and event.sdp_type == "offer" and event.sdp:
            self._spawn(side.answer_renegotiation(event.sdp), f"negotiate {ctx.record_id}")

    async def _ring_from_matrix(
        self, room_id: str, sender: str, event_id: str, legacy: LegacyEvent | None = None
    ) -> None:
        portal = await self.portals.by_room(room_id)
        if portal is None or self._in_room(room_id):
            return
        if self.config.permission_of(sender) is PermissionLevel.NONE:
            log.info("%s rang %s without permission to call out", sender, portal.number)
            await self._portal_notice(
                room_id, portal.number, "You are not permitted to call out through this bridge."
            )
            return
        if legacy is not None:
            caller_member: str | None = f"{sender}|{legacy.party_id}"
        else:
            member = self.sessions.member_of(room_id, sender)
            caller_member = member.key if member else None
        reply = await self.dial(
            sender,
            portal.number,
            room_id=room_id,
            caller_member=caller_member,
            caller_ring_event_id=event_id,
            legacy=legacy,
        )
        if reply is not None:
            await self._portal_notice(room_id, portal.number, reply)

    async def _portal_notice(self, room_id: str, number: str, text: str) -> None:
        ghost = await self.s.ghosts.intent_for(number)
        await self.s.rooms.notice(ghost, room_id, text)

    # ---- outbound ------------------------------------------------------------------------

    def choose_trunk(self, dialled: str, user_id: str) -> tuple[TrunkConfig, str] | str:
        """The first trunk whose dial plan takes this number: (trunk, E.164), or why none."""
        if not self.config.sip.trunks:
            return "No SIP trunk is configured, so the bridge cannot call out."
        reasons = []
        for trunk in self.config.sip.trunks:
            plan = dial_plan(trunk)
            try:
                number = plan.normalise(dialled)
            except NumberError as e:
                reasons.append(str(e))
                continue
            refusal = plan.refusal(number)
            if refusal is None:
                return trunk, number
            reasons.append(refusal)
        return f"Cannot call {dialled}: {reasons[0]}."

    async def dial(
        self,
        user_id: str,
        dialled: str,
        room_id: str | None = None,
        caller_member: str | None = None,
        caller_ring_event_id: str | None = None,
        legacy: LegacyEvent | None = None,
    ) -> str | None:
        """Place a call for a permitted user. Returns a message for the user if it failed."""
        choice = self.choose_trunk(dialled, user_id)
        if isinstance(choice, str):
            log.info("refused a call by %s to %s: %s", user_id, dialled, choice)
            return choice
        trunk, number = choice
        if self.s.sip.pool is None or (worker := self.s.sip.pool.pick_worker()) is None:
            return "All call slots are busy; try again in a moment."
        if room_id is None:
            room_id = await self.portal_for(user_id, number)
        ghost = await self.s.ghosts.intent_for(number)
        if (
            legacy is None
            and self.s.rooms.devices is None
            and is_encrypted(await self.s.rooms.state(room_id, ghost))
        ):
            return (
                "This room is encrypted and the bridge's encryption is off (bridge.encryption), "
                "so you would hear nothing. Use an unencrypted room."
            )
        record = CallRecord(
            id=uuid.uuid4().hex,
            direction="outbound",
            state="dialing",
            caller=user_id,
            callee=number,
            room_id=room_id,
            matrix_user=user_id,
            trunk=trunk.name,
            worker_id=worker.id,
            started_at=utcnow(),
        )
        try:
            await self.s.records.open(record)
        except StorageError as e:
            return f"The bridge cannot keep call records right now ({e}); not calling."
        caller_id = trunk.caller_id_by_user.get(user_id, trunk.caller_id)
        ctx = CallContext(
            self.s,
            record.id,
            Direction.OUTBOUND,
            worker.id,
            f"out-{record.id}",
            number,
            None,
            trunk.name,
            room_id=room_id,
            matrix_user=user_id,
            caller_id=caller_id,
        )
        if legacy is not None:
            ctx.side = LegacySide(
                ctx, self.config, self.s.rooms, legacy.call_id, user_id, legacy.party_id
            )
        else:
            ctx.side = self._rtc_side(ctx, inbound=False)
        flow, actions = CallFlow.outbound(
            number,
            room_id,
            user_id,
            self.config.matrixrtc.ring_lifetime,
            caller_member,
            caller_ring_event_id,
        )
        log.info(
            "call %s: %s dials %s over %s (worker %d)",
            record.id,
            user_id,
            number,
            trunk.name,
            worker.id,
        )
        self._new_runner(ctx, flow).start(actions)
        if legacy is not None:
            # Answering the offer now has the SDP ready by the time the phone answers.
            ctx.send_to_worker(StartWebRtc(call_ref=ctx.call_ref, offer=legacy.sdp))
        return None

    async def portal_for(self, user_id: str, number: str) -> str:
        room_id = await self.portals.room_for(user_id, number)
        if room_id is not None:
            return room_id
        ghost = await self.s.ghosts.intent_for(number)
        room_id = await self.s.rooms.create_portal(ghost, user_id)
        await self.portals.save(user_id, number, room_id)
        log.info("created portal %s for %s ⇄ %s", room_id, user_id, number)
        return room_id

    # ---- lifecycle -------------------------------------------------------------------------

    async def hang_up_all(self, reason: str, timeout: float = 10.0) -> None:
        runners = list(self._contexts)
        for runner in runners:
            runner.feed(HangUp(reason))
        if runners:
            await asyncio.gather(*(r.wait(timeout) for r in runners))

    async def reconcile_after_restart(self) -> int:
        """Calls the last run left open: take their ghosts out of the call, close the records."""
        try:
            stale = await self.call_store.open_calls()
        except StorageError as e:
            log.error("cannot reconcile calls: %s", e)
            return 0
        for record in stale:
            if record.ghost_user_id and record.rtc_state_key and record.room_id:
                await self._clear_membership(record)
            await self.s.records.finish(
                record.id, Outcome.FAILED.value, None, "the bridge restarted while the call was up"
            )
        return len(stale)

    async def _clear_membership(self, record: CallRecord) -> None:
        assert record.ghost_user_id and record.rtc_state_key and record.room_id
        ghost = self.s.rooms.bot.user(UserID(record.ghost_user_id))
        path = Path.v3.rooms[RoomID(record.room_id)].state[CALL_MEMBER][record.rtc_state_key]
        try:
            current = await ghost.api.request(Method.GET, path)
        except MatrixError:
            current = {}
        try:
            if current:
                await ghost.api.request(Method.PUT, path, {})
                log.info(
                    "call %s: took %s out of the call in %s",
                    record.id,
                    record.ghost_user_id,
                    record.room_id,
                )
            remote = record.caller if record.direction == "inbound" else record.callee
            label = caller_label(remote, record.caller_name)
            await self.s.rooms.notice(
                ghost, record.room_id, f"Call with {label} was cut off (the bridge restarted)"
            )
        except MatrixError as e:
            log.warning("call %s: could not clean up in %s: %s", record.id, record.room_id, e)
