from typing import Any

from bridge.matrix.room_state import (
    joined_members,
    may_send,
    power_level,
    required_level,
    session_members,
    slot,
)
from bridge.matrix.rtc import CALL_MEMBER, RTC_SLOT, SLOT_ID, membership_content


def member(user: str, membership: str = "join") -> dict[str, Any]:
    return {"type": "m.room.member", "state_key": user, "content": {"membership": membership}}


def call_member(user: str, device: str, created: int, expires: int = 60_000) -> dict[str, Any]:
    content = membership_content(user, device, [{"type": "livekit"}], created, expires)
    return {
        "type": CALL_MEMBER,
        "state_key": f"_{user}_{device}_m.call",
        "sender": user,
        "content": content,
        "origin_server_ts": created,
    }


POWER = {
    "type": "m.room.power_levels",
    "state_key": "",
    "content": {
        "users": {"@admin:hs": 100, "@bot:hs": 50},
        "users_default": 0,
        "state_default": 50,
        "events_default": 0,
        "events": {CALL_MEMBER: 0},
    },
}


def test_joined_members() -> None:
    state = [member("@a:hs"), member("@b:hs", "invite"), member("@c:hs", "leave")]
    assert joined_members(state) == {"@a:hs"}


def test_session_members_are_valid_joined_and_oldest_first() -> None:
    state = [
        member("@a:hs"),
        member("@b:hs"),
        member("@gone:hs", "leave"),
        call_member("@b:hs", "B", created=2000),
        call_member("@a:hs", "A", created=1000),
        call_member("@gone:hs", "G", created=500),  # sender left the room
        call_member("@a:hs", "OLD", created=1, expires=10),  # expired
        {"type": CALL_MEMBER, "state_key": "_@b:hs_X_m.call", "sender": "@b:hs", "content": {}},
    ]
    members = session_members(state, now_ms=3000)
    assert [(m.user_id, m.device_id) for m in members] == [("@a:hs", "A"), ("@b:hs", "B")]
    assert members[0].foci_preferred == ({"type": "livekit"},)


def test_power_levels() -> None:
    state = [POWER]
    assert power_level(state, "@admin:hs") == 100
    assert power_level(state, "@nobody:hs") == 0
    assert required_level(state, CALL_MEMBER, is_state=True) == 0
    assert required_level(state, RTC_SLOT, is_state=True) == 50
    assert may_send(state, "@nobody:hs", CALL_MEMBER)
    assert not may_send(state, "@nobody:hs", RTC_SLOT)
    assert may_send(state, "@bot:hs", RTC_SLOT)
    assert may_send([], "@x:hs", RTC_SLOT)  # no power levels at all


def test_creators_of_v12_rooms_outrank_everyone() -> None:
    create = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@c:hs",
        "content": {"room_version": "12", "additional_creators": ["@d:hs"]},
    }
    state = [create, POWER]
    assert power_level(state, "@c:hs") > 100 and power_level(state, "@d:hs") > 100
    assert may_send(state, "@c:hs", "m.room.power_levels")
    old = [{**create, "content": {"room_version": "10"}}, POWER]
    assert power_level(old, "@c:hs") == 0


def test_slot() -> None:
    assert slot([]) is None
    content = {"status": "open", "application": {"type": "m.call"}}
    assert slot([{"type": RTC_SLOT, "state_key": SLOT_ID, "content": content}]) == content
