from bridge.matrix.rtc import (
    RTC_MEMBER,
    SLOT_ID,
    membership_content,
    membership_state_key,
    notification_content,
    read_call_member,
    read_rtc_member,
    referenced_event,
    slot_is_open,
)


def test_membership_content_matches_what_element_call_sends() -> None:
    content = membership_content("@g:hs", "DEV", [{"type": "livekit"}], 1000, 14_400_000)
    assert membership_state_key("@g:hs", "DEV") == "_@g:hs_DEV_m.call"
    assert content["application"] == "m.call" and content["call_id"] == ""
    assert content["scope"] == "m.room" and content["device_id"] == "DEV"
    assert content["membershipID"] == "@g:hs:DEV"
    assert content["focus_active"] == {"type": "livekit", "focus_selection": "oldest_membership"}
    assert content["foci_preferred"] == [{"type": "livekit"}]
    assert content["m.call.intent"] == "audio"
    assert (content["created_ts"], content["expires"]) == (1000, 14_400_000)


def test_notification_caps_lifetime_and_references_membership() -> None:
    content = notification_content("ring", "$m", ["@b:hs", "@a:hs"], 300_000, 5)
    assert content["lifetime"] == 120_000
    assert content["m.relates_to"] == {"rel_type": "m.reference", "event_id": "$m"}
    assert content["m.mentions"] == {"user_ids": ["@a:hs", "@b:hs"]}
    assert referenced_event(content) == "$m"


def test_read_call_member_join_leave_and_foreign_calls() -> None:
    event = {
        "type": "org.matrix.msc3401.call.member",
        "state_key": "_@a:hs_D_m.call",
        "sender": "@a:hs",
        "origin_server_ts": 7,
        "content": membership_content("@a:hs", "D", [], 5, 100),
    }
    update = read_call_member(event)
    assert update is not None and update.member is not None
    assert (update.member.key, update.member.started_ms, update.member.expires_at_ms) == (
        "@a:hs|D",
        5,
        105,
    )
    left = read_call_member({**event, "content": {}})
    assert left is not None and left.member is None and left.slot_key == "_@a:hs_D_m.call"
    content = membership_content("@a:hs", "D", [], 5, 100)
    other_call = {**event, "content": {**content, "call_id": "breakout"}}
    assert read_call_member(other_call) is None


def test_read_sticky_rtc_member() -> None:
    content = {
        "slot_id": SLOT_ID,
        "application": {"type": "m.call"},
        "member": {"user_id": "@a:hs", "device_id": "D", "id": "x"},
        "transports": {"published": [{"type": "livekit"}], "can_subscribe": []},
        "versions": [],
        "msc4354_sticky_key": "k1",
    }
    event = {"type": RTC_MEMBER, "sender": "@a:hs", "content": content, "origin_server_ts": 9}
    update = read_rtc_member(event)
    assert update is not None and update.member is not None
    assert update.member.key == "@a:hs|D" and update.slot_key == "sticky:@a:hs:k1"
    withdrawn = read_rtc_member({**event, "content": {"msc4354_sticky_key": "k1"}})
    assert withdrawn is not None and withdrawn.member is None
    assert withdrawn.slot_key == update.slot_key
    forged = {**event, "sender": "@mallory:hs"}
    assert read_rtc_member(forged) is None


def test_slot_is_open() -> None:
    assert slot_is_open({"status": "open", "application": {"type": "m.call"}})
    assert not slot_is_open({"status": "closed", "application": {"type": "m.call"}})
    assert not slot_is_open({"status": "open"})
    assert not slot_is_open(None)
