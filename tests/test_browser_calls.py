"""The real thing: Element Web's call code (matrix-js-sdk) in headless Chromium.

A fake microphone plays 1 kHz into the browser; a softphone plays 440 Hz. Each side must
hear the other's tone. DESIGN §4 lists what this code is strict about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.conftest import BridgeStack
from tests.test_inbound_calls import NUMBER, ended_record, linked_room
from tests.test_legacy_calls import MATRIX_HZ, PHONE_HZ, assert_heard
from tests.test_outbound_calls import portal_by_invite
from teststack.audio import read_wav, tone, write_wav
from teststack.baresip import Baresip
from teststack.bridge_process import BridgeProcess
from teststack.browser import start_browser_call
from teststack.matrix_client import MatrixUser


def browser_wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "browser-1000.wav", tone(MATRIX_HZ, 60, 48000), 48000)


async def test_element_web_calls_a_phone_and_both_hear_each_other(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    wav = write_wav(tmp_path / "callee-440.wav", tone(PHONE_HZ, 60, 8000), 8000)
    callee = Baresip(tmp_path / "callee", wav, user="+4930777888")
    callee.sip_port = stack.ports.trunk
    await callee.start()
    start_bridge()
    try:
        portal = await portal_by_invite(bob)
        browser = start_browser_call(
            "place",
            stack.synapse.url,
            bob.user_id,
            "pw",
            portal,
            browser_wav(tmp_path),
            talk_ms=4000,
            dtmf="5#",  # Element's in-call dial pad
        )
        result = await asyncio.to_thread(browser.wait)
        assert result["ok"], result
        assert abs(result["heard"]["peakHz"] - PHONE_HZ) < 15, result
        assert result["heard"]["levelDb"] > -40, result
        assert "connected" in result["status"]["states"], result
        assert result["status"]["dialPad"] is True, result  # we told Element we take DTMF
        keys = [str((await callee.wait_event("CALL_DTMF_START", 5)).get("param")) for _ in "5#"]
        assert keys == ["5", "#"]
        await callee.wait_event("CALL_CLOSED", 15)
        heard, rate = read_wav(callee.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 2.5)
    finally:
        await callee.stop()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed" and record["direction"] == "outbound"


async def test_element_web_answers_a_phone_call_and_both_hear_each_other(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    wav = write_wav(tmp_path / "phone-440.wav", tone(PHONE_HZ, 60, 8000), 8000)
    phone = Baresip(tmp_path / "phone", wav)
    await phone.start()
    start_bridge()
    try:
        room = await linked_room(stack, alice, legacy=True)
        browser = start_browser_call(
            "answer",
            stack.synapse.url,
            alice.user_id,
            "pw",
            room,
            browser_wav(tmp_path),
            talk_ms=4000,
        )
        await asyncio.to_thread(browser.wait_ready)
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
        await phone.wait_event("CALL_ESTABLISHED", 30)
        await asyncio.sleep(7)
        await phone.hangup()
        result = await asyncio.to_thread(browser.wait)
        assert result["ok"], result
        assert abs(result["heard"]["peakHz"] - PHONE_HZ) < 15, result
        assert result["status"]["hangupReason"] == "user_hangup", result
        heard, rate = read_wav(phone.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 2.5)
    finally:
        await phone.stop()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed" and record["direction"] == "inbound"
