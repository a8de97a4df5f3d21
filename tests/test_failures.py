"""Failures under a live bridge: the database, the homeserver, a phone that vanished."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

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
from teststack.bridge_process import BridgeProcess
from teststack.matrix_client import MatrixUser
from teststack.postgres import Postgres
from teststack.rtc_user import is_membership_of, is_ring_from, join_call
from teststack.sipp import (
    headers_of,
    invite_expecting,
    phone_call_answered,
    received,
    responses,
    start_sipp,
)


async def pg_records(postgres: Postgres, database: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=postgres.port, user="postgres", database=database
    )
    try:
        rows = await conn.fetch("SELECT * FROM calls ORDER BY started_at")
        return [dict(r) for r in rows]
    finally:
        await conn.close()


async def test_postgres_stopped_mid_call_live_calls_continue_and_no_record_is_lost(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    postgres: Postgres,
    tmp_path: Path,
) -> None:
    database = f"outage_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(database)
    bridge = start_bridge({"SIPBRIDGE_DATABASE__URL": url})
    room = await linked_room(stack, alice)
    live = start_sipp(
        tmp_path / "live",
        phone_call_answered(9000, caller=CALLER),
        f"127.0.0.1:{stack.ports.sip}",
        service=NUMBER,
    )
    await alice.wait_for_event(room, is_ring_from(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    await asyncio.sleep(1.5)
    postgres.stop(mode="immediate")
    try:
        # New calls cannot be recorded, so they are refused, with a time to come back.
        refused = await asyncio.to_thread(
            start_sipp(
                tmp_path / "late",
                invite_expecting(503, caller="+4940999000"),
                f"127.0.0.1:{stack.ports.sip}",
                service=NUMBER,
            ).wait
        )
        assert refused.ok, refused.output
        assert responses(refused.messages)[-1] == 503
        # The live call carries on, and ends normally.
        result = await asyncio.to_thread(live.wait)
        assert result.ok, result.output
        assert bridge.process.running()
        health = bridge.health()
        assert health["healthy"] is False and "unreachable" in health["database"]
    finally:
        postgres.restart()
    # Both records reach the database once it is back.
    deadline = time.monotonic() + 30
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = await pg_records(postgres, database)
        by_caller = {r["caller"]: r for r in records}
        if by_caller.get(CALLER, {}).get("state") == "ended" and "+4940999000" in by_caller:
            break
        await asyncio.sleep(0.5)
    by_caller = {r["caller"]: r for r in records}
    assert by_caller[CALLER]["outcome"] == "completed", records
    assert (by_caller["+4940999000"]["outcome"], by_caller["+4940999000"]["sip_code"]) == (
        "unavailable",
        503,
    )
    # And the bridge takes calls again.
    again = await asyncio.to_thread(
        start_sipp(
            tmp_path / "again",
            invite_expecting(404, caller="+4940999111"),
            f"127.0.0.1:{stack.ports.sip}",
            service="+4930000404",
        ).wait
    )
    assert again.ok, again.output
    assert bridge.health()["healthy"] is True


async def test_homeserver_down_for_a_minute_events_arrive_afterwards_in_order_and_once(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, phone_call_answered(8000, caller=CALLER))
    joined = await alice.wait_for_event(room, is_membership_of(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    await asyncio.sleep(1.5)  # answered and confirmed
    stack.synapse.stop()
    down_since = time.monotonic()
    try:
        # The phone hangs up while the homeserver is away: the SIP side does not wait for it.
        result = await asyncio.to_thread(sipp.wait)
        assert result.ok, result.output
        assert time.monotonic() - down_since < 20
        assert records(tmp_path)[-1]["state"] != "ended"  # its notice is still to be sent
        await asyncio.sleep(max(0.0, 60 - (time.monotonic() - down_since)))
    finally:
        stack.synapse.restart()
    # mautrix backs off 4, 8, 16, 32, 64 s: the retry after the restart lands within ~70 s.
    notice = "Call with SIPp (+4940111222) — 0:08"
    await alice.wait_for_event(room, notice_text(notice), timeout=150)
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed"
    # The record holds when the call ended, not when the homeserver came back.
    lasted = datetime.fromisoformat(record["ended_at"]) - datetime.fromisoformat(
        record["answered_at"]
    )
    assert 7 <= lasted.total_seconds() <= 10, record

    events = await alice.messages(room)
    ghost_members = [
        e for e in events if e["type"] == CALL_MEMBER and e["state_key"] == joined["state_key"]
    ]
    assert [bool(e["content"]) for e in ghost_members] == [True, False], ghost_members
    notices = [i for i, e in enumerate(events) if notice_text(notice)(e)]
    assert len(notices) == 1
    assert events.index(ghost_members[-1]) < notices[0], "the leave comes before the notice"
    assert await alice.state(room, CALL_MEMBER, joined["state_key"]) == {}


async def test_a_call_nobody_refreshes_is_ended_by_its_session_timer(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    # No RTP checks: the session timer alone must find the dead call.
    start_bridge({"SIPBRIDGE_MEDIA__RTP_TIMEOUT": "0"})
    room = await linked_room(stack, alice)
    # The phone asks for 90 s session timers, refreshed by itself, then never refreshes
    # (as a phone that lost power would).
    sipp = phone(
        stack,
        tmp_path,
        phone_call_answered(
            None,
            caller=CALLER,
            invite_headers=("Supported: timer", "Session-Expires: 90;refresher=uac"),
            bye_timeout_ms=120_000,
        ),
    )
    joined = await alice.wait_for_event(room, is_membership_of(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    answered = time.monotonic()
    result = await asyncio.to_thread(sipp.wait)
    lasted = time.monotonic() - answered
    assert result.ok, result.output
    ok = next(m for m in received(result.messages) if m.startswith("SIP/2.0 200"))
    assert headers_of(ok)["session-expires"].replace(" ", "") == "90;refresher=uac"
    assert any(m.startswith("BYE ") for m in received(result.messages))
    # RFC 4028 §10: the side that does not refresh sends its BYE a third before expiry.
    assert 50 <= lasted <= 92, f"BYE after {lasted:.0f} s"
    # And the Matrix side of the call ends with it.
    await alice.wait_for_event(room, is_membership_of(GHOST, joined=False), timeout=30)
    assert await alice.state(room, CALL_MEMBER, joined["state_key"]) == {}
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed", record
    assert "no session refresh" in record["reason"] and "ended by the SIP stack" in record["reason"]
