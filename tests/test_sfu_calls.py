"""Phones in Element Call / Element X sessions: audio through a real LiveKit SFU.

The Matrix side is a LiveKit participant built with LiveKit's own SDK that joins as Element
Call does: a membership event, a token from the MatrixRTC auth service, the SFU room.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from bridge.matrix.rtc import CALL_MEMBER
from tests.conftest import BridgeStack
from tests.test_inbound_calls import NUMBER, ended_record, linked_room
from tests.test_legacy_calls import MATRIX_HZ, PHONE_HZ, assert_heard
from tests.test_matrix_bot import notice_from
from tests.test_outbound_calls import portal_by_invite
from teststack.audio import analyse, loudest_stretch, read_wav, tone, write_wav
from teststack.baresip import Baresip
from teststack.bridge_process import BridgeProcess
from teststack.livekit import API_KEY, API_SECRET
from teststack.matrix_client import MatrixUser
from teststack.rtc_participant import RtcParticipant
from teststack.rtc_user import is_membership_of, is_ring_from, ring

GHOST = "@sip_phone:localhost"
BOB_HZ = 1500.0


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Baresip]:
    wav = write_wav(tmp_path / "phone-440.wav", tone(PHONE_HZ, 60, 8000), 8000)
    softphone = Baresip(tmp_path / "phone", wav)
    await softphone.start()
    yield softphone
    await softphone.stop()


def ghost_identity(participant: RtcParticipant) -> str:
    identities = [i for i in participant.heard if i.startswith(GHOST) or i.startswith("@sip_")]
    assert identities, f"heard nobody; tracks from {list(participant.heard)}"
    return identities[0]


async def test_phone_calls_an_element_call_room_and_both_hear_each_other(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
    await alice.wait_for_event(room, is_ring_from(GHOST))
    member = RtcParticipant(alice, room, stack.auth.url, MATRIX_HZ)
    try:
        await member.join()  # answers the call
        await phone.wait_event("CALL_ESTABLISHED", 20)
        await asyncio.sleep(5)
        await member.leave()  # the last member leaves: BYE
        await phone.wait_event("CALL_CLOSED", 15)
        assert_heard(member.recording(ghost_identity(member)), 16000, PHONE_HZ, 3)
        heard, rate = read_wav(phone.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 3)
    finally:
        await member.close()
    await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed"
    # The ghost asked the auth service the way Element Call does, with its OpenID token.
    asked = [r for r in stack_requests(stack) if r["body"].get("device_id", "").startswith("SIP")]
    assert asked and set(asked[0]["body"]) == {"room", "openid_token", "device_id"}


def stack_requests(stack: BridgeStack) -> list[dict[str, Any]]:
    """What the auth service stand-in was asked (it logs every request body)."""
    lines = (
        stack.auth.process.log_path.read_text().splitlines()
        if stack.auth.process.log_path.exists()
        else []
    )
    return [json.loads(line.split("REQUEST ", 1)[1]) for line in lines if "REQUEST " in line]


async def test_element_call_user_calls_a_phone_and_both_hear_each_other(
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
    portal = await portal_by_invite(bob)
    member = RtcParticipant(bob, portal, stack.auth.url, MATRIX_HZ)
    try:
        membership = await member.join()
        await ring(bob, portal, membership, "@sip_+4930777888:localhost")
        await callee.wait_event("CALL_ESTABLISHED", 20)
        await bob.wait_for_event(portal, is_membership_of("@sip_+4930777888:localhost"))
        await asyncio.sleep(5)
        await callee.hangup()
        await bob.wait_for_event(
            portal, is_membership_of("@sip_+4930777888:localhost", joined=False)
        )
        assert_heard(member.recording(ghost_identity(member)), 16000, PHONE_HZ, 3)
        heard, rate = read_wav(callee.received_audio())
        assert_heard(heard, rate, MATRIX_HZ, 3)
    finally:
        await member.close()
        await callee.stop()
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed" and record["direction"] == "outbound"


async def test_a_group_call_hears_the_phone_and_the_phone_hears_everyone(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    bob: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice, invite=[bob.user_id])
    await bob.join(room)
    await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
    await alice.wait_for_event(room, is_ring_from(GHOST))
    first = RtcParticipant(alice, room, stack.auth.url, MATRIX_HZ)
    second = RtcParticipant(bob, room, stack.auth.url, BOB_HZ)
    try:
        await first.join()
        await phone.wait_event("CALL_ESTABLISHED", 20)
        await asyncio.sleep(1)
        await second.join()  # joins mid-call and is picked up
        await asyncio.sleep(5)
        await first.leave()
        await second.leave()
        await phone.wait_event("CALL_CLOSED", 15)
        for member in (first, second):
            assert_heard(member.recording(ghost_identity(member)), 16000, PHONE_HZ, 2.5)
        heard, rate = read_wav(phone.received_audio())
        spectrum = np.abs(np.fft.rfft(loudest_stretch(heard, rate, 3).astype(np.float64)))
        freqs = np.fft.rfftfreq(len(loudest_stretch(heard, rate, 3)), 1 / rate)

        def energy(hz: float) -> float:
            return float(spectrum[np.abs(freqs - hz) < 20].sum())

        noise = float(np.median(spectrum)) * 40
        assert energy(MATRIX_HZ) > noise and energy(BOB_HZ) > noise, (
            energy(MATRIX_HZ),
            energy(BOB_HZ),
            noise,
        )
        assert analyse(heard, rate).level_dbfs > -35
    finally:
        await first.close()
        await second.close()


ENCRYPTION_OFF = {"SIPBRIDGE_BRIDGE__ENCRYPTION": "off"}


async def test_with_encryption_off_calls_to_an_encrypted_room_are_refused_not_silent(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    """(With encryption on, tests/test_element_call.py carries such calls.)"""
    start_bridge(ENCRYPTION_OFF)
    room = await linked_room(stack, alice)
    await alice.send_state(room, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"})
    await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
    closed = await phone.wait_event("CALL_CLOSED", 20)
    assert "488" in str(closed.get("param")), closed
    # The bot says why (in clear: without encryption it has no keys to encrypt with).
    await alice.wait_for_event(room, notice_from(stack.bot, "encryption is off"))
    events = await alice.messages(room)
    assert not any(e.get("type") == CALL_MEMBER and e.get("sender") == GHOST for e in events)
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["sip_code"]) == ("rejected", 488)


async def test_a_member_who_sends_no_media_key_is_not_heard_and_the_room_is_told(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    """An encrypted room's call with a client that does not encrypt (LiveKit's SDK, no key
    exchange): the call connects, the phone hears nothing of that member, and the ghost says
    why in the room, once."""
    bridge = start_bridge({"SIPBRIDGE_MATRIXRTC__MEDIA_KEY_TIMEOUT": "2"})
    room = await linked_room(stack, alice)
    await alice.send_state(room, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"})
    await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
    await alice.wait_for_event(room, is_ring_from(GHOST))
    member = RtcParticipant(alice, room, stack.auth.url, MATRIX_HZ)
    try:
        await member.join()
        await phone.wait_event("CALL_ESTABLISHED", 20)
        notice = await alice.wait_for_event(
            room, lambda e: e.get("sender") == GHOST and e.get("type") == "m.room.encrypted"
        )
        await asyncio.sleep(2)
        await member.leave()
        await phone.wait_event("CALL_CLOSED", 15)
    finally:
        await member.close()
    assert notice["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    told = [line for line in bridge.log().splitlines() if "no media key from" in line]
    assert len(told) == 1 and alice.user_id in told[0], told
    heard, rate = read_wav(phone.received_audio())
    assert not analyse(heard, rate).is_tone(MATRIX_HZ), "an unencrypted member was heard"


async def test_a_failing_auth_service_ends_the_call_with_a_notice(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    stack.auth.set_failing(True)
    try:
        await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
        closed = await phone.wait_event("CALL_CLOSED", 20)
        assert "480" in str(closed.get("param")), closed
        notice = await alice.wait_for_event(
            room, notice_from(GHOST, "could not be connected: the call's audio service refused")
        )
        assert "answered 500" in notice["content"]["body"]
    finally:
        stack.auth.set_failing(False)
    await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    record = await ended_record(tmp_path)
    assert record["outcome"] == "failed"


async def test_with_its_own_api_key_the_bridge_mints_tokens_itself(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    phone: Baresip,
    tmp_path: Path,
) -> None:
    start_bridge(
        {
            "SIPBRIDGE_LIVEKIT__URL": stack.livekit.url,
            "SIPBRIDGE_LIVEKIT__API_KEY": API_KEY,
            "SIPBRIDGE_LIVEKIT__API_SECRET": API_SECRET,
        }
    )
    room = await linked_room(stack, alice)
    member = RtcParticipant(alice, room, stack.auth.url, MATRIX_HZ)
    await phone.dial(f"sip:{NUMBER}@127.0.0.1:{stack.ports.sip}")
    await alice.wait_for_event(room, is_ring_from(GHOST))
    stack.auth.set_failing(True)  # the bridge must not need it now
    try:
        await member.join_with_token(stack.livekit.url, API_KEY, API_SECRET)
        await phone.wait_event("CALL_ESTABLISHED", 20)
        await asyncio.sleep(4)
        await member.leave()
        await phone.wait_event("CALL_CLOSED", 15)
        assert_heard(member.recording(ghost_identity(member)), 16000, PHONE_HZ, 2.5)
    finally:
        stack.auth.set_failing(False)
        await member.close()


async def test_with_encryption_off_calling_out_from_an_encrypted_portal_is_refused(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge(ENCRYPTION_OFF)
    portal = await portal_by_invite(bob)
    await bob.send_state(portal, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"})
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", stack.ports.trunk))
    listener.settimeout(2)
    try:
        dm = await bob.create_room(invite=[stack.bot], is_direct=True)
        await bob.wait_for_membership(dm, stack.bot, "join")
        await bob.send_text(dm, "!sip call +4930777888")
        await bob.wait_for_event(dm, notice_from(stack.bot, "encryption is off"))
        with pytest.raises(TimeoutError):
            listener.recv(4096)  # no INVITE left the bridge
    finally:
        listener.close()


async def test_the_auth_service_lets_a_browser_ask_for_a_token(stack: BridgeStack) -> None:
    """Element Call runs in a page of another origin: the preflight and the answers carry
    CORS headers, as lk-jwt-service's do."""
    preflight = {
        "Origin": "http://127.0.0.1:9999",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with aiohttp.ClientSession() as session:
        for path in ("/sfu/get", "/get_token"):
            async with session.options(f"{stack.auth.url}{path}", headers=preflight) as response:
                assert response.status == 200
                assert response.headers["Access-Control-Allow-Origin"] == "*"
                assert response.headers["Access-Control-Allow-Methods"] == "POST"
                assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
            async with session.post(
                f"{stack.auth.url}{path}", json={}, headers={"Origin": preflight["Origin"]}
            ) as response:
                assert response.status == 400  # still the real contract: exact fields
                assert response.headers["Access-Control-Allow-Origin"] == "*"
