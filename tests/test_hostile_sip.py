"""What a public SIP port receives: torture messages, scanners, password guessing, floods,
toll fraud. Real Kamailio, SIPVicious, SIPp and the bridge, on loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import PEER, BridgeStack, EdgeSetup, ended_records, records, wait_for
from tests.test_inbound_calls import linked_room
from tests.test_matrix_bot import notice_from
from tests.test_outbound_calls import bot_dm
from teststack.bridge_process import BridgeProcess
from teststack.kamailio import all_workers_active
from teststack.matrix_client import MatrixUser
from teststack.rawsip import SDP_OFFER, UdpPeer, digest_credentials
from teststack.sipp import headers_of, invite_expecting, received, run_sipp

CORPUS = Path(__file__).parent / "data" / "rfc4475"
SIPVICIOUS = Path(sys.executable).parent
NOBODY = "127.0.0.5/32"  # a trunk address nothing here sends from: every local peer is a stranger

# The answer RFC 4475 gives for each message, as a stranger would get it from the edge: a
# valid INVITE or REGISTER is challenged (407/401), as nobody may call in unauthenticated.
# None: a response, which is dropped. Sets: the RFC allows either.
EXPECTED: dict[str, set[int] | None] = {
    # 3.1.1 valid messages
    "wsinv": {407},
    "intmeth": {501, 405},
    "esc01": {407},
    "escnull": {401},
    "esc02": {501, 405},
    "lwsdisp": {200},
    "longreq": {407},
    "dblreq": {401},
    "semiuri": {200},
    "transports": {200},
    "mpart01": {405},
    "unreason": None,
    "noreason": None,
    # 3.1.2 invalid messages
    "badinv01": {400},
    "clerr": {400},
    "ncl": {400},
    "scalar02": {400},
    "scalarlg": None,
    "quotbal": {400},
    "ltgtruri": {400},
    "lwsruri": {400},
    "lwsstart": {400},
    "trws": {400, 200},
    "escruri": {400, 407},
    "baddate": {407},
    "regbadct": {400},
    "badaspec": {400},
    "baddn": {400},
    "badvers": {505},
    "mismatch01": {400},
    "mismatch02": {501, 400},
    "bigcode": None,
    # 3.2 transaction layer
    "badbranch": {200},
    # 3.3 application layer
    "insuf": {400},
    "unkscm": {416},
    "novelsc": {416},
    "unksm2": {400, 401, 416},
    "bext01": {420},
    "invut": {415},
    "regaut01": {401},
    "multi01": {400},
    "mcl01": {400},
    "bcast": None,
    "zeromf": {200, 483},
    "cparam01": {401},
    "cparam02": {401},
    "regescrt": {401},
    "sdp01": {406},
    # 3.4 backward compatibility
    "inv2543": {407},
}
# Where the edge still differs from the RFC, and why.
KNOWN_GAPS = {"wsinv": "Kamailio 5.6's parser refuses its folded CSeq header, so it gets 400"}


def send_corpus(target: tuple[str, int], host: str = "127.0.0.1") -> dict[str, int | None]:
    """Each message once, as its own datagram; the final answer to each (None: none)."""
    answers: dict[str, int | None] = {}
    with UdpPeer(host) as peer:
        for path in sorted(CORPUS.glob("*.dat")):
            peer.send(target, path.read_bytes())
            replies = peer.replies(0.7 if EXPECTED[path.stem] is None else 2.0)
            answers[path.stem] = replies[-1].code if replies else None
    return answers


def worker_pids(bridge: BridgeProcess) -> dict[int, int]:
    return {w["id"]: w["pid"] for w in bridge.health()["workers"]}


async def bot_rooms(stack: BridgeStack) -> set[str]:
    async with MatrixUser(stack.synapse.url, stack.bot, stack.tokens["as_token"]) as bot:
        return set((await bot.request("GET", "/v3/joined_rooms"))["joined_rooms"])


async def test_rfc4475_messages_get_the_answers_the_rfc_gives(
    stack: BridgeStack, with_edge: Callable[..., EdgeSetup], tmp_path: Path
) -> None:
    setup = with_edge(workers=1, trunk_sources=[NOBODY])
    pids = worker_pids(setup.bridge)
    rooms = await bot_rooms(stack)
    answers = await asyncio.to_thread(send_corpus, setup.edge.address)
    assert set(answers) == set(EXPECTED)  # all 49 messages of the RFC were sent
    wrong = {
        name: answers[name]
        for name, expected in EXPECTED.items()
        if (answers[name] is not None if expected is None else answers[name] not in expected)
    }
    assert set(wrong) == set(KNOWN_GAPS), wrong
    # Nothing reached a worker, nothing crashed, no call and no room was made.
    assert worker_pids(setup.bridge) == pids
    assert records(tmp_path) == []
    assert await bot_rooms(stack) == rooms


async def test_torture_from_a_trunk_reaches_workers_and_harms_nothing(
    stack: BridgeStack, with_edge: Callable[..., EdgeSetup], alice: MatrixUser, tmp_path: Path
) -> None:
    setup = with_edge(workers=2)
    await linked_room(stack, alice)
    pids = worker_pids(setup.bridge)
    rooms = await bot_rooms(stack)
    answers = await asyncio.to_thread(send_corpus, setup.edge.address)
    # The valid INVITEs a trunk sent went on to a worker, which found no such number (or,
    # for the RFC 2543 one without a Contact, refused it itself); every record is closed.
    assert {name for name, code in answers.items() if code == 404} >= {"esc01", "longreq"}
    await asyncio.sleep(2)
    rows = records(tmp_path)
    assert len(rows) >= 4 and all(r["state"] == "ended" for r in rows), rows
    assert {r["outcome"] for r in rows} == {"rejected"}
    assert worker_pids(setup.bridge) == pids
    assert await bot_rooms(stack) == rooms
    after = await asyncio.to_thread(
        run_sipp, tmp_path / "after", setup.target, invite_expecting(404), "+4930999000"
    )
    assert after.ok, after.output


async def test_torture_straight_at_a_worker_without_an_edge_harms_nothing(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    bridge = start_bridge()
    await linked_room(stack, alice)
    pids = worker_pids(bridge)
    rooms = await bot_rooms(stack)
    # pjsua answers to the Via of each message (TEST-NET addresses): nobody hears it.
    await asyncio.to_thread(send_corpus, ("127.0.0.1", stack.ports.sip))
    await asyncio.sleep(2)
    assert worker_pids(bridge) == pids
    assert all(r["state"] == "ended" for r in records(tmp_path))
    assert await bot_rooms(stack) == rooms
    after = await asyncio.to_thread(
        run_sipp,
        tmp_path / "after",
        f"127.0.0.1:{stack.ports.sip}",
        invite_expecting(404),
        "+4930999000",
    )
    assert after.ok, after.output


def sipvicious(tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIPVICIOUS / f"sipvicious_{tool}"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_svwar_finds_no_extension(with_edge: Callable[..., EdgeSetup]) -> None:
    peers = [{"username": str(n), "password": f"password-of-{n}-x"} for n in (2001, 2002)]
    setup = with_edge(workers=1, trunk_sources=[NOBODY], peers=peers, flood_requests=5000)
    for method in ("REGISTER", "INVITE", "OPTIONS"):
        scan = await asyncio.to_thread(
            sipvicious, "svwar", "--force", "-m", method, "-e", "1990-2010", f"udp://{setup.target}"
        )
        output = scan.stdout + scan.stderr
        assert "found nothing" in output, output
        assert "2001" not in scan.stdout and "2002" not in scan.stdout, output


async def test_svcrack_is_throttled_before_it_reaches_the_password(
    with_edge: Callable[..., EdgeSetup], tmp_path: Path
) -> None:
    password = "tr0ub4dor&3xyz"
    setup = with_edge(
        workers=1,
        trunk_sources=[NOBODY],
        peers=[{"username": "2001", "password": password}],
        digest_algorithm="MD5",  # what svcrack can compute: only the throttle stands in its way
        auth_failures=5,
        block_seconds=120,
    )
    near = tmp_path / "near.txt"
    near.write_text("\n".join(["123456", "2001", password]) + "\n")
    far = tmp_path / "far.txt"
    far.write_text("\n".join([f"guess{i}" for i in range(12)] + [password]) + "\n")
    target = f"udp://{setup.target}"
    # Within the allowance of failed attempts svcrack finds it: the test can see a crack.
    control = await asyncio.to_thread(sipvicious, "svcrack", "-u", "2001", "-d", str(near), target)
    assert password in control.stdout, control.stdout + control.stderr
    attack = await asyncio.to_thread(
        sipvicious, "svcrack", "-u", "2001", "-d", str(far), "--maximumtime", "5", target
    )
    assert password not in attack.stdout + attack.stderr
    assert "found nothing" in attack.stderr, attack.stdout + attack.stderr
    assert "failed authentication 5 times; blocking it" in setup.edge.process.log_tail(400)
    with UdpPeer() as blocked, UdpPeer("127.0.0.3") as other:
        edge = setup.edge.address
        assert blocked.ask(edge, blocked.request(edge, "OPTIONS", f"sip:{setup.target}"), 1) == []
        assert other.ask(edge, other.request(edge, "OPTIONS", f"sip:{setup.target}"))[0].code == 200


async def test_a_flood_is_cut_off_and_trunks_are_not(
    with_edge: Callable[..., EdgeSetup],
) -> None:
    setup = with_edge(workers=1, flood_requests=20, flood_window=2)
    edge = setup.edge.address

    def burst(peer: UdpPeer, count: int) -> int:
        """Send `count` OPTIONS in a second and a half; how many were answered."""
        answered = 0
        for i in range(count):
            peer.send(edge, peer.request(edge, "OPTIONS", f"sip:{setup.target}").encode())
            if i % 10 == 9:  # read as we go: a full socket buffer would lose answers
                answered += len(peer.replies(0.1, until_final=False))
        return answered + len(peer.replies(1.0, until_final=False))

    with UdpPeer("127.0.0.2") as stranger, UdpPeer() as trunk:
        answered = await asyncio.to_thread(burst, stranger, 150)
        assert 0 < answered < 60, answered
        assert await asyncio.to_thread(burst, stranger, 1) == 0  # still ignored
        assert await asyncio.to_thread(burst, trunk, 150) == 150  # the trunk never is


async def test_toll_fraud_battery_places_no_outbound_call(
    stack: BridgeStack,
    with_edge: Callable[..., EdgeSetup],
    bob: MatrixUser,
    mallory: MatrixUser,
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    setup = with_edge(workers=1)
    edge = setup.edge.address
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the trunk we dial out to
    listener.bind(("127.0.0.1", stack.ports.trunk))
    listener.settimeout(0.2)
    targets = ["+19005550100", "+881234567", "0090123456", "+4990012345"]
    try:
        with UdpPeer("127.0.0.2") as stranger, UdpPeer() as trunk:
            for number in targets:
                uri = f"sip:{number}@{setup.target}"
                extra = "Content-Type: application/sdp"
                # A stranger, with and without a caller id: challenged, nothing more.
                for caller in ("mallory", "anonymous"):
                    invite = stranger.request(edge, "INVITE", uri, extra, SDP_OFFER, caller)
                    assert [r.code for r in stranger.ask(edge, invite)] == [407]
                # A phone that authenticates reaches Matrix, never the trunk: no such room.
                first = stranger.ask(edge, stranger.request(edge, "INVITE", uri, extra, SDP_OFFER))
                challenge = first[0].header("Proxy-Authenticate") or ""
                creds = digest_credentials(
                    challenge, "INVITE", uri, PEER["username"], PEER["password"]
                )
                peer_invite = stranger.request(
                    edge, "INVITE", uri, f"{extra}\r\nProxy-Authorization: {creds}", SDP_OFFER
                )
                assert stranger.ask(edge, peer_invite, 10)[-1].code == 404
                # The trunk itself, calling those numbers: not a room either.
                trunk_invite = trunk.request(edge, "INVITE", uri, extra, SDP_OFFER)
                assert trunk.ask(edge, trunk_invite, 10)[-1].code == 404
        # Matrix users: blocked prefixes, and a user without permission.
        dm = await bot_dm(stack, bob)
        for number in ("+49900123456", "+881234567"):
            await bob.send_text(dm, f"!sip call {number}")
            await bob.wait_for_event(dm, notice_from(stack.bot, "matches the blocked pattern"))
        room = await alice.create_room(invite=[stack.bot, mallory.user_id])
        await alice.wait_for_membership(room, stack.bot, "join")
        await mallory.join(room)
        await mallory.send_text(room, "!sip call +4930666777")
        await alice.wait_for_event(room, notice_from(stack.bot, "not permitted"))
        got = drain(listener, 2.0)
        assert got == [], got
        # The listener does see a permitted call: the battery could have caught one.
        await bob.send_text(dm, "!sip call +4930666777")
        got = drain(listener, 10.0, until_first=True)
        assert got and got[0].startswith(b"INVITE sip:+4930666777@"), got
    finally:
        listener.close()
    rows = records(tmp_path)
    assert all(r["direction"] == "inbound" or r["callee"] == "+4930666777" for r in rows)


def drain(sock: socket.socket, seconds: float, until_first: bool = False) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            got.append(sock.recv(65535))
            if until_first:
                break
    return got


async def test_sdes_keys_are_refused_over_plain_udp(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    await linked_room(stack, alice)
    offer = SDP_OFFER.replace("RTP/AVP 0 8", "RTP/SAVP 0 8") + (
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    )
    worker = ("127.0.0.1", stack.ports.sip)
    with UdpPeer() as trunk:
        invite = trunk.request(
            worker,
            "INVITE",
            f"sip:+4930123456@{worker[0]}:{worker[1]}",
            "Content-Type: application/sdp",
            offer,
        )
        replies = await asyncio.to_thread(trunk.ask, worker, invite, 10)
    assert replies and replies[-1].code == 488, [r.code for r in replies]
    assert "a=crypto" not in replies[-1].text
    rows: list[dict[str, Any]] = records(tmp_path)
    assert all(r["state"] == "ended" for r in rows)


async def test_an_invite_flood_from_a_trunk_aborts_no_worker_and_leaks_no_slot(
    with_edge: Callable[..., EdgeSetup], tmp_path: Path
) -> None:
    # pjsua2 has been seen to abort under ~100 INVITEs/s (DESIGN §7); trunks are not rate
    # limited by the edge, so the workers themselves must hold.
    setup = with_edge(workers=2)
    pids = worker_pids(setup.bridge)
    flood = await asyncio.to_thread(
        run_sipp,
        tmp_path / "flood",
        setup.target,
        invite_expecting(404),
        "+4930999000",
        calls=400,
        rate=100,
        timeout=60,
    )
    # Each INVITE is answered: 404 by a worker, or 503 with Retry-After by the edge (over its
    # new-call meter, or both workers busy), never left hanging.
    finals: dict[str, tuple[int, dict[str, str]]] = {}
    for message in received(flood.messages):
        if message.startswith("SIP/2.0 ") and int(message[8:11]) >= 300:
            fields = headers_of(message)
            finals[fields["call-id"]] = (int(message[8:11]), fields)
    assert len(finals) == 400
    refused = [f for code, f in finals.values() if code == 503]
    assert all(f.get("server") == "sip-edge" and "retry-after" in f for f in refused)
    assert sum(code == 404 for code, _ in finals.values()) == flood.successful > 0
    assert flood.successful + len(refused) == 400
    assert worker_pids(setup.bridge) == pids
    rows = await ended_records(tmp_path, flood.successful)  # all of them closed
    assert {r["outcome"] for r in rows} == {"rejected"}
    await asyncio.to_thread(
        wait_for, lambda: all_workers_active(setup.edge), 5, "workers back in the dispatcher"
    )
    workers = setup.bridge.health()["workers"]
    assert [(w["capacity"], w["active_calls"]) for w in workers] == [(4, 0), (4, 0)], workers
