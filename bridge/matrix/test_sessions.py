from bridge.matrix.rtc import MembershipUpdate, RtcMember
from bridge.matrix.sessions import SessionTracker


def member(user: str, device: str) -> RtcMember:
    return RtcMember(user, device, 0, None, ())


def test_join_refresh_replace_and_leave() -> None:
    tracker = SessionTracker()
    a = member("@a:hs", "D1")
    change = tracker.update("!r", MembershipUpdate("k", "@a:hs", a))
    assert change.joined == a and change.left is None
    assert tracker.update("!r", MembershipUpdate("k", "@a:hs", a)).joined is None
    a2 = member("@a:hs", "D2")
    change = tracker.update("!r", MembershipUpdate("k", "@a:hs", a2))
    assert (change.joined, change.left) == (a2, a)
    assert tracker.member_of("!r", "@a:hs") == a2
    change = tracker.update("!r", MembershipUpdate("k", "@a:hs", None))
    assert change.left == a2 and change.joined is None
    assert tracker.member_of("!r", "@a:hs") is None
    assert tracker.update("!r", MembershipUpdate("k", "@a:hs", None)).left is None
