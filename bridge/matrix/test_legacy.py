from bridge.matrix.legacy import (
    CALL_CANDIDATES,
    CALL_HANGUP,
    CALL_INVITE,
    answer_content,
    hangup_reason,
    invite_content,
    read_legacy,
)


def event(kind: str, content: dict[str, object], age: int = 0) -> dict[str, object]:
    return {
        "type": kind,
        "content": content,
        "event_id": "$e",
        "sender": "@u:hs",
        "unsigned": {"age": age},
    }


def test_invite_round_trip_and_expiry() -> None:
    content = invite_content("c1", "p1", "v=0", 60_000, "@u:hs")
    assert content["offer"] == {"type": "offer", "sdp": "v=0"}
    assert content["version"] == "1" and content["party_id"] == "p1"
    read = read_legacy(event(CALL_INVITE, content, age=1000))
    assert read is not None and read.sdp == "v=0" and read.lifetime_ms == 60_000
    assert not read.expired
    old = read_legacy(event(CALL_INVITE, content, age=57_500))
    assert old is not None and old.expired


def test_answer_needs_its_sdp() -> None:
    assert read_legacy(event("m.call.answer", answer_content("c1", "p2", "v=0"))) is not None
    assert read_legacy(event("m.call.answer", {"call_id": "c1", "answer": {}})) is None
    assert read_legacy(event("m.call.answer", {"answer": {"sdp": "x"}})) is None


def test_candidates_keep_end_of_candidates() -> None:
    read = read_legacy(
        event(
            CALL_CANDIDATES,
            {
                "call_id": "c1",
                "party_id": "p",
                "version": "1",
                "candidates": [
                    {
                        "candidate": "candidate:1 1 UDP 1 127.0.0.1 5000 typ host",
                        "sdpMid": "0",
                        "sdpMLineIndex": 0,
                    },
                    {"candidate": ""},
                    "junk",
                ],
            },
        )
    )
    assert read is not None
    assert [c.candidate[:11] for c in read.candidates] == ["candidate:1", ""]


def test_hangup_reason_mapping() -> None:
    hangup = read_legacy(event(CALL_HANGUP, {"call_id": "c", "reason": "user_busy"}))
    assert hangup is not None and hangup.reason == "user_busy"
    assert hangup_reason("busy", 486, False) == "user_busy"
    assert hangup_reason("no_answer", 480, True) == "invite_timeout"
    assert hangup_reason("completed", 200, True) == "user_hangup"
    assert hangup_reason("rejected", 404, False) == "unknown_error"
    assert hangup_reason("failed", 408, False) == "invite_timeout"
