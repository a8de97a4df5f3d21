"""Audio both ways between a real softphone (baresip) and a Matrix WebRTC peer (MSC2746)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge.matrix.legacy import CALL_HANGUP, CALL_SELECT_ANSWER
from tests.conftest import BridgeStack
from tests.test_inbound_calls import NUMBER, ended_record, linked_room
from tests.test_matrix_bot import notice_from
from tests.test_outbound_calls import portal_by_invite
from teststack.audio import analyse, loudest_stretch, read_wav, tone, write_wav
from teststack.baresip import Baresip
from teststack.bridge_process import BridgeProcess
from teststack.legacy_client import LegacyCaller
from teststack.matrix_client import MatrixUser
from teststack.rtc_user import is_ring_from, join_call
from teststack.sipp import (
    headers_of,
    phone_call_answered,
    received,
    requests,
    start_sipp,
    trunk_rings_until_cancelled,
)

PHONE_HZ = 440.0
MATRIX_HZ = 1000.0


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Baresip]:
    wav = write_wav(tmp_path / "phone-440.wav", tone(PHONE_HZ, 30, 8000), 8000)
    softphone = Baresip(tmp_path / "phone", wav)
    await softphone.start()
    yield softphone
    await softphone.stop()


def assert_heard(samples: object, rate: int, frequency: float, seconds: float) -> None:
    import numpy as np

    assert isinstance(samples, np.ndarray)
    stretch = loudest_stretch(samples, rate, seconds)
    report = analyse(stretch, rate)
    assert report.is_tone(frequency), report
    assert report.level_dbfs > -30, report
    assert report.seconds_heard >= seconds * 0.9, report


async def test_phone_to_matrix_legacy_call_carries_tones_both_ways(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice, legacy=True)
    ghost = "@sip_phone:localhost"
    matrix = LegacyCaller(alice, room, MATRIX_HZ)
    try:
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
        invite = await matrix.answer(ghost)
        assert invite["content"]["version"] == "1"
        assert invite["content"]["lifetime"] == 20_000
        assert invite["content"]["invitee"] == "@alice:localhost"
        assert invite["content"]["offer"]["type"] == "offer"
        await phone.wait_event("CALL_ESTABLISHED", 20)
        await matrix.wait_for(CALL_SELECT_ANSWER, ghost)
        await matrix.wait_connected()
        await asyncio.sleep(4)
        await matrix.hangup()
        await phone.wait_event("CALL_CLOSED", 15)
        assert_heard(matrix.recording(), 16000, PHONE_HZ, 2.5)
        heard, rate = read_wav(phone.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 2.5)
    finally:
        await matrix.close()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed"


async def test_matrix_to_phone_legacy_call_carries_tones_both_ways(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    wav = write_wav(tmp_path / "callee-440.wav", tone(PHONE_HZ, 30, 8000), 8000)
    callee = Baresip(tmp_path / "callee", wav, user="+4930777888")
    callee.sip_port = stack.ports.trunk  # the trunk the bridge dials is this softphone
    await callee.start()
    start_bridge()
    portal = await portal_by_invite(bob)
    ghost = "@sip_+4930777888:localhost"
    matrix = LegacyCaller(bob, portal, MATRIX_HZ)
    try:
        await matrix.call()
        await matrix.connect_answer(ghost)
        await matrix.wait_connected()
        await callee.wait_event("CALL_ESTABLISHED", 10)
        await asyncio.sleep(4)
        await callee.hangup()
        hangup = await matrix.wait_for(CALL_HANGUP, ghost, 15)
        assert hangup["content"]["reason"] == "user_hangup"
        assert_heard(matrix.recording(), 16000, PHONE_HZ, 2.5)
        heard, rate = read_wav(callee.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 2.5)
    finally:
        await matrix.close()
        await callee.stop()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed" and record["direction"] == "outbound"


async def legacy_call_from(
    phone: Baresip, stack: BridgeStack, matrix: LegacyCaller, number: str, ghost: str
) -> None:
    await phone.dial(f"sip:{number}@127.0.0.1:{stack.ports.sip}")
    await matrix.answer(ghost)
    await phone.wait_event("CALL_ESTABLISHED", 20)
    await matrix.wait_connected()


async def test_dtmf_both_ways(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice, legacy=True)
    matrix = LegacyCaller(alice, room, MATRIX_HZ)
    try:
        await legacy_call_from(phone, stack, matrix, NUMBER, "@sip_phone:localhost")
        for digit in "42":
            await phone.command("sndcode", digit)
            await asyncio.sleep(0.3)
        notice = await alice.wait_for_event(
            room, notice_from("@sip_phone:localhost", "The phone dialled")
        )
        assert notice["content"]["body"] == "The phone dialled 42"
        await alice.send_text(room, "!sip dtmf 1#")
        await alice.wait_for_event(room, notice_from(stack.bot, "Sent 1# to the phone"))
        keys = []
        for _ in range(2):
            event = await phone.wait_event("CALL_DTMF_START", 10)
            keys.append(str(event.get("param")))
        assert keys == ["1", "#"]
    finally:
        await matrix.hangup()
        await matrix.close()


async def test_two_concurrent_calls_do_not_cross(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge({"SIPBRIDGE_BRIDGE__PERMISSIONS": '{"localhost": admin}'})
    plan = [
        (alice, "+4930111000", 440.0, 1000.0, "one"),
        (bob, "+4930222000", 660.0, 1500.0, "two"),
    ]
    phones: list[Baresip] = []
    clients: list[LegacyCaller] = []
    try:
        for user, number, phone_hz, matrix_hz, name in plan:
            room = await linked_room(stack, user, number, legacy=True)
            wav = write_wav(tmp_path / f"{name}.wav", tone(phone_hz, 30, 8000), 8000)
            phone = Baresip(tmp_path / name, wav, user=name)
            await phone.start()
            phones.append(phone)
            client = LegacyCaller(user, room, matrix_hz)
            clients.append(client)
            await legacy_call_from(phone, stack, client, number, f"@sip_{name}:localhost")
        await asyncio.sleep(4)
        for client in clients:
            await client.hangup()
        for phone in phones:
            await phone.wait_event("CALL_CLOSED", 15)
        for client, phone, (_u, _n, phone_hz, matrix_hz, _name) in zip(
            clients, phones, plan, strict=True
        ):
            assert_heard(client.recording(), 16000, phone_hz, 2.5)
            heard, rate = read_wav(phone.received_audio())
            assert_heard(heard, rate, matrix_hz, 2.5)
    finally:
        for client in clients:
            await client.close()
        for phone in phones:
            await phone.stop()


async def test_ice_failure_ends_both_sides_with_a_reason(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice, legacy=True)
    matrix = LegacyCaller(alice, room, MATRIX_HZ)
    try:
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
        await matrix.answer("@sip_phone:localhost", unreachable=True)
        hangup = await matrix.wait_for(CALL_HANGUP, "@sip_phone:localhost", 20)
        assert hangup["content"]["reason"] == "ice_failed"
        await phone.wait_event("CALL_CLOSED", 15)
    finally:
        await matrix.close()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "failed"
    assert "WebRTC" in record["reason"]


async def test_a_matrix_user_who_never_answers_gives_480_and_invite_timeout(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    start_bridge({"SIPBRIDGE_MATRIXRTC__RING_LIFETIME": "5"})
    room = await linked_room(stack, alice, legacy=True)
    matrix = LegacyCaller(alice, room, MATRIX_HZ)
    try:
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
        hangup = await matrix.user.wait_for_event(room, lambda e: e.get("type") == CALL_HANGUP, 20)
        assert hangup["content"]["reason"] == "invite_timeout"
        closed = await phone.wait_event("CALL_CLOSED", 15)
        assert "480" in str(closed.get("param"))
    finally:
        await matrix.close()
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["sip_code"]) == ("no_answer", 480)


async def test_an_offer_without_a_common_codec_is_refused_on_both_sides(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    portal = await portal_by_invite(bob)
    ghost = "@sip_+4930777888:localhost"
    trunk = start_sipp(
        tmp_path / "trunk", trunk_rings_until_cancelled(), local_port=stack.ports.trunk
    )
    matrix = LegacyCaller(bob, portal, MATRIX_HZ)
    try:
        await matrix.call(only_codec="ISAC/16000")
        hangup = await matrix.wait_for(CALL_HANGUP, ghost, 20)
        assert hangup["content"]["reason"] == "user_media_failed"
        result = await asyncio.to_thread(trunk.wait)
        # The INVITE was cancelled (the CANCEL may even beat the trunk's 180).
        assert [r.split(" ", 1)[0] for r in requests(result.messages)][:2] == ["INVITE", "CANCEL"]
    finally:
        await matrix.close()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "failed"


async def test_a_phone_that_stops_sending_rtp_is_hung_up(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge({"SIPBRIDGE_MEDIA__RTP_TIMEOUT": "3"})
    room = await linked_room(stack, alice)
    # SIPp's phone answers the signalling but never sends a single RTP packet.
    sipp = start_sipp(
        tmp_path / "quiet",
        phone_call_answered(None, caller="+4940111222"),
        f"127.0.0.1:{stack.ports.sip}",
        service=NUMBER,
    )
    await alice.wait_for_event(room, is_ring_from("@sip_+4940111222:localhost"))
    await join_call(alice, room, service=stack.auth.url)
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    bye = next(m for m in received(result.messages) if m.startswith("BYE "))
    assert 'text="RTP timeout"' in headers_of(bye)["reason"]
    record = await ended_record(tmp_path)
    assert "no RTP from the phone for 3 s" in record["reason"]
