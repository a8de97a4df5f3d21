"""Every transition of the call state machine, and the races between the two sides."""

from __future__ import annotations

import pytest

from bridge.core.callflow import (
    RING_TIMER,
    TRANSITIONS,
    Action,
    CallFlow,
    CallState,
    CancelTimer,
    Declined,
    Event,
    Finish,
    HangUp,
    HangUpSip,
    JoinSession,
    LeaveSession,
    MemberJoined,
    MemberLeft,
    PlaceSipCall,
    PostNotice,
    RespondSip,
    Ring,
    RingSent,
    RouteFound,
    RouteRefused,
    SendDecline,
    SessionJoined,
    SessionJoinFailed,
    SipAnswered,
    SipEnded,
    SipProgress,
    StartTimer,
    TimerFired,
    WorkerLost,
    format_duration,
)
from bridge.core.outcome import Outcome

EXERCISED: set[tuple[CallState, type]] = set()


@pytest.fixture(autouse=True)
def record_transitions(monkeypatch: pytest.MonkeyPatch) -> None:
    original = CallFlow.handle

    def recording(self: CallFlow, event: Event, now: float) -> list[Action] | None:
        if (self.state, type(event)) in TRANSITIONS:
            EXERCISED.add((self.state, type(event)))
        return original(self, event, now)

    monkeypatch.setattr(CallFlow, "handle", recording)


ALICE = "@alice:hs|DEV1"
BOB = "@bob:hs|DEV2"
ROOM = "!room:hs"
CALLER = "Erika (+4940111)"
CANCEL = SipEnded(487, "Request Terminated", by_remote=True)
BYE = SipEnded(200, "Normal call clearing", by_remote=True, q850_cause=16)


def step(flow: CallFlow, event: Event, now: float) -> list[Action]:
    actions = flow.handle(event, now)
    assert actions is not None, f"{flow.state} does not take {event}"
    return actions


def finish(actions: list[Action]) -> Finish:
    found = [a for a in actions if isinstance(a, Finish)]
    assert len(found) == 1, actions
    return found[0]


def notices(actions: list[Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, PostNotice)]


def ringing(one_to_one: bool = True) -> CallFlow:
    flow = CallFlow.inbound(CALLER, ring_seconds=60)
    assert step(flow, RouteFound(ROOM, one_to_one, ("@alice:hs",)), 0) == [JoinSession()]
    assert flow.state is CallState.JOINING
    actions = step(flow, SessionJoined("$member"), 1)
    assert actions == [
        Ring("ring" if one_to_one else "notification", ("@alice:hs",)),
        RespondSip(180, "Ringing"),
        StartTimer(RING_TIMER, 60),
    ]
    assert step(flow, RingSent("$ring"), 1) == []
    assert flow.state is CallState.RINGING and flow.ring_event_id == "$ring"
    return flow


def active_inbound() -> CallFlow:
    flow = ringing()
    assert step(flow, MemberJoined(ALICE), 5) == [CancelTimer(RING_TIMER), RespondSip(200, "OK")]
    assert flow.state is CallState.ANSWERING and flow.answered_by == "@alice:hs"
    assert step(flow, SipAnswered(), 6) == []
    assert flow.state is CallState.ACTIVE
    return flow


# ---- inbound -------------------------------------------------------------------------------


def test_inbound_answered_then_phone_hangs_up() -> None:
    flow = active_inbound()
    actions = step(flow, BYE, 6 + 192)
    assert flow.state is CallState.ENDED
    assert LeaveSession() in actions
    assert notices(actions) == [f"Call with {CALLER} — 3:12"]
    end = finish(actions)
    assert (end.outcome, end.sip_code, end.q850_cause) == (Outcome.COMPLETED, 200, 16)
    assert not any(isinstance(a, (HangUpSip, RespondSip)) for a in actions)


def test_group_rooms_get_a_notification_not_a_ring() -> None:
    ringing(one_to_one=False)


def test_a_session_in_progress_is_joined_and_answered_at_once() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    step(flow, RouteFound(ROOM, False, ("@alice:hs",), (ALICE,)), 0)
    assert step(flow, SessionJoined("$m"), 1) == [RespondSip(200, "OK")]
    assert flow.state is CallState.ANSWERING and flow.answered_by == "@alice:hs"


def test_member_joining_while_the_ghost_joins_answers_without_ringing() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    step(flow, RouteFound(ROOM, True, ("@alice:hs",)), 0)
    step(flow, MemberJoined(ALICE), 0.5)
    assert step(flow, SessionJoined("$m"), 1) == [RespondSip(200, "OK")]


