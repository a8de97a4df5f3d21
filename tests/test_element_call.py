"""Phones and the real Element Call app (npm @element-hq/element-call-embedded), hosted as a
widget the way Element Web hosts it, in headless Chromium with a fake microphone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BridgeStack
from tests.test_browser_calls import browser_wav
from tests.test_inbound_calls import NUMBER, ended_record, linked_room
from tests.test_legacy_calls import MATRIX_HZ, PHONE_HZ, assert_heard
from tests.test_outbound_calls import portal_by_invite
from teststack.audio import read_wav, tone, write_wav
from teststack.baresip import Baresip
from teststack.bridge_process import BridgeProcess
from teststack.browser import BrowserCall, start_element_call
from teststack.matrix_client import MatrixUser
from teststack.rtc_user import is_membership_of, is_ring_from

GHOST = "@sip_phone:localhost"  # the calling phone's ghost
CALLEE = "+4930777888"
CALL_KEYS = "io.element.call.encryption_keys"
ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2"}
room_kinds = pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])


def assert_page_heard(result: dict[str, Any], frequency: float) -> None:
    """Element Call played the ghost's track: its strongest frequency and a real level."""
    heard = result["heard"]
    assert abs(heard["peakHz"] - frequency) < 15, result
    assert heard["levelDb"] > -40, result


async def finished(browser: BrowserCall) -> dict[str, Any]:
    result = await asyncio.to_thread(browser.wait)
    assert result["ok"], result
    return result


def assert_keys_exchanged(result: dict[str, Any], ghost: str, encrypted: bool) -> None:
    """In an encrypted room Element Call and the ghost sent each other their media keys,
    Olm-encrypted; in a plain room nobody sent any."""
    status = result["status"]
    sent = [m for m in status["sentToDevice"] if m["type"] == CALL_KEYS]
    got = [m for m in status["receivedToDevice"] if m["type"] == CALL_KEYS]
    if not encrypted:
        assert not sent and not got, status
        return
    assert sent and all(m["encrypted"] and m["delivered"] >= 1 for m in sent), status
    assert any(m["sender"] == ghost and m["encrypted"] for m in got), status


@room_kinds
async def test_element_call_answers_a_phone_and_both_hear_each_other(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
    encrypted: bool,
) -> None:
    wav = write_wav(tmp_path / "phone-440.wav", tone(PHONE_HZ, 60, 8000), 8000)
    phone = Baresip(tmp_path / "phone", wav)
    await phone.start()
    start_bridge()
    try:
        room = await linked_room(stack, alice)
        if encrypted:  # encryption turned on, as a room's settings do
            await alice.send_state(room, "m.room.encryption", "", ENCRYPTION)
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
        await alice.wait_for_event(room, is_ring_from(GHOST))
        page = start_element_call(
            stack.synapse.url,
            alice.user_id,
            "pw",
            room,
            "join_existing_voice",
            stack.auth.url,
            browser_wav(tmp_path),
            tmp_path / "element-call.log",
        )
        await asyncio.to_thread(page.wait_line, "JOINED")
        await phone.wait_event("CALL_ESTABLISHED", 20)
        # Element Call listens, then leaves by its own hang-up button: the phone gets BYE.
        result = await finished(page)
        await phone.wait_event("CALL_CLOSED", 10)
        assert_page_heard(result, PHONE_HZ)
        assert_keys_exchanged(result, GHOST, encrypted)
        heard, rate = read_wav(phone.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 2)
    finally:
        await phone.stop()
    await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed" and record["direction"] == "inbound"


@room_kinds
async def test_element_call_rings_a_phone_from_a_portal_and_both_hear_each_other(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
    encrypted: bool,
) -> None:
    wav = write_wav(tmp_path / "callee-440.wav", tone(PHONE_HZ, 60, 8000), 8000)
    callee = Baresip(tmp_path / "callee", wav, user=CALLEE)
    callee.sip_port = stack.ports.trunk
    await callee.start()
    start_bridge()
    try:
        portal = await portal_by_invite(bob, CALLEE, encrypted)
        page = start_element_call(
            stack.synapse.url,
            bob.user_id,
            "pw",
            portal,
            "start_call_dm_voice",
            stack.auth.url,
            browser_wav(tmp_path),
            tmp_path / "element-call.log",
            leave="by_itself",
        )
        # Element Call rings the DM; the bridge dials, the phone answers.
        await callee.wait_event("CALL_ESTABLISHED", 30)
        await asyncio.to_thread(page.wait_line, "HEARD")
        await callee.hangup()
        # The phone hung up: the ghost leaves, and Element Call, alone, leaves by itself.
        result = await finished(page)
        assert_page_heard(result, PHONE_HZ)
        assert "org.matrix.msc4075.rtc.notification" in result["status"]["sent"], result
        assert_keys_exchanged(result, f"@sip_{CALLEE}:localhost", encrypted)
        heard, rate = read_wav(callee.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 2)
    finally:
        await callee.stop()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed" and record["direction"] == "outbound"
