"""The SIP edge (Kamailio) in front of the workers: one address, load, strangers, peers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.edge.files import write_edge_config
from bridge.sip.message import headers
from tests.conftest import PEER, BridgeStack, EdgeSetup, ended_records, wait_for
from tests.test_inbound_calls import NUMBER, linked_room
from tests.test_outbound_calls import bot_dm, invite_of
from teststack.kamailio import (
    Edge,
    all_workers_active,
    dispatcher_flags,
    edge_layout,
    kamailio_binary,
)
from teststack.matrix_client import MatrixUser
from teststack.rawsip import SDP_OFFER, UdpPeer, ack_of, cancel_of, digest_credentials
from teststack.rtc_user import is_ring_from, join_call, leave_call
from teststack.sipp import (
    invite_expecting,
    phone_call_answered,
    phone_call_cancelled,
    received,
    responses,
    run_sipp,
    start_sipp,
    trunk_answers,
)

STRANGER_HOST = "127.0.0.2"  # the trunk is 127.0.0.1; anyone else is a stranger


async def test_calls_spread_over_workers_by_load_and_a_full_pool_gets_503(
    stack: BridgeStack,
    with_edge: Callable[..., EdgeSetup],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    setup = with_edge(workers=2)
    room = await linked_room(stack, alice)
    ringing = []
    for i in range(8):
        caller = f"+494020000{i}"
        ringing.append(
            start_sipp(
                tmp_path / f"ring{i}",
                phone_call_cancelled(12_000, caller=caller),
                setup.target,
                service=NUMBER,
            )
        )
        await alice.wait_for_event(room, is_ring_from(f"@sip_{caller}:localhost"))
    # Both workers hold four ringing calls: the edge switched them off and answers itself.
    await asyncio.to_thread(
        wait_for, lambda: set(dispatcher_flags(setup.edge).values()) == {"IX"}, 5, "all full"
    )
    ninth = await asyncio.to_thread(
        start_sipp(
            tmp_path / "ninth", invite_expecting(503, caller="+4940999888"), setup.target
        ).wait
    )
    assert ninth.ok, ninth.output
    assert responses(ninth.messages)[-1] == 503
    for process in ringing:
        result = await asyncio.to_thread(process.wait)
        assert result.ok, result.output  # each CANCEL reached the worker ringing that call
    rows = await ended_records(tmp_path, 8)
    assert sorted(r["worker_id"] for r in rows) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert all(r["trunk"] == "local" and r["outcome"] == "cancelled" for r in rows)
    assert all(r["source"].startswith("127.0.0.1:") for r in rows)
    assert not any(r["caller"] == "+4940999888" for r in rows)  # never reached a worker
    # Slots free again: the workers are back in the dispatcher.
    await asyncio.to_thread(wait_for, lambda: all_workers_active(setup.edge), 10, "free again")


async def test_an_answered_call_through_the_edge_ends_on_its_worker(
    stack: BridgeStack,
    with_edge: Callable[..., EdgeSetup],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    setup = with_edge(workers=2)
    room = await linked_room(stack, alice)
    phone = start_sipp(
        tmp_path / "phone",
        phone_call_answered(hang_up_after_ms=1500, routed=True),
        setup.target,
        service=NUMBER,
    )
    await alice.wait_for_event(room, is_ring_from("@sip_+4940111222:localhost"))
    await join_call(alice, room, service=stack.auth.url)
    result = await asyncio.to_thread(phone.wait)
    assert result.ok, result.output
    await leave_call(alice, room)
    rows = await ended_records(tmp_path, 1)
    ok = [m for m in result.messages.split("\n\n") if m.startswith("SIP/2.0 200 OK")]
    assert ok and f"Record-Route: <sip:{setup.target};lr" in ok[0]
    assert [r["outcome"] for r in rows] == ["completed"]


async def test_outbound_calls_leave_through_the_edge(
    stack: BridgeStack,
    with_edge: Callable[..., EdgeSetup],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    setup = with_edge(workers=1)
    trunk = start_sipp(
        tmp_path / "trunk",
        trunk_answers(ring_ms=300, hang_up_after_ms=1000),
        local_port=stack.ports.trunk,
    )
    dm = await bot_dm(stack, bob)
    await bob.send_text(dm, "!sip call +4930777888")
    result = await asyncio.to_thread(trunk.wait)
    assert result.ok, result.output
    invite = headers(invite_of(result.messages).replace("\n", "\r\n"))
    # The trunk sees the edge: it is the last hop, and it stays on the route.
    assert invite["via"].startswith(f"SIP/2.0/UDP {setup.target};")
    assert invite["record-route"].startswith(f"<sip:{setup.target};lr")
    # The trunk's BYE followed that route back to the worker (SIPp got its 200).
    assert (await ended_records(tmp_path, 1))[0]["outcome"] == "completed"


async def test_strangers_are_challenged_and_a_peer_with_sha256_digest_rings_the_room(
    stack: BridgeStack,
    with_edge: Callable[..., EdgeSetup],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    setup = with_edge(workers=1)
    room = await linked_room(stack, alice)
    edge = setup.edge.address
    uri = f"sip:{NUMBER}@{setup.target}"
    with UdpPeer(STRANGER_HOST) as phone:

        def invite(cseq: int, credentials: str = "") -> str:
            extra = "Content-Type: application/sdp"
            if credentials:
                extra += f"\r\nProxy-Authorization: {credentials}"
            return phone.request(
                edge, "INVITE", uri, extra, SDP_OFFER, from_user="desk", call_id="c1", cseq=cseq
            )

        first = phone.ask(edge, invite(1))
        assert [r.code for r in first] == [407]
        challenge = first[0].header("Proxy-Authenticate") or ""
        assert 'realm="localhost"' in challenge and "algorithm=SHA-256" in challenge
        # A wrong password and an unknown user are answered alike: with a new challenge.
        answers = []
        for user, password in [("desk", "wrong password!"), ("nobody", PEER["password"])]:
            credentials = digest_credentials(challenge, "INVITE", uri, user, password)
            replies = phone.ask(edge, invite(2, credentials))
            answers.append([(r.code, sorted(headers(r.text))) for r in replies])
        assert answers[0] == answers[1] and answers[0][0][0] == 407
        credentials = digest_credentials(challenge, "INVITE", uri, "desk", PEER["password"])
        good = invite(3, credentials)
        ringing = phone.ask(edge, good, timeout=10)
        assert ringing[-1].code == 180, [r.code for r in ringing]
        await alice.wait_for_event(room, is_ring_from("@sip_desk:localhost"))
        phone.send(edge, cancel_of(good).encode())
        final = [r for r in phone.replies(10, until_final=False) if r.code == 487]
        assert final
        phone.send(edge, ack_of(good, final[0]).encode())
    rows = await ended_records(tmp_path, 1)
    assert [(r["trunk"], r["caller"], r["outcome"]) for r in rows] == [
        ("peer:desk", "desk", "cancelled")
    ]
    assert rows[0]["source"].startswith(f"{STRANGER_HOST}:")
    assert PEER["password"] not in setup.bridge.log()


async def test_a_worker_called_directly_refuses_when_an_edge_is_configured(
    stack: BridgeStack,
    with_edge: Callable[..., EdgeSetup],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    with_edge(workers=1)
    await linked_room(stack, alice)
    result = await asyncio.to_thread(
        start_sipp(tmp_path / "direct", invite_expecting(403), f"127.0.0.1:{stack.ports.sip}").wait
    )
    assert result.ok, result.output
    rows = await ended_records(tmp_path, 1)
    assert rows[0]["reason"].endswith("called a worker directly, not the SIP edge")


async def test_out_of_dialog_requests_get_answers_a_worker_would_not_give(
    with_edge: Callable[..., EdgeSetup],
) -> None:
    setup = with_edge(workers=1)
    edge = setup.edge.address
    with UdpPeer(STRANGER_HOST) as peer:
        to_edge = f"sip:{setup.target}"
        cases = {
            "OPTIONS": 200,
            "REGISTER": 401,  # challenged, like every REGISTER
            "MESSAGE": 405,
            "SUBSCRIBE": 405,
            "FROBNICATE": 501,
        }
        got = {}
        for method, _expected in cases.items():
            replies = peer.ask(edge, peer.request(edge, method, to_edge, to_user="desk"))
            got[method] = replies[-1].code if replies else None
        assert got == cases
        register = peer.ask(edge, peer.request(edge, "REGISTER", to_edge, to_user="desk"))
        challenge = register[-1].header("WWW-Authenticate") or ""
        credentials = digest_credentials(challenge, "REGISTER", to_edge, "desk", PEER["password"])
        ok = peer.ask(
            edge,
            peer.request(
                edge,
                "REGISTER",
                to_edge,
                f"Authorization: {credentials}\r\nExpires: 300",
                from_user="desk",
                to_user="desk",
            ),
        )
        assert ok[-1].code == 200


@pytest.mark.parametrize(
    "edge_settings",
    [
        {"peers": []},
        {"peers": [PEER], "digest_algorithm": "MD5", "transports": ["udp"]},
        {"peers": [PEER, {"username": "door", "password": "another long secret"}]},
    ],
    ids=["no peers", "MD5 over UDP only", "two peers"],
)
def test_kamailio_accepts_every_config_the_bridge_writes(
    stack: BridgeStack, tmp_path: Path, edge_settings: dict[str, Any]
) -> None:
    config, _ = edge_layout(stack.config, tmp_path / "edge", 5070, 2, **edge_settings)
    edge = Edge(tmp_path, config)
    write_edge_config(edge.config, edge.directory)
    check = subprocess.run(
        [kamailio_binary(), "-c", "-f", str(edge.directory / "kamailio.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr[-2000:]


async def test_a_dead_worker_leaves_the_dispatcher_and_returns_when_restarted(
    with_edge: Callable[..., EdgeSetup], tmp_path: Path
) -> None:
    setup = with_edge(workers=2)
    first = next(w for w in setup.bridge.health()["workers"] if w["id"] == 1)
    os.kill(first["pid"], signal.SIGKILL)
    # The edge stops sending it calls before it is back: they all go to worker 2.
    await asyncio.to_thread(
        wait_for, lambda: dispatcher_flags(setup.edge)["w1"].startswith("I"), 2, "w1 off"
    )
    for i in range(3):
        result = await asyncio.to_thread(
            run_sipp, tmp_path / f"call{i}", setup.target, invite_expecting(404), "+4930999000"
        )
        assert result.ok, result.output
    rows = await ended_records(tmp_path, 3)
    assert [r["worker_id"] for r in rows] == [2, 2, 2]
    # Restarted, it is back in the dispatcher and takes calls again.
    await asyncio.to_thread(wait_for, lambda: all_workers_active(setup.edge), 15, "w1 back")
    assert setup.bridge.health()["workers"][0]["pid"] != first["pid"]


async def test_a_worker_that_cannot_decide_in_time_gives_503_with_retry_after(
    stack: BridgeStack, with_edge: Callable[..., EdgeSetup], alice: MatrixUser, tmp_path: Path
) -> None:
    # A controller too slow to decide (overload) makes the worker answer 503; the phone gets
    # 503 with a time to retry, not the 500 a proxy would make of it.
    setup = with_edge(workers=1, bridge_env={"SIPBRIDGE_SIP__DECISION_TIMEOUT": "0.001"})
    await linked_room(stack, alice)
    result = await asyncio.to_thread(
        start_sipp(tmp_path / "late", invite_expecting(503), setup.target, service=NUMBER).wait
    )
    assert result.ok, result.output
    final = next(m for m in received(result.messages) if m.startswith("SIP/2.0 503"))
    assert headers(final.replace("\n", "\r\n"))["retry-after"] == "30"