@pytest.mark.parametrize(("decline_code", "reason"), [(603, "Decline"), (486, "Busy Here")])
def test_decline(decline_code: int, reason: str) -> None:
    flow = ringing()
    flow.decline_code = decline_code
    actions = step(flow, Declined("@alice:hs"), 3)
    assert actions[:2] == [CancelTimer(RING_TIMER), RespondSip(decline_code, reason)]
    assert LeaveSession() in actions
    assert notices(actions) == [f"Declined call from {CALLER}"]
    assert finish(actions).outcome is Outcome.DECLINED


def test_a_busy_decline_is_486_whatever_the_configured_code() -> None:
    flow = ringing()
    actions = step(flow, Declined("@alice:hs", busy=True), 3)
    assert RespondSip(486, "Busy Here") in actions


def test_ring_lifetime_passing_gives_480_and_a_missed_call() -> None:
    flow = ringing()
    assert step(flow, TimerFired("other"), 30) == []
    actions = step(flow, TimerFired(RING_TIMER), 61)
    assert RespondSip(480, "Temporarily Unavailable") in actions
    assert LeaveSession() in actions
    assert notices(actions) == [f"Missed call from {CALLER}"]
    assert finish(actions).outcome is Outcome.NO_ANSWER


def test_cancel_while_ringing() -> None:
    flow = ringing()
    actions = step(flow, CANCEL, 4)
    assert actions == [
        CancelTimer(RING_TIMER),
        LeaveSession(),
        PostNotice(f"Missed call from {CALLER}"),
        Finish(Outcome.CANCELLED, 487, "487 Request Terminated"),
    ]


def test_cancel_crossing_the_matrix_answer() -> None:
    flow = ringing()
    step(flow, MemberJoined(ALICE), 5)  # 200 sent …
    actions = step(flow, CANCEL, 5.01)  # … but the CANCEL won
    assert flow.state is CallState.ENDED
    assert LeaveSession() in actions and notices(actions) == [f"Missed call from {CALLER}"]
    assert finish(actions).outcome is Outcome.CANCELLED
    # The ACK that can no longer come is ignored.
    assert flow.handle(SipAnswered(), 6) is None


def test_bye_during_ringing_ends_the_call() -> None:
    flow = ringing()
    actions = step(flow, SipEnded(200, "Normal call clearing", by_remote=True), 2)
    assert flow.ended and LeaveSession() in actions
    assert notices(actions) == [f"Missed call from {CALLER}"]


def test_two_members_answering_at_once_first_wins() -> None:
    flow = ringing()
    first = step(flow, MemberJoined(ALICE), 5)
    second = step(flow, MemberJoined(BOB), 5.001)
    assert RespondSip(200, "OK") in first
    assert second == []
    assert flow.answered_by == "@alice:hs"
    step(flow, SipAnswered(), 5.1)
    # Alice leaves; Bob is still in the call, so the phone stays.
    assert step(flow, MemberLeft(ALICE), 50) == []
    actions = step(flow, MemberLeft(BOB), 65.1)
    assert HangUpSip("the last Matrix member left") in actions
    assert notices(actions) == [f"Call with {CALLER} — 1:00"]
    assert finish(actions).outcome is Outcome.COMPLETED


def test_last_member_leaving_before_the_ack_hangs_up() -> None:
    flow = ringing()
    step(flow, MemberJoined(ALICE), 5)
    actions = step(flow, MemberLeft(ALICE), 5.5)
    assert HangUpSip("the last Matrix member left") in actions


def test_members_leaving_while_ringing_change_nothing() -> None:
    flow = ringing()
    assert step(flow, MemberLeft(BOB), 2) == []
    assert flow.state is CallState.RINGING


def test_unknown_number_is_refused_without_touching_matrix() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    actions = step(flow, RouteRefused(404, "Not Found"), 0)
    assert actions == [
        CancelTimer(RING_TIMER),
        RespondSip(404, "Not Found"),
        Finish(Outcome.REJECTED, 404, "Not Found"),
    ]


def test_a_refusal_can_tell_the_room_why() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    refusal = RouteRefused(488, "Not Acceptable Here", "encrypted", ROOM, "No calls here")
    actions = step(flow, refusal, 0)
    assert RespondSip(488, "Not Acceptable Here") in actions
    assert PostNotice("No calls here", by_bot=True) in actions
    assert LeaveSession() not in actions


def test_refusal_for_capacity_is_unavailable() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    assert finish(step(flow, RouteRefused(503, "busy"), 0)).outcome is Outcome.UNAVAILABLE


def test_cancel_while_routing_has_no_matrix_side() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    actions = step(flow, CANCEL, 0.1)
    assert actions == [
        CancelTimer(RING_TIMER),
        Finish(Outcome.CANCELLED, 487, "487 Request Terminated"),
    ]


