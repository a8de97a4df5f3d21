"""Calls across failures and shutdowns: crashes, restarts, draining, capacity, trunks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bridge.matrix.rtc import CALL_MEMBER
from tests.conftest import BridgeStack, records
from tests.test_inbound_calls import (
    CALLER,
    GHOST,
    NUMBER,
    ended_record,
    linked_room,
    notice_text,
    phone,
)
from tests.test_matrix_bot import notice_from
from teststack.bridge_process import BridgeProcess
from teststack.js_sdk import rtc_view
from teststack.matrix_client import MatrixUser
from teststack.procs import pid_alive
from teststack.rtc_user import is_membership_of, is_ring_from, join_call
from teststack.sipp import (
    headers_of,
    invite_expecting,
    phone_call_answered,
    phone_call_cancelled,
    received,
    registrar,
    responses,
    start_sipp,
)


async def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until the (async or plain) predicate holds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} not within {timeout} s")


async def test_controller_killed_mid_call_ghost_leaves_by_itself_and_restart_reconciles(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    bridge = start_bridge()
    workers = bridge.worker_pids()
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, phone_call_answered(hang_up_after_ms=None, caller=CALLER))
    membership = await alice.wait_for_event(room, is_membership_of(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    await asyncio.sleep(1.5)  # answered and confirmed
    bridge.process.kill()

    async def ghost_left() -> bool:
        return bool(await alice.state(room, CALL_MEMBER, membership["state_key"]) == {})

    took = await wait_for(ghost_left, 20, "the ghost's delayed leave")
    assert took <= 15, f"the ghost stayed {took:.1f} s in the call"
    view = await asyncio.to_thread(rtc_view, stack.synapse.url, alice.user_id, "pw", room)
    assert view.members() == {"@alice:localhost"}
    # The workers noticed the controller was gone and ended their SIP legs.
    await wait_for(lambda: not any(pid_alive(p) for p in workers), 10, "workers exiting")
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert any(m.startswith("BYE ") for m in received(result.messages))
    assert records(tmp_path)[-1]["state"] != "ended"  # nobody could close it yet

    start_bridge()
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["reason"]) == (
        "failed",
        "the bridge restarted while the call was up",
    )
    await alice.wait_for_event(
        room, notice_text("Call with SIPp (+4940111222) was cut off (the bridge restarted)")
    )
    assert await alice.state(room, CALL_MEMBER, membership["state_key"]) == {}


async def test_a_killed_worker_ends_only_its_calls(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    bridge = start_bridge({"SIPBRIDGE_WORKERS__COUNT": "2"})
    pids = {w["id"]: w["pid"] for w in bridge.health()["workers"]}
    room_one = await linked_room(stack, alice, NUMBER)
    room_two = await linked_room(stack, alice, "+4930999000")
    doomed = start_sipp(
        tmp_path / "one",
        phone_call_answered(None, caller=CALLER),
        f"127.0.0.1:{stack.ports.sip}",
        service=NUMBER,
        timeout=30,
    )
    other_caller = "+4940333444"
    survivor = start_sipp(
        tmp_path / "two",
        phone_call_answered(1500, caller=other_caller),
        f"127.0.0.1:{stack.ports.sip + 1}",
        service="+4930999000",
    )
    await alice.wait_for_event(room_one, is_ring_from(GHOST))
    await alice.wait_for_event(room_two, is_ring_from(f"@sip_{other_caller}:localhost"))
    os.kill(pids[1], signal.SIGKILL)
    await alice.wait_for_event(
        room_one, notice_text("Call with SIPp (+4940111222) was cut off (the bridge lost it)")
    )
    await alice.wait_for_event(room_one, is_membership_of(GHOST, joined=False))
    doomed.kill()
    # The other worker's call is untouched: it can still be answered and finished.
    await join_call(alice, room_two, service=stack.auth.url)
    result = await asyncio.to_thread(survivor.wait)
    assert result.ok, result.output
    rows = {r["callee"]: r for r in records(tmp_path)}
    assert rows[NUMBER]["outcome"] == "failed"
    assert rows[NUMBER]["reason"] == "call worker lost: killed by signal 9"

    def survivor_record() -> dict[str, object]:
        return next(r for r in records(tmp_path) if r["callee"] == "+4930999000")

    await wait_for(lambda: survivor_record()["state"] == "ended", 10, "the survivor's record")
    assert survivor_record()["outcome"] == "completed"


async def test_sigterm_drains_new_calls_get_503_and_live_calls_finish(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    bridge = start_bridge()
    room = await linked_room(stack, alice)
    live = phone(stack, tmp_path, phone_call_answered(hang_up_after_ms=4000, caller=CALLER))
    await alice.wait_for_event(room, is_ring_from(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    await asyncio.sleep(0.5)
    bridge.process.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    await asyncio.sleep(0.5)
    refused = await asyncio.to_thread(
        start_sipp(
            tmp_path / "late",
            invite_expecting(503, caller="+4940999999"),
            f"127.0.0.1:{stack.ports.sip}",
            service=NUMBER,
        ).wait
    )
    assert refused.ok, refused.output
    assert responses(refused.messages)[-1] == 503
    final = next(m for m in received(refused.messages) if m.startswith("SIP/2.0 503"))
    assert headers_of(final)["retry-after"] == "60"
    assert bridge.process.running()  # still serving the live call
    result = await asyncio.to_thread(live.wait)
    assert result.ok, result.output
    code = await asyncio.to_thread(bridge.process.proc.wait, 20)  # type: ignore[union-attr]
    assert code == 0
    record = next(r for r in records(tmp_path) if r["caller"] == CALLER)
    assert record["outcome"] == "completed"


async def test_a_full_worker_refuses_the_fifth_call_with_486(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    ringing = []
    for i in range(4):
        caller = f"+494010000{i}"
        ringing.append(
            start_sipp(
                tmp_path / f"ring{i}",
                phone_call_cancelled(8000, caller=caller),
                f"127.0.0.1:{stack.ports.sip}",
                service=NUMBER,
            )
        )
        await alice.wait_for_event(room, is_ring_from(f"@sip_{caller}:localhost"))
    fifth = await asyncio.to_thread(
        start_sipp(
            tmp_path / "fifth",
            invite_expecting(486, caller="+4940999888"),
            f"127.0.0.1:{stack.ports.sip}",
            service=NUMBER,
        ).wait
    )
    assert fifth.ok, fifth.output
    assert responses(fifth.messages) == [486]
    for process in ringing:
        result = await asyncio.to_thread(process.wait)
        assert result.ok, result.output
    refused = [r for r in records(tmp_path) if r["caller"] == "+4940999888"]
    assert refused and refused[0]["sip_code"] == 486 and refused[0]["outcome"] == "busy"
    assert refused[0]["reason"].startswith("refused by the SIP stack")


async def test_trunk_registers_with_digest_and_status_shows_it(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    trunk = {
        "name": "provider",
        "host": "127.0.0.1",
        "port": stack.ports.trunk,
        "username": "4930555000",
        "password": "s3cret",
        "register": True,
        "register_interval": 300,
        "allowed_sources": ["127.0.0.1/32"],
    }
    wrong = {**trunk, "name": "wrongpw", "password": "guess", "port": stack.ports.trunk + 1}
    good = start_sipp(
        tmp_path / "good", registrar("4930555000", "s3cret"), local_port=stack.ports.trunk
    )
    bad = start_sipp(
        tmp_path / "bad", registrar("4930555000", "s3cret"), local_port=stack.ports.trunk + 1
    )
    bridge = start_bridge({"SIPBRIDGE_SIP__TRUNKS": json.dumps([trunk, wrong])})
    assert (await asyncio.to_thread(good.wait)).ok
    await asyncio.to_thread(bad.wait)
    room = await bob.create_room(invite=[stack.bot], is_direct=True)
    await bob.wait_for_membership(room, stack.bot, "join")
    await bob.send_text(room, "!sip status")
    reply = await bob.wait_for_event(room, notice_from(stack.bot, "Trunks:"))
    body = reply["content"]["body"]
    assert "provider: registered 200 OK" in body
    assert "wrongpw: failed 403 Forbidden" in body
    assert "s3cret" not in bridge.log() and "guess" not in bridge.log()
