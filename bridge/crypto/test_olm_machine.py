"""Two devices exchange an Olm-carried room key and Megolm room events, as Matrix clients do."""

from __future__ import annotations

import pytest

from bridge.crypto.keys import read_device_keys
from bridge.crypto.olm_machine import DecryptionError, MissingSessionError, OlmMachine
from bridge.crypto.pickling import pickle_machine, unpickle_machine

ROOM = "!room:localhost"


def pair() -> tuple[OlmMachine, OlmMachine]:
    return OlmMachine("@sipbot:localhost", "BOT"), OlmMachine("@alice:localhost", "ALICE")


def device_of(machine: OlmMachine):  # type: ignore[no-untyped-def]
    device = read_device_keys(machine.user_id, machine.device_id, machine.device_keys())
    assert device is not None
    return device


def connect(sender: OlmMachine, recipient: OlmMachine) -> None:
    """The sender claims one of the recipient's one-time keys and opens an Olm session."""
    keys = recipient.one_time_keys(0)
    recipient.mark_published()
    one_time_key = next(iter(keys.values()))
    sender.start_olm_session(device_of(recipient), one_time_key)


def give_room_key(sender: OlmMachine, recipient: OlmMachine) -> None:
    """The sender's room session key, over a new Olm session, taken by the recipient."""
    connect(sender, recipient)
    session = sender.room_session(ROOM, 0)
    key = sender.encrypt_to_device(
        device_of(recipient), "m.room_key", sender.room_key_content(ROOM, session)
    )
    recipient.accept_room_key(
        recipient.decrypt_to_device({"sender": sender.user_id, "content": key})
    )


def test_a_room_key_sent_over_olm_lets_the_recipient_read_the_room() -> None:
    bot, alice = pair()
    connect(alice, bot)
    session = alice.room_session(ROOM, 0)
    to_device = alice.encrypt_to_device(
        device_of(bot), "m.room_key", alice.room_key_content(ROOM, session)
    )
    event = {"type": "m.room.encrypted", "sender": alice.user_id, "content": to_device}
    received = bot.decrypt_to_device(event)
    assert received.type == "m.room_key" and received.sender_device == "ALICE"
    assert bot.accept_room_key(received) == session.session.session_id
    content = alice.encrypt_room_event(ROOM, "m.room.message", {"body": "!sip help"}, 0)
    clear = bot.decrypt_room_event(
        {"type": "m.room.encrypted", "room_id": ROOM, "event_id": "$e", "content": content}
    )
    assert clear["type"] == "m.room.message" and clear["content"] == {"body": "!sip help"}
    assert clear["event_id"] == "$e"


def test_olm_replies_use_the_session_the_peer_started() -> None:
    bot, alice = pair()
    connect(alice, bot)
    first = alice.encrypt_to_device(device_of(bot), "m.dummy", {})
    bot.decrypt_to_device({"sender": alice.user_id, "content": first})
    reply = bot.encrypt_to_device(device_of(alice), "m.dummy", {"n": 1})
    got = alice.decrypt_to_device({"sender": bot.user_id, "content": reply})
    assert got.content == {"n": 1}


def test_an_event_whose_key_has_not_arrived_names_its_session() -> None:
    bot, alice = pair()
    content = alice.encrypt_room_event(ROOM, "m.room.message", {"body": "x"}, 0)
    with pytest.raises(MissingSessionError) as raised:
        bot.decrypt_room_event({"room_id": ROOM, "content": content})
    assert raised.value.session_id == content["session_id"]


def test_a_key_cannot_be_replayed_into_another_room() -> None:
    bot, alice = pair()
    give_room_key(alice, bot)
    content = alice.encrypt_room_event(ROOM, "m.room.message", {"body": "x"}, 0)
    with pytest.raises(DecryptionError):
        bot.decrypt_room_event({"room_id": "!other:localhost", "content": content})


def test_a_payload_claiming_another_sender_is_refused() -> None:
    bot, alice = pair()
    connect(alice, bot)
    content = alice.encrypt_to_device(device_of(bot), "m.room_key", {})
    with pytest.raises(DecryptionError):
        bot.decrypt_to_device({"sender": "@mallory:localhost", "content": content})


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"algorithm": "m.olm.v1.curve25519-aes-sha2"},
        {"algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "x", "ciphertext": "x"},
        {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": 3},
    ],
)
def test_malformed_to_device_messages_are_errors_not_crashes(content: dict[str, object]) -> None:
    bot, _ = pair()
    with pytest.raises(DecryptionError):
        bot.decrypt_to_device({"sender": "@alice:localhost", "content": content})


def test_device_keys_with_a_bad_signature_are_not_trusted() -> None:
    bot, alice = pair()
    keys = alice.device_keys()
    keys["keys"]["curve25519:ALICE"] = bot.curve25519  # swapped after signing
    assert read_device_keys(alice.user_id, "ALICE", keys) is None
    assert read_device_keys(alice.user_id, "OTHER", alice.device_keys()) is None


def test_the_room_session_rotates_after_a_week() -> None:
    _, alice = pair()
    first = alice.room_session(ROOM, 0).session.session_id
    assert alice.room_session(ROOM, 1000).session.session_id == first
    assert alice.room_session(ROOM, 8 * 24 * 3600 * 1000).session.session_id != first


def test_a_pickled_device_keeps_its_identity_and_sessions() -> None:
    bot, alice = pair()
    give_room_key(alice, bot)
    secret = bytes(range(32))
    restored = unpickle_machine(bot.user_id, bot.device_id, pickle_machine(bot, secret), secret)
    assert restored.curve25519 == bot.curve25519
    content = alice.encrypt_room_event(ROOM, "m.room.message", {"body": "after restart"}, 0)
    clear = restored.decrypt_room_event({"room_id": ROOM, "content": content})
    assert clear["content"]["body"] == "after restart"
    with pytest.raises(ValueError):
        unpickle_machine(bot.user_id, bot.device_id, pickle_machine(bot, secret), bytes(32))


def test_a_new_room_session_replaces_the_one_a_leaver_holds() -> None:
    _, alice = pair()
    first = alice.room_session(ROOM, 0)
    first.shared_with.update({"@bob:localhost|B1", "@carol:localhost|C1"})
    assert first.readers() == {"@bob:localhost", "@carol:localhost"}
    second = alice.new_room_session(ROOM, 0)
    assert second.session.session_id != first.session.session_id and not second.shared_with
    assert alice.room_session(ROOM, 0) is second
