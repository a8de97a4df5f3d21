"""What an answered caller, or a stranger who learned a call's identifiers, can send inside
the call: every request gets the bridge's own answer, nothing is dialled, the call goes on,
and the call's media stays with its peer. Both layouts: one worker, and the edge in front.

Real pieces: the bridge's workers (pjsua2), Kamailio, Synapse, LiveKit; the phone is raw UDP
so that each request is exactly the one under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BridgeStack, EdgeSetup, ended_records
from tests.test_inbound_calls import NUMBER, linked_room
from tests.test_legacy_calls import MATRIX_HZ, PHONE_HZ, assert_heard
from teststack.bridge_process import BridgeProcess
from teststack.dialog_phone import DialogPhone, RtpEndpoint, sdp, ulaw
from teststack.matrix_client import MatrixUser
from teststack.rawsip import Reply, UdpPeer
from teststack.rtc_participant import RtcParticipant
from teststack.rtc_user import is_membership_of, is_ring_from, join_call

GHOST = "@sip_+4940111222:localhost"
STRANGER = "127.0.0.2"
STRANGER_HZ = 1800.0


@dataclass
class Layout:
    name: str
    bridge: BridgeProcess
    target: tuple[str, int]


@pytest.fixture(params=["one worker", "edge"])
def layout(
    request: pytest.FixtureRequest,
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    with_edge: Callable[..., EdgeSetup],
) -> Layout:
    if request.param == "edge":
        setup = with_edge(workers=1)
        return Layout("edge", setup.bridge, setup.edge.address)
    return Layout("one worker", start_bridge(), ("127.0.0.1", stack.ports.sip))


@pytest.fixture
def trunk_listener(stack: BridgeStack) -> Iterator[socket.socket]:
    """The trunk's address: any INVITE the bridge sends out arrives here."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", stack.ports.trunk))
    listener.settimeout(0.1)
    yield listener
    listener.close()


def invites_at(listener: socket.socket) -> list[bytes]:
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            data = listener.recv(65535)
            if data.startswith(b"INVITE"):
                got.append(data)
    return got