def test_cancel_while_joining_leaves_the_session() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    step(flow, RouteFound(ROOM, True, ("@alice:hs",)), 0)
    actions = step(flow, CANCEL, 0.2)
    assert LeaveSession() in actions


def test_join_failure_gives_480() -> None:
    flow = CallFlow.inbound(CALLER, 60)
    step(flow, RouteFound(ROOM, True, ("@alice:hs",)), 0)
    actions = step(flow, SessionJoinFailed("M_FORBIDDEN"), 1)
    assert RespondSip(480, "Temporarily Unavailable") in actions
    assert finish(actions).outcome is Outcome.FAILED


@pytest.mark.parametrize("make", [ringing, active_inbound])
def test_worker_lost(make: object) -> None:
    flow = make()  # type: ignore[operator]
    actions = step(flow, WorkerLost("killed by signal 9"), 10)
    assert LeaveSession() in actions
    assert not any(isinstance(a, (RespondSip, HangUpSip)) for a in actions)
    assert finish(actions).outcome is Outcome.FAILED


def test_hang_up_by_the_bridge() -> None:
    flow = ringing()
    assert RespondSip(503, "Service Unavailable") in step(flow, HangUp("shutting down"), 2)
    flow = active_inbound()
    actions = step(flow, HangUp("drain timeout"), 20)
    assert HangUpSip("drain timeout") in actions
    assert notices(actions) == [f"Call with {CALLER} ended: drain timeout"]


def test_an_ended_call_ignores_everything() -> None:
    flow = active_inbound()
    step(flow, BYE, 10)
    for event in (BYE, MemberLeft(ALICE), TimerFired(RING_TIMER), WorkerLost("x"), HangUp("x")):
        assert flow.handle(event, 11) is None


def test_events_a_state_does_not_take_are_reported() -> None:
    flow = ringing()
    assert flow.handle(SipProgress(180), 2) is None
    assert flow.handle(SessionJoined("$again"), 2) is None
    assert flow.state is CallState.RINGING


# ---- outbound ------------------------------------------------------------------------------


def dialing(caller_in_session: bool = True) -> CallFlow:
    flow, actions = CallFlow.outbound(
        "+4930123",
        ROOM,
        "@alice:hs",
        ring_seconds=60,
        caller_member=ALICE if caller_in_session else None,
        caller_ring_event_id="$alice-ring" if caller_in_session else None,
    )
    assert actions == [PlaceSipCall()]
    assert flow.state is CallState.DIALING
    return flow


def test_outbound_answered_and_hung_up_by_the_phone() -> None:
    flow = dialing()
    assert step(flow, SipProgress(183), 1) == []
    assert flow.state is CallState.PROCEEDING
    assert step(flow, SipProgress(180), 2) == []
    assert step(flow, SipAnswered(), 5) == [JoinSession()]
    assert flow.state is CallState.CONNECTING
    assert step(flow, SessionJoined("$ghost"), 5.2) == []
    assert flow.state is CallState.ACTIVE
    actions = step(flow, BYE, 65)
    assert LeaveSession() in actions and notices(actions) == ["Call with +4930123 — 1:00"]


def test_outbound_matrix_side_hangs_up() -> None:
    flow = dialing()
    step(flow, SipAnswered(), 5)
    step(flow, SessionJoined("$ghost"), 5.2)
    actions = step(flow, MemberLeft(ALICE), 20)
    assert HangUpSip("the last Matrix member left") in actions and LeaveSession() in actions


def test_dialled_by_command_rings_the_user_after_the_answer() -> None:
    flow = dialing(caller_in_session=False)
    step(flow, SipAnswered(), 5)
    actions = step(flow, SessionJoined("$ghost"), 5.2)
    assert actions == [Ring("ring", ("@alice:hs",)), StartTimer(RING_TIMER, 60)]
    assert step(flow, MemberJoined(ALICE), 8) == []
    assert step(flow, TimerFired(RING_TIMER), 65) == []  # somebody joined: nothing to do


def test_dialled_by_command_and_nobody_joins() -> None:
    flow = dialing(caller_in_session=False)
    step(flow, SipAnswered(), 5)
    step(flow, SessionJoined("$ghost"), 5.2)
    actions = step(flow, TimerFired(RING_TIMER), 65)
    assert HangUpSip("nobody joined") in actions
    assert finish(actions).outcome is Outcome.NO_ANSWER


