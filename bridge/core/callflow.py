"""The life of one call, as a pure state machine: events in, actions out.

A call's whole life is readable here. Feed it what happened on either side ("SIP CANCEL
arrived", "a Matrix member joined the session"), get back what to do ("answer 200",
"ghost leaves the session", "post a notice"). No I/O: the call manager executes the actions
and feeds their results back as events. Transitions are the TRANSITIONS table below; an
event a state does not list is ignored (and reported by `handle`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from .outcome import Outcome, outcome_of_sip_end


class CallState(StrEnum):
    ROUTING = "routing"  # inbound INVITE received; finding its room
    JOINING = "joining"  # inbound: the caller's ghost is joining the room's session
    RINGING = "ringing"  # inbound: the room rings, 180 sent
    ANSWERING = "answering"  # inbound: a member joined, 200 sent, waiting for the ACK
    DIALING = "dialing"  # outbound: INVITE sent
    PROCEEDING = "proceeding"  # outbound: 180/183 received
    CONNECTING = "connecting"  # outbound: 200 received, the ghost is joining the session
    ACTIVE = "active"
    ENDED = "ended"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


# ---- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteFound:
    room_id: str
    one_to_one: bool
    mentions: tuple[str, ...]
    members_in_session: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteRefused:
    sip_code: int
    reason: str  # the SIP reason phrase
    detail: str = ""  # why, for the record
    room_id: str | None = None  # the room, when the people in it should hear why
    notice: str | None = None


@dataclass(frozen=True)
class SessionJoined:
    membership_event_id: str


@dataclass(frozen=True)
class SessionJoinFailed:
    reason: str


@dataclass(frozen=True)
class RingSent:
    notification_event_id: str


@dataclass(frozen=True)
class MemberJoined:
    member: str  # "user_id|device_id"

    @property
    def user_id(self) -> str:
        return self.member.split("|", 1)[0]


@dataclass(frozen=True)
class MemberLeft:
    member: str


@dataclass(frozen=True)
class Declined:
    user_id: str
    busy: bool = False  # "busy" rather than "no" (legacy calls' user_busy)


@dataclass(frozen=True)
class SipProgress:
    code: int  # 180 or 183


@dataclass(frozen=True)
class SipAnswered:
    pass


@dataclass(frozen=True)
class SipEnded:
    code: int
    reason: str
    by_remote: bool
    q850_cause: int | None = None


@dataclass(frozen=True)
class TimerFired:
    name: str


@dataclass(frozen=True)
class WorkerLost:
    reason: str


@dataclass(frozen=True)
class HangUp:
    """The bridge ends the call itself (shutdown, drain timeout, an admin)."""

    reason: str


Event = (
    RouteFound
    | RouteRefused
    | SessionJoined
    | SessionJoinFailed
    | RingSent
    | MemberJoined
    | MemberLeft
    | Declined
    | SipProgress
    | SipAnswered
    | SipEnded
    | TimerFired
    | WorkerLost
    | HangUp
)

# ---- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RespondSip:
    """A response to the incoming INVITE: 180, 200, or a final refusal."""

    code: int
    reason: str = ""


@dataclass(frozen=True)
class HangUpSip:
    """End the SIP leg as fits its state: BYE, or CANCEL for an outgoing INVITE."""

    reason: str = ""


@dataclass(frozen=True)
class PlaceSipCall:
    pass


@dataclass(frozen=True)
class JoinSession:
    pass


@dataclass(frozen=True)
class Ring:
    kind: str  # "ring" or "notification"
    mentions: tuple[str, ...]


@dataclass(frozen=True)
class LeaveSession:
    pass


@dataclass(frozen=True)
class SendDecline:
    notification_event_id: str
    busy: bool  # the far end was busy, rather than refusing


@dataclass(frozen=True)
class PostNotice:
    text: str
    by_bot: bool = False  # the call never reached the room: the bridge itself says why


@dataclass(frozen=True)
class StartTimer:
    name: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class Finish:
    outcome: Outcome
    sip_code: int | None
    reason: str
    q850_cause: int | None = None


Action = (
    RespondSip
    | HangUpSip
    | PlaceSipCall
    | JoinSession
    | Ring
    | LeaveSession
    | SendDecline
    | PostNotice
    | StartTimer
    | CancelTimer
    | Finish
)

RING_TIMER = "ring"
BUSY_CODES = (486, 600, 603)


def format_duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class CallFlow:
    direction: Direction
    remote: str  # the phone side, as people should read it: "Erika (+4940…)"
    ring_seconds: float
    decline_code: int = 603
    state: CallState = CallState.ROUTING
    room_id: str | None = None
    one_to_one: bool = False
    mentions: tuple[str, ...] = ()
    members: set[str] = field(default_factory=set)
    caller_member: str | None = None  # outbound: the Matrix caller's session membership
    caller_ring_event_id: str | None = None  # outbound: the Matrix caller's notification
    ring_event_id: str | None = None  # our own notification
    session_requested: bool = False
    answered_at: float | None = None
    answered_by: str | None = None

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def inbound(cls, remote: str, ring_seconds: float, decline_code: int = 603) -> CallFlow:
        return cls(Direction.INBOUND, remote, ring_seconds, decline_code)

    @classmethod
    def outbound(
        cls,
        remote: str,
        room_id: str,
        caller: str,
        ring_seconds: float,
        caller_member: str | None = None,
        caller_ring_event_id: str | None = None,
    ) -> tuple[CallFlow, list[Action]]:
        flow = cls(
            Direction.OUTBOUND,
            remote,
            ring_seconds,
            state=CallState.DIALING,
            room_id=room_id,
            one_to_one=True,
            mentions=(caller,),
            caller_member=caller_member,
            caller_ring_event_id=caller_ring_event_id,
        )
        if caller_member:
            flow.members.add(caller_member)
        return flow, [PlaceSipCall()]

    # ---- the one entry point -----------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action] | None:
        """The actions for this event, or None if this state does not take it."""
        if self.state is CallState.ENDED:
            return None
        transition = TRANSITIONS.get((self.state, type(event))) or ANY_STATE.get(type(event))
        if transition is None:
            return None
        return transition(self, event, now)

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    # ---- helpers -----------------------------------------------------------------------

    def _duration(self, now: float) -> str:
        return format_duration(now - self.answered_at) if self.answered_at is not None else "0:00"

    def _end(
        self,
        outcome: Outcome,
        code: int | None,
        reason: str,
        notice: str | None,
        q850: int | None = None,
        sip: Action | None = None,
    ) -> list[Action]:
        self.state = CallState.ENDED
        actions: list[Action] = [CancelTimer(RING_TIMER)]
        if sip is not None:
            actions.append(sip)
        if self.session_requested:
            actions.append(LeaveSession())
        if notice is not None and self.room_id is not None:
            actions.append(PostNotice(notice))
        actions.append(Finish(outcome, code, reason, q850))
        return actions

    def _missed(self) -> str:
        return f"Missed call from {self.remote}"

    def _talked(self, now: float) -> str:
        return f"Call with {self.remote} — {self._duration(now)}"

    # ---- inbound -------------------------------------------------------------------------

    def _routing_found(self, e: RouteFound, now: float) -> list[Action]:
        self.room_id = e.room_id
        self.one_to_one = e.one_to_one
        self.mentions = e.mentions
        self.members.update(e.members_in_session)
        self.state = CallState.JOINING
        self.session_requested = True
        return [JoinSession()]

    def _routing_refused(self, e: RouteRefused, now: float) -> list[Action]:
        outcome = Outcome.REJECTED if e.sip_code != 503 else Outcome.UNAVAILABLE
        actions = self._end(
            outcome, e.sip_code, e.detail or e.reason, None, sip=RespondSip(e.sip_code, e.reason)
        )
        if e.notice and e.room_id:
            self.room_id = e.room_id
            actions.insert(-1, PostNotice(e.notice, by_bot=True))
        return actions

    def _joining_joined(self, e: SessionJoined, now: float) -> list[Action]:
        if self.members:
            # People are in the session already: the phone joins their call at once.
            self.state = CallState.ANSWERING
            self.answered_by = sorted(self.members)[0].split("|", 1)[0]
            return [RespondSip(200, "OK")]
        self.state = CallState.RINGING
        kind = "ring" if self.one_to_one else "notification"
        return [
            Ring(kind, self.mentions),
            RespondSip(180, "Ringing"),
            StartTimer(RING_TIMER, self.ring_seconds),
        ]

    def _joining_failed(self, e: SessionJoinFailed, now: float) -> list[Action]:
        return self._end(
            Outcome.FAILED,
            480,
            f"could not join the room's call: {e.reason}",
            f"Call from {self.remote} could not be connected: {e.reason}",
            sip=RespondSip(480, "Temporarily Unavailable"),
        )

    def _note_ring(self, e: RingSent, now: float) -> list[Action]:
        self.ring_event_id = e.notification_event_id
        return []

    def _ringing_member_joined(self, e: MemberJoined, now: float) -> list[Action]:
        self.members.add(e.member)
        self.answered_by = e.user_id
        self.state = CallState.ANSWERING
        return [CancelTimer(RING_TIMER), RespondSip(200, "OK")]

    def _ringing_declined(self, e: Declined, now: float) -> list[Action]:
        code = 486 if e.busy else self.decline_code
        reason = "Decline" if code == 603 else "Busy Here"
        return self._end(
            Outcome.DECLINED,
            code,
            f"declined by {e.user_id}",
            f"Declined call from {self.remote}",
            sip=RespondSip(code, reason),
        )

    def _ringing_timeout(self, e: TimerFired, now: float) -> list[Action]:
        if e.name != RING_TIMER:
            return []
        return self._end(
            Outcome.NO_ANSWER,
            480,
            "nobody answered in time",
            self._missed(),
            sip=RespondSip(480, "Temporarily Unavailable"),
        )

    def _unanswered_sip_ended(self, e: SipEnded, now: float) -> list[Action]:
        outcome = outcome_of_sip_end(e.code, answered=False)
        return self._end(outcome, e.code, f"{e.code} {e.reason}", self._missed(), e.q850_cause)

    def _answering_confirmed(self, e: SipAnswered, now: float) -> list[Action]:
        self.state = CallState.ACTIVE
        self.answered_at = now
        return []

    # ---- either direction ----------------------------------------------------------------

    def _member_joined(self, e: MemberJoined, now: float) -> list[Action]:
        self.members.add(e.member)
        return []

    def _member_gone(self, e: MemberLeft, now: float) -> list[Action]:
        self.members.discard(e.member)
        return []

    def _member_left(self, e: MemberLeft, now: float) -> list[Action]:
        self.members.discard(e.member)
        if self.members:
            return []
        return self._end(
            Outcome.COMPLETED,
            None,
            "the last Matrix member left",
            self._talked(now),
            sip=HangUpSip("the last Matrix member left"),
        )

    def _active_sip_ended(self, e: SipEnded, now: float) -> list[Action]:
        by = "the phone" if e.by_remote else "the SIP stack"
        return self._end(
            Outcome.COMPLETED,
            e.code,
            f"{e.code} {e.reason}, ended by {by}",
            self._talked(now),
            e.q850_cause,
        )

    def _active_timeout(self, e: TimerFired, now: float) -> list[Action]:
        # Outbound: the phone answered but nobody in Matrix joined while the ghost rang.
        if e.name != RING_TIMER or self.members:
            return []
        return self._end(
            Outcome.NO_ANSWER,
            None,
            "nobody in Matrix joined the answered call",
            f"Call with {self.remote} ended: nobody joined",
            sip=HangUpSip("nobody joined"),
        )

    def _worker_lost(self, e: WorkerLost, now: float) -> list[Action]:
        return self._end(
            Outcome.FAILED,
            None,
            f"call worker lost: {e.reason}",
            f"Call with {self.remote} was cut off (the bridge lost it)",
        )

    def _hang_up(self, e: HangUp, now: float) -> list[Action]:
        unanswered_inbound = self.direction is Direction.INBOUND and self.state in (
            CallState.ROUTING,
            CallState.JOINING,
            CallState.RINGING,
        )
        sip: Action = (
            RespondSip(503, "Service Unavailable") if unanswered_inbound else HangUpSip(e.reason)
        )
        notice = (
            self._missed() if unanswered_inbound else f"Call with {self.remote} ended: {e.reason}"
        )
        return self._end(Outcome.FAILED, None, e.reason, notice, sip=sip)

    # ---- outbound ------------------------------------------------------------------------

    def _dialing_progress(self, e: SipProgress, now: float) -> list[Action]:
        self.state = CallState.PROCEEDING
        return []

    def _dialing_answered(self, e: SipAnswered, now: float) -> list[Action]:
        self.state = CallState.CONNECTING
        self.answered_at = now
        self.session_requested = True
        return [JoinSession()]

    def _dialing_ended(self, e: SipEnded, now: float) -> list[Action]:
        outcome = outcome_of_sip_end(e.code, answered=False)
        said = f"{e.code} {e.reason}".strip()
        if e.code in BUSY_CODES:
            notice = (
                f"{self.remote} is busy ({said})"
                if e.code != 603
                else f"{self.remote} declined the call ({said})"
            )
            actions = self._end(outcome, e.code, said, notice, e.q850_cause)
            if self.caller_ring_event_id:
                busy = e.code != 603
                actions.insert(-1, SendDecline(self.caller_ring_event_id, busy))
            return actions
        return self._end(
            outcome, e.code, said, f"Call to {self.remote} failed: {said}", e.q850_cause
        )

    def _dialing_member_left(self, e: MemberLeft, now: float) -> list[Action]:
        self.members.discard(e.member)
        if e.member != self.caller_member:
            return []
        return self._end(
            Outcome.CANCELLED,
            487,
            "the Matrix caller hung up before an answer",
            f"Cancelled call to {self.remote}",
            sip=HangUpSip("caller left"),
        )

    def _connecting_joined(self, e: SessionJoined, now: float) -> list[Action]:
        self.state = CallState.ACTIVE
        if self.members:
            return []
        # Dialled by command: ring the user, who is not in the call yet.
        return [Ring("ring", self.mentions), StartTimer(RING_TIMER, self.ring_seconds)]

    def _connecting_failed(self, e: SessionJoinFailed, now: float) -> list[Action]:
        return self._end(
            Outcome.FAILED,
            None,
            f"could not join the room's call: {e.reason}",
            f"Call with {self.remote} failed: the bridge could not join the call",
            sip=HangUpSip("join failed"),
        )


S = CallState
# Each transition takes (flow, the event of its key's type, now).
Transition = Callable[..., list[Action]]

TRANSITIONS: dict[tuple[CallState, type], Transition] = {
    # inbound
    (S.ROUTING, RouteFound): CallFlow._routing_found,
    (S.ROUTING, RouteRefused): CallFlow._routing_refused,
    (S.ROUTING, SipEnded): CallFlow._unanswered_sip_ended,
    (S.JOINING, SessionJoined): CallFlow._joining_joined,
    (S.JOINING, SessionJoinFailed): CallFlow._joining_failed,
    (S.JOINING, MemberJoined): CallFlow._member_joined,
    (S.JOINING, MemberLeft): CallFlow._member_gone,
    (S.JOINING, SipEnded): CallFlow._unanswered_sip_ended,
    (S.RINGING, MemberJoined): CallFlow._ringing_member_joined,
    (S.RINGING, Declined): CallFlow._ringing_declined,
    (S.RINGING, TimerFired): CallFlow._ringing_timeout,
    (S.RINGING, SipEnded): CallFlow._unanswered_sip_ended,
    (S.RINGING, MemberLeft): CallFlow._member_gone,
    (S.ANSWERING, SipAnswered): CallFlow._answering_confirmed,
    (S.ANSWERING, MemberJoined): CallFlow._member_joined,
    (S.ANSWERING, MemberLeft): CallFlow._member_left,
    (S.ANSWERING, SipEnded): CallFlow._unanswered_sip_ended,
    # outbound
    (S.DIALING, SipProgress): CallFlow._dialing_progress,
    (S.DIALING, SipAnswered): CallFlow._dialing_answered,
    (S.DIALING, SipEnded): CallFlow._dialing_ended,
    (S.DIALING, MemberJoined): CallFlow._member_joined,
    (S.DIALING, MemberLeft): CallFlow._dialing_member_left,
    (S.PROCEEDING, SipProgress): lambda flow, e, now: [],
    (S.PROCEEDING, SipAnswered): CallFlow._dialing_answered,
    (S.PROCEEDING, SipEnded): CallFlow._dialing_ended,
    (S.PROCEEDING, MemberJoined): CallFlow._member_joined,
    (S.PROCEEDING, MemberLeft): CallFlow._dialing_member_left,
    (S.CONNECTING, SessionJoined): CallFlow._connecting_joined,
    (S.CONNECTING, SessionJoinFailed): CallFlow._connecting_failed,
    (S.CONNECTING, MemberJoined): CallFlow._member_joined,
    (S.CONNECTING, MemberLeft): CallFlow._member_gone,
    (S.CONNECTING, SipEnded): CallFlow._active_sip_ended,
    # both
    (S.ACTIVE, SipEnded): CallFlow._active_sip_ended,
    (S.ACTIVE, MemberJoined): CallFlow._member_joined,
    (S.ACTIVE, MemberLeft): CallFlow._member_left,
    (S.ACTIVE, TimerFired): CallFlow._active_timeout,
}

ANY_STATE: dict[type, Transition] = {
    RingSent: CallFlow._note_ring,
    WorkerLost: CallFlow._worker_lost,
    HangUp: CallFlow._hang_up,
}