@pytest.fixture
async def answered(
    stack: BridgeStack, layout: Layout, alice: MatrixUser
) -> AsyncIterator[tuple[DialogPhone, str]]:
    """A phone's call to a linked room, answered there (membership only, no media)."""
    room = await linked_room(stack, alice)
    phone = DialogPhone(layout.target, NUMBER)
    calling = asyncio.create_task(asyncio.to_thread(phone.call))
    await alice.wait_for_event(room, is_ring_from(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    final = await calling
    assert final.code == 200, final.text
    try:
        yield phone, room
    finally:
        phone.close()


def codes(replies: list[Reply]) -> list[int]:
    return [r.code for r in replies if r.code >= 200]


def refer_to(uri: str) -> str:
    return f"Refer-To: <{uri}>\r\nReferred-By: <sip:+4940111222@127.0.0.1>"


async def test_in_dialog_requests_get_the_bridges_answers_and_dial_nothing(
    stack: BridgeStack,
    layout: Layout,
    answered: tuple[DialogPhone, str],
    alice: MatrixUser,
    trunk_listener: socket.socket,
    tmp_path: Path,
) -> None:
    phone, room = answered
    pids = layout.bridge.worker_pids()
    host, port = layout.target
    trunk = f"127.0.0.1:{stack.ports.trunk}"
    replaces = "unknown%40nowhere%3Bto-tag%3Dabc%3Bfrom-tag%3Ddef"
    moved = RtpEndpoint()  # the phone's media moving to another port, in its own re-INVITE
    g729 = sdp("127.0.0.1", phone.media.port, 3, "18")
    battery: list[tuple[str, str, str, set[int]]] = [
        # A REFER never dials: to a raw address, a forbidden number, tel:, with Replaces.
        ("REFER", refer_to(f"sip:+19005550100@{trunk}"), "", {403}),
        ("REFER", refer_to(f"sip:+19005550100@{host}:{port}"), "", {403}),
        ("REFER", refer_to("tel:+4930666777"), "", {403}),
        ("REFER", refer_to(f"sip:+4930666777@{host}?Replaces={replaces}"), "", {403}),
        # Media renegotiation by the call's peer: taken or refused as RFC 3261 §14 says.
        ("INVITE", "", "", {200}),  # no SDP: the bridge offers, the ACK answers
        ("INVITE", "Content-Type: application/sdp", "v=0\r\ngarbage\r\n", {400, 415}),
        ("INVITE", "", g729, {488}),  # no codec in common: refused, the call goes on
        ("INVITE", "", sdp("127.0.0.1", moved.port, 4), {200}),
        ("UPDATE", "", "", {200}),
        # Everything else has the bridge's own answer, never pjsua's 500.
        ("INFO", "Content-Type: text/plain", "hello", {415}),
        ("INFO", "", "", {200}),
        ("MESSAGE", "Content-Type: text/plain", "call me back", {405}),
        ("SUBSCRIBE", "Event: presence\r\nExpires: 60", "", {405}),
        ("NOTIFY", "Event: refer\r\nSubscription-State: active", "", {481}),
        ("OPTIONS", "", "", {200}),
        ("PRACK", "RAck: 1 1 INVITE", "", {400, 481}),
        ("FOO", "", "", {501}),
    ]
    answers: dict[int, tuple[str, list[int]]] = {}
    for n, (method, extra, body, expected) in enumerate(battery):
        replies = await asyncio.to_thread(phone.request, method, extra, body)
        answers[n] = (method, codes(replies))
        assert codes(replies)[-1:] and codes(replies)[-1] in expected, (n, method, answers[n])
        last = replies[-1]
        if last.code in (405, 501) or method == "OPTIONS":
            allow = {m.strip() for m in (last.header("Allow") or "").split(",")}
            assert "BYE" in allow and not allow & {"REFER", "MESSAGE", "SUBSCRIBE"}, last.text
        if method == "INFO" and last.code == 415:
            assert last.header("Accept") == "application/dtmf-relay", last.text
    # The 200 of the first answer no longer offers what the bridge refuses.
    assert phone.answer is not None
    assert "REFER" not in (phone.answer.header("Allow") or ""), phone.answer.text
    # The media moved with the peer's own re-INVITE: the bridge now sends there.
    await asyncio.sleep(1.5)
    assert moved.received > 20, moved.received
    moved.close()
    back = await asyncio.to_thread(
        phone.request, "INVITE", "", sdp("127.0.0.1", phone.media.port, 6)
    )
    assert codes(back) == [200]

    # A wrong tag is no dialog; a stranger with the dialog's identifiers is refused.
    assert codes(await asyncio.to_thread(phone.request, "BYE", wrong_tag=True)) == [481]
    with UdpPeer(STRANGER) as stranger:
        steal = sdp(STRANGER, 40_000, 5)
        stolen = await asyncio.to_thread(phone.request, "INVITE", "", steal, stranger)
        assert codes(stolen) in ([488], [403]), codes(stolen)
        info = await asyncio.to_thread(phone.request, "INFO", "", "", stranger)
        assert codes(info) == [403]
        if layout.name == "edge":
            # Without the edge pjsip ends a dialog on any BYE with its identifiers
            # (docs/security.md); the edge checks where in-dialog requests come from.
            bye = await asyncio.to_thread(phone.request, "BYE", "", "", stranger)
            assert codes(bye) == [403]
    # A request for a dialog nobody set up, along the same route: no such call.
    forged = DialogPhone(layout.target, NUMBER)
    forged.to_tag, forged.routes, forged.remote_target = "forged", phone.routes, phone.remote_target
    nowhere = await asyncio.to_thread(forged.request, "INFO")
    forged.close()
    assert codes(nowhere) == [481]
    if layout.name == "edge":
        assert nowhere[-1].header("Server") == "sip-edge"  # stopped at the edge
    # An INVITE that would replace the live call (RFC 3891) is refused.
    with UdpPeer() as other:
        dialog = f"{phone.call_id};to-tag={phone.to_tag};from-tag={phone.from_tag}"
        hijack = DialogPhone(layout.target, NUMBER)
        hijack.sip.close()
        hijack.sip = other
        refused = await asyncio.to_thread(hijack.call, 10.0, f"Replaces: {dialog}")
        assert refused.code == 403, refused.text
        hijack.media.close()

    # Nothing was dialled, nothing crashed, and the call is still up.
    await asyncio.sleep(1)
    assert invites_at(trunk_listener) == []
    assert layout.bridge.worker_pids() == pids
    heard = phone.media.received
    await asyncio.sleep(1)
    assert phone.media.received > heard  # the bridge still sends the call's audio
    assert codes(await asyncio.to_thread(phone.request, "BYE")) == [200]
    await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    rows = await ended_records(tmp_path, 2)  # the call, and the INVITE that would replace it
    call = next(r for r in rows if r["sip_call_id"] == phone.call_id)
    assert call["outcome"] == "completed"
    notes = call["notes"] or ""
    assert notes.count("REFER (call transfer) was refused") == 4, notes
    assert "to replace this call was refused" in notes and "was refused" in notes, notes
    assert layout.bridge.metric("bridge_sip_in_dialog_refused_total", method="REFER") == 4


def rtp_packet(seq: int, tone_hz: float) -> bytes:
    t = (np.arange(160) + seq * 160) / 8000
    header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5EC12E7)
    return header + ulaw(8000 * np.sin(2 * np.pi * tone_hz * t))


def flood(target: tuple[str, int], seconds: float, host: str = STRANGER) -> int:
    """A stranger sends RTP (and RTCP) to a call's media ports; what it got back."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((host, 0))
    rtp.setblocking(False)
    got = 0
    deadline = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < deadline:
        rtp.sendto(rtp_packet(seq, STRANGER_HZ), target)
        if seq % 10 == 0:
            rtp.sendto(b"\x81\xc9\x00\x01" + b"\x00" * 4, (target[0], target[1] + 1))
        seq += 1
        with contextlib.suppress(BlockingIOError):
            while rtp.recv(2048):
                got += 1
        time.sleep(0.01)
    time.sleep(0.5)
    with contextlib.suppress(BlockingIOError):
        while rtp.recv(2048):
            got += 1
    rtp.close()
    return got


async def test_media_from_a_stranger_is_dropped_and_the_call_is_unharmed(
    stack: BridgeStack, layout: Layout, alice: MatrixUser, tmp_path: Path
) -> None:
    room = await linked_room(stack, alice)
    phone = DialogPhone(layout.target, NUMBER)
    member = RtcParticipant(alice, room, stack.auth.url, MATRIX_HZ)
    try:
        calling = asyncio.create_task(asyncio.to_thread(phone.call))
        await alice.wait_for_event(room, is_ring_from(GHOST))
        await member.join()
        assert (await calling).code == 200
        # The phone is silent (on hold, or silence suppression): a stranger tries to latch.
        got = await asyncio.to_thread(flood, phone.bridge_media, 3.0)
        assert got == 0
        # The phone talks; the stranger keeps sending: the room hears the phone only.
        phone.media.talking = True
        before = phone.media.received
        got = await asyncio.to_thread(flood, phone.bridge_media, 5.0)
        assert got == 0
        assert phone.media.received - before > 150  # ~50 packets a second to the phone
        ghost = next(i for i in member.heard if i.startswith(GHOST))
        recording = member.recording(ghost)
        assert_heard(recording[-16000 * 4 :], 16000, PHONE_HZ, 3)
        spectrum = np.abs(np.fft.rfft(recording[-16000 * 4 :].astype(float)))
        freqs = np.fft.rfftfreq(16000 * 4, 1 / 16000)

        def near(hz: float) -> float:
            return float(spectrum[(freqs > hz - 20) & (freqs < hz + 20)].max())

        assert near(STRANGER_HZ) < near(PHONE_HZ) / 100, "the stranger's tone was heard"
        assert layout.bridge.metric("bridge_rtp_foreign_packets_total") > 300
        assert codes(await asyncio.to_thread(phone.request, "BYE")) == [200]
    finally:
        await member.close()
        phone.close()
    rows = await ended_records(tmp_path, 1)
    assert "source other than the call's peer was dropped" in (rows[0]["notes"] or "")


async def test_a_phone_behind_nat_is_latched_once_then_fixed(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], alice: MatrixUser
) -> None:
    """Its SDP names a private address it cannot be reached at; its RTP comes from its
    signalling host. The bridge answers there, and only there."""
    bridge = start_bridge()
    room = await linked_room(stack, alice)
    phone = DialogPhone(("127.0.0.1", stack.ports.sip), NUMBER)
    phone.advertised_media = ("10.9.8.7", 4000)
    try:
        calling = asyncio.create_task(asyncio.to_thread(phone.call))
        await alice.wait_for_event(room, is_ring_from(GHOST))
        await join_call(alice, room, service=stack.auth.url)
        assert (await calling).code == 200
        phone.media.talking = True
        await asyncio.sleep(2.5)
        assert phone.media.received > 50  # latched to where the phone really is
        # Another port on the phone's own host, once the source is fixed: dropped.
        got = await asyncio.to_thread(flood, phone.bridge_media, 2.0, "127.0.0.1")
        assert got == 0
        assert bridge.metric("bridge_rtp_foreign_packets_total") > 100
        assert codes(await asyncio.to_thread(phone.request, "BYE")) == [200]
    finally:
        phone.close()