@pytest.mark.parametrize(
    ("code", "reason", "outcome", "notice"),
    [
        (486, "Busy Here", Outcome.BUSY, "+4930123 is busy (486 Busy Here)"),
        (600, "Busy Everywhere", Outcome.BUSY, "+4930123 is busy (600 Busy Everywhere)"),
        (603, "Decline", Outcome.DECLINED, "+4930123 declined the call (603 Decline)"),
    ],
)
def test_outbound_busy_declines_the_callers_ring(
    code: int, reason: str, outcome: Outcome, notice: str
) -> None:
    flow = dialing()
    actions = step(flow, SipEnded(code, reason, by_remote=True), 3)
    assert SendDecline("$alice-ring", busy=code != 603) in actions
    assert notices(actions) == [notice]
    assert finish(actions).outcome is outcome
    assert LeaveSession() not in actions  # the ghost never joined


def test_outbound_busy_without_a_ring_only_notices() -> None:
    flow = dialing(caller_in_session=False)
    actions = step(flow, SipEnded(486, "Busy Here", by_remote=True), 3)
    assert not any(isinstance(a, SendDecline) for a in actions)


@pytest.mark.parametrize(
    ("code", "reason", "outcome"),
    [
        (404, "Not Found", Outcome.REJECTED),
        (408, "Request Timeout", Outcome.NO_ANSWER),
        (480, "Temporarily Unavailable", Outcome.NO_ANSWER),
        (503, "Service Unavailable", Outcome.UNAVAILABLE),
        (500, "Server Internal Error", Outcome.FAILED),
    ],
)
def test_outbound_failures_notice_the_code_and_never_join(
    code: int, reason: str, outcome: Outcome
) -> None:
    flow = dialing()
    step(flow, SipProgress(180), 1)
    actions = step(flow, SipEnded(code, reason, by_remote=True), 3)
    assert notices(actions) == [f"Call to +4930123 failed: {code} {reason}"]
    assert (finish(actions).outcome, finish(actions).sip_code) == (outcome, code)
    assert JoinSession() not in actions and LeaveSession() not in actions


def test_caller_leaving_before_the_answer_cancels() -> None:
    flow = dialing()
    step(flow, SipProgress(180), 1)
    assert step(flow, MemberJoined(BOB), 1.5) == []
    assert step(flow, MemberLeft(BOB), 2) == []  # somebody else
    actions = step(flow, MemberLeft(ALICE), 3)
    assert HangUpSip("caller left") in actions
    assert finish(actions).outcome is Outcome.CANCELLED
    assert flow.handle(SipEnded(487, "Request Terminated", by_remote=False), 3.1) is None


def test_outbound_join_failure_hangs_up() -> None:
    flow = dialing()
    step(flow, SipAnswered(), 5)
    actions = step(flow, SessionJoinFailed("M_FORBIDDEN"), 6)
    assert HangUpSip("join failed") in actions and LeaveSession() in actions


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(192.4) == "3:12"
    assert format_duration(3725) == "1:02:05"


def test_membership_changes_while_dialing_joining_and_connecting() -> None:
    flow = dialing()
    assert step(flow, MemberJoined(BOB), 1) == []
    assert step(flow, MemberLeft(BOB), 1.5) == []
    actions = step(flow, MemberLeft(ALICE), 2)  # the caller gives up before 180
    assert HangUpSip("caller left") in actions
    flow = dialing(caller_in_session=False)
    step(flow, SipAnswered(), 5)
    assert step(flow, MemberJoined(ALICE), 5.1) == []
    assert step(flow, MemberLeft(ALICE), 5.2) == []
    assert flow.state is CallState.CONNECTING
    flow = CallFlow.inbound(CALLER, 60)
    step(flow, RouteFound(ROOM, True, ("@alice:hs",)), 0)
    step(flow, MemberJoined(ALICE), 0.1)
    assert step(flow, MemberLeft(ALICE), 0.2) == []
    assert step(flow, SessionJoined("$m"), 1)[0] == Ring("ring", ("@alice:hs",))


def test_phone_hangs_up_while_the_ghost_connects() -> None:
    flow = dialing()
    step(flow, SipAnswered(), 5)
    actions = step(flow, BYE, 5.1)
    assert LeaveSession() in actions and finish(actions).outcome is Outcome.COMPLETED


def test_joining_then_active_members_come_and_go() -> None:
    flow = active_inbound()
    assert step(flow, MemberJoined(BOB), 10) == []
    assert step(flow, MemberLeft(ALICE), 11) == []
    assert step(flow, TimerFired(RING_TIMER), 12) == []
    assert flow.state is CallState.ACTIVE


def test_every_transition_is_exercised_above(request: pytest.FixtureRequest) -> None:
    """A transition added without a test here fails this test."""
    this_file = request.node.nodeid.split("::", 1)[0]
    ran = [item for item in request.session.items if item.nodeid.startswith(this_file)]
    if len(ran) < 40:
        pytest.skip("only meaningful when the whole module runs")
    assert set(TRANSITIONS) - EXERCISED == set()
