"""Dependencies failing under a live bridge: the database, the homeserver."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import BridgeStack
from tests.test_inbound_calls import CALLER, GHOST, NUMBER, linked_room
from teststack.bridge_process import BridgeProcess
from teststack.matrix_client import MatrixUser
from teststack.postgres import Postgres
from teststack.rtc_user import is_ring_from, join_call
from teststack.sipp import invite_expecting, phone_call_answered, responses, start_sipp


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
