"""One call's media keys: which member keys reach the worker, what is sent, what the room is
told. The ghost's device is a stand-in that records what it was asked to send (sending over
Olm is tested against Synapse and Element Call in tests/test_element_call.py)."""

from __future__ import annotations

import asyncio
import base64

from bridge.calls.media_e2ee import CallMediaKeys
from bridge.crypto.call_keys import CALL_KEYS, USE_DELAY_MS
from bridge.crypto.keys import Device
from bridge.crypto.olm_machine import ToDevice
from bridge.matrix.rtc import RtcMember
from bridge.workers.protocol import LiveKitKey, Message

ROOM = "!call:hs"
ALICE = RtcMember("@alice:hs", "ALICEDEV", 1000, None, ())
ALICE_DEVICE = Device("@alice:hs", "ALICEDEV", "curve-a", "ed-a")
KEY = base64.b64encode(b"k" * 16).decode()


class RecordingDevice:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object], list[tuple[str, str]]]] = []

    async def send_to_devices(
        self, event_type: str, content: dict[str, object], targets: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        self.sent.append((event_type, content, targets))
        return targets


class Call:
    def __init__(self, members: list[RtcMember], key_wait: float = 5.0) -> None:
        self.members = members
        self.device = RecordingDevice()
        self.worker: list[Message] = []
        self.notices: list[str] = []
        self.keys = CallMediaKeys(
            "rec1",
            "1.1",
            ROOM,
            "@sip_1:hs",
            "GHOSTDEV",
            self.device,
            lambda: self.members,
            self.worker.append,
            self._notice,
            key_wait,
        )

    async def _notice(self, text: str) -> None:
        self.notices.append(text)

    def keys_to_worker(self) -> list[LiveKitKey]:
        return [m for m in self.worker if isinstance(m, LiveKitKey)]


def message(
    content_device: str = "ALICEDEV", index: int = 0, room: str = ROOM, key: str = KEY
) -> ToDevice:
    content = {
        "keys": {"index": index, "key": key},
        "room_id": room,
        "member": {"claimed_device_id": content_device},
    }
    return ToDevice("@alice:hs", "curve-a", None, CALL_KEYS, content)


async def test_the_ghost_sends_its_key_to_each_member_and_a_new_one_when_someone_leaves() -> None:
    call = Call([ALICE])
    call.keys.members_changed()
    await asyncio.sleep(0.01)
    ((kind, content, targets),) = call.device.sent
    assert kind == CALL_KEYS and targets == [("@alice:hs", "ALICEDEV")]
    assert content["keys"] == {"index": 0, "key": call.keys.own_key().key}
    call.members = []
    call.keys.members_changed()
    await asyncio.sleep(USE_DELAY_MS / 1000 + 0.1)
    own = [k for k in call.keys_to_worker() if k.own]
    assert [k.key.index for k in own] == [1]  # the new key, used once the delay passed
    await call.keys.close()


async def test_a_members_key_reaches_the_worker_under_their_livekit_identity() -> None:
    call = Call([ALICE])
    call.keys.key_received(message(index=3), ALICE_DEVICE)
    (sent,) = call.keys_to_worker()
    assert (sent.key.identity, sent.key.index, sent.key.key, sent.own) == (
        "@alice:hs:ALICEDEV",
        3,
        KEY,
        False,
    )
    call.keys.key_received(message(index=3), ALICE_DEVICE)  # the same again: not resent
    assert len(call.keys_to_worker()) == 1
    await call.keys.close()


async def test_a_key_claiming_another_device_or_from_an_unknown_one_is_ignored() -> None:
    call = Call([ALICE])
    call.keys.key_received(message(content_device="OTHER"), ALICE_DEVICE)
    call.keys.key_received(message(), None)
    call.keys.key_received(message(room="!elsewhere:hs"), ALICE_DEVICE)
    call.keys.key_received(message(key="***"), ALICE_DEVICE)
    assert call.keys_to_worker() == []
    await call.keys.close()


async def test_a_key_from_someone_not_in_the_call_is_held_until_they_join() -> None:
    call = Call([])
    call.keys.key_received(message(), ALICE_DEVICE)
    assert call.keys_to_worker() == []
    call.members = [ALICE]
    call.keys.members_changed()
    assert [k.key.identity for k in call.keys_to_worker()] == ["@alice:hs:ALICEDEV"]
    await call.keys.close()


async def test_a_member_without_a_key_is_told_of_once() -> None:
    bob = RtcMember("@bob:hs", "BOBDEV", 2000, None, ())
    call = Call([ALICE, bob], key_wait=0.05)
    call.keys.members_changed()
    await asyncio.sleep(0.2)
    call.keys.members_changed()
    await asyncio.sleep(0.2)
    assert len(call.notices) == 1 and "cannot hear" in call.notices[0]
    assert "@alice:hs" in call.notices[0] or "@bob:hs" in call.notices[0]
    await call.keys.close()


async def test_a_member_whose_key_came_in_time_is_not_told_of() -> None:
    call = Call([ALICE], key_wait=0.05)
    call.keys.members_changed()
    call.keys.key_received(message(), ALICE_DEVICE)
    await asyncio.sleep(0.2)
    assert call.notices == []
    await call.keys.close()
