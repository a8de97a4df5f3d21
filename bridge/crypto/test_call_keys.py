"""The media-key decisions: who gets which key, and when a new one is made."""

from __future__ import annotations

import base64
import itertools

import pytest

from bridge.crypto.call_keys import (
    ROTATION_GRACE_MS,
    CallKeyError,
    KeyHolder,
    OutboundKeys,
    key_content,
    read_key_content,
)

ALICE = KeyHolder("@alice:hs", "ALICEDEV", 1000)
BOB = KeyHolder("@bob:hs", "BOBDEV", 2000)
ROOM = "!call:hs"


def keys() -> OutboundKeys:
    counter = itertools.count()
    return OutboundKeys(lambda: bytes([next(counter) % 256]) * 16, now_ms=0)


def test_the_first_key_goes_to_everyone_in_the_call_and_is_not_resent() -> None:
    k = keys()
    rollout = k.rollout([ALICE, BOB], 100)
    assert rollout is not None and rollout.to == (ALICE, BOB) and not rollout.new
    assert rollout.key.index == 0
    k.shared(rollout)
    assert k.rollout([ALICE, BOB], 200) is None


def test_a_joiner_gets_a_young_key_as_it_is() -> None:
    k = keys()
    k.shared(k.rollout([ALICE], 100))  # type: ignore[arg-type]
    rollout = k.rollout([ALICE, BOB], ROTATION_GRACE_MS - 1)
    assert rollout is not None and rollout.to == (BOB,) and rollout.key.index == 0


def test_a_joiner_after_the_grace_period_gets_a_new_key_and_so_does_everyone() -> None:
    k = keys()
    first = k.rollout([ALICE], 100)
    assert first is not None
    k.shared(first)
    rollout = k.rollout([ALICE, BOB], ROTATION_GRACE_MS)
    assert rollout is not None and rollout.new and rollout.to == (ALICE, BOB)
    assert rollout.key.index == 1 and rollout.key.key != first.key.key


def test_someone_leaving_makes_a_new_key_for_those_who_stay() -> None:
    k = keys()
    k.shared(k.rollout([ALICE, BOB], 100))  # type: ignore[arg-type]
    rollout = k.rollout([ALICE], 200)
    assert rollout is not None and rollout.new and rollout.to == (ALICE,)
    assert rollout.key.index == 1
    k.shared(rollout)
    assert k.rollout([ALICE], 300) is None


def test_the_last_one_leaving_still_retires_the_key() -> None:
    k = keys()
    k.shared(k.rollout([ALICE], 100))  # type: ignore[arg-type]
    rollout = k.rollout([], 200)
    assert rollout is not None and rollout.new and rollout.to == ()


def test_a_rejoin_is_a_joiner_not_a_leaver() -> None:
    k = keys()
    k.shared(k.rollout([ALICE], 100))  # type: ignore[arg-type]
    again = KeyHolder(ALICE.user_id, ALICE.device_id, 5000)
    rollout = k.rollout([again], 5000)
    assert rollout is not None and not rollout.new and rollout.to == (again,)


def test_indices_wrap_at_256() -> None:
    k = keys()
    for i in range(256):
        k.shared(k.rollout([ALICE], i * 10))  # type: ignore[arg-type]
        k.shared(k.rollout([], i * 10 + 5))  # type: ignore[arg-type]
    assert k.current.index == 0


def test_a_key_message_reads_back_as_sent() -> None:
    k = keys()
    content = key_content(k.current, ROOM, "@sip_1:hs", "GHOSTDEV", 1234)
    assert content["member"] == {"claimed_device_id": "GHOSTDEV", "id": "@sip_1:hs:GHOSTDEV"}
    assert content["session"] == {"call_id": "", "application": "m.call", "scope": "m.room"}
    got = read_key_content(content, ROOM)
    assert (got.claimed_device_id, got.index, got.key) == ("GHOSTDEV", 0, k.current.key)


def test_unpadded_base64_is_taken() -> None:
    encoded = base64.b64encode(b"k" * 16).decode().rstrip("=")
    content = {
        "room_id": ROOM,
        "keys": {"index": 3, "key": encoded},
        "member": {"claimed_device_id": "D"},
    }
    assert read_key_content(content, ROOM).key == b"k" * 16


@pytest.mark.parametrize(
    "change, why",
    [
        ({"room_id": "!other:hs"}, "not this call's"),
        ({"keys": None}, "no keys"),
        ({"keys": {"index": 256, "key": "a2V5a2V5a2V5a2V5a2V5aw=="}}, "index"),
        ({"keys": {"index": True, "key": "a2V5a2V5a2V5a2V5a2V5aw=="}}, "index"),
        ({"keys": {"index": 0, "key": "not base64!"}}, "base64"),
        ({"keys": {"index": 0, "key": ""}}, "0 bytes"),
        ({"member": {"id": "x"}}, "claimed_device_id"),
    ],
)
def test_malformed_key_messages_are_refused_with_the_reason(
    change: dict[str, object], why: str
) -> None:
    content = {
        "room_id": ROOM,
        "keys": {"index": 0, "key": "a2V5a2V5a2V5a2V5a2V5aw=="},
        "member": {"claimed_device_id": "D"},
        **change,
    }
    with pytest.raises(CallKeyError, match=why):
        read_key_content(content, ROOM)
