"""Repositories and migrations against SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.matrix.inbox import AwaitingKeyError, InboxProcessor, PermanentEventError
from bridge.storage.calls import CallStore
from bridge.storage.database import Database, StorageError
from bridge.storage.inbox import InboxStore
from bridge.storage.models import CallRecord, utcnow
from bridge.storage.numbers import NumberStore
from bridge.storage.trunks import TrunkStateStore
from teststack import ROOT
from teststack.postgres import Postgres


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: Postgres
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    database = Database(url)
    await database.upgrade()
    yield database
    await database.close()


def event(room: str, n: int, **content: Any) -> dict[str, Any]:
    return {
        "event_id": f"${room}-{n}",
        "room_id": room,
        "type": "m.room.message",
        "sender": "@alice:localhost",
        "content": {"n": n, **content},
    }


async def test_migrations_reach_head(db: Database) -> None:
    assert await db.current_revision() == Database.head_revision()
    # Running them again changes nothing.
    await db.upgrade()
    assert await db.current_revision() == Database.head_revision()


async def test_call_records_open_finish_once(db: Database) -> None:
    calls = CallStore(db)
    record = CallRecord(
        id="c1",
        direction="inbound",
        state="ringing",
        caller="+49401",
        callee="+49301",
        worker_id=2,
        started_at=utcnow(),
    )
    await calls.create(record)
    await calls.create(
        CallRecord(
            id="c2",
            direction="outbound",
            state="ringing",
            caller="@a:hs",
            callee="+1",
            worker_id=1,
            started_at=utcnow(),
        )
    )
    assert [r.id for r in await calls.open_calls(worker_id=2)] == ["c1"]
    await calls.finish("c1", "completed", sip_code=200, reason="hung up", q850_cause=16)
    await calls.finish("c1", "failed", reason="a later, wrong report")
    stored = await calls.get("c1")
    assert stored is not None
    assert (stored.state, stored.outcome, stored.sip_code, stored.q850_cause) == (
        "ended",
        "completed",
        200,
        16,
    )
    assert stored.ended_at is not None and stored.ended_at.tzinfo is not None
    assert [r.id for r in await calls.open_calls()] == ["c2"]
    assert [r.id for r in await calls.recent()] == ["c2", "c1"]


async def test_transactions_store_once_and_skip_repeated_events(db: Database) -> None:
    inbox = InboxStore(db)
    assert await inbox.store_transaction("t1", [event("!a", 1), event("!a", 2)])
    assert not await inbox.store_transaction("t1", [event("!a", 1), event("!a", 2)])
    # The homeserver may put an event it sent already into a new transaction.
    assert await inbox.store_transaction("t2", [event("!a", 2), event("!b", 1)])
    assert await inbox.count_by_status() == {"pending": 3}
    assert sorted(await inbox.rooms_with_pending()) == ["!a", "!b"]
    first = await inbox.next_pending("!a")
    assert first is not None and first.event["content"]["n"] == 1
    await inbox.mark_done(first.id)
    second = await inbox.next_pending("!a")
    assert second is not None and second.event_id == "$!a-2"
    await inbox.park(second.id, "broken")
    assert await inbox.next_pending("!a") is None
    assert [p.last_error for p in await inbox.parked()] == ["broken"]
    await inbox.prune(timedelta(seconds=-1))
    assert await inbox.count_by_status() == {"pending": 1, "parked": 1}


async def test_numbers_and_trunk_states(db: Database) -> None:
    numbers = NumberStore(db)
    await numbers.link("+4930123", "!room:hs", "@admin:hs")
    await numbers.link("+4930123", "!other:hs", "@admin:hs")
    assert await numbers.room_for("+4930123") == "!other:hs"
    assert await numbers.unlink("+4930123")
    assert not await numbers.unlink("+4930123")
    assert await numbers.room_for("+4930123") is None
    trunks = TrunkStateStore(db)
    await trunks.set("provider", "registered", 200, "OK")
    await trunks.set("provider", "failed", 403, "Forbidden")
    states = await trunks.all()
    assert [(t.name, t.registration, t.status_code) for t in states] == [
        ("provider", "failed", 403)
    ]


async def test_inbox_processes_in_order_per_room_retries_and_parks(db: Database) -> None:
    inbox = InboxStore(db)
    handled: list[str] = []
    failures = {"$!a-1": 2}

    async def handler(raw: dict[str, Any]) -> None:
        event_id = raw["event_id"]
        if raw["content"].get("malformed"):
            raise PermanentEventError("no such thing")
        if raw["content"].get("always_fails"):
            raise RuntimeError("homeserver said no")
        if failures.get(event_id, 0) > 0:
            failures[event_id] -= 1
            raise RuntimeError("try again")
        handled.append(event_id)

    processor = InboxProcessor(inbox, handler, max_attempts=3, base_delay=0.05, max_delay=0.2)
    await inbox.store_transaction(
        "t1",
        [
            event("!a", 1),
            event("!a", 2),
            event("!b", 1, always_fails=True),
            event("!b", 2),
            event("!c", 1, malformed=True),
            event("!c", 2),
        ],
    )
    await processor.start()
    try:
        for _ in range(200):
            if len(handled) == 4:
                break
            await asyncio.sleep(0.05)
    finally:
        await processor.stop()
    assert handled.index("$!a-1") < handled.index("$!a-2")
    assert handled.index("$!b-2") >= 0 and handled.index("$!c-2") >= 0
    # Room !c was not held up by room !a's retries.
    assert handled.index("$!c-2") < handled.index("$!a-1")
    parked = {p.event_id: p for p in await inbox.parked()}
    assert set(parked) == {"$!b-1", "$!c-1"}
    assert parked["$!b-1"].attempts == 3 and "homeserver said no" in str(parked["$!b-1"].last_error)
    assert parked["$!c-1"].attempts == 1


async def test_an_event_awaiting_its_room_key_steps_aside_and_comes_back(db: Database) -> None:
    inbox = InboxStore(db)
    handled: list[str] = []
    keys: set[str] = set()

    async def handler(raw: dict[str, Any]) -> None:
        session = raw["content"].get("session_id")
        if session and session not in keys:
            raise AwaitingKeyError(f"no key {session}", session)
        handled.append(raw["event_id"])

    processor = InboxProcessor(inbox, handler, base_delay=0.05)
    await inbox.store_transaction(
        "t1", [event("!a", 1, session_id="S1"), event("!a", 2), event("!a", 3, session_id="S2")]
    )
    await processor.start()
    try:
        for _ in range(100):
            if handled == ["$!a-2"] and (await inbox.count_by_status()).get("waitkey") == 2:
                break
            await asyncio.sleep(0.05)
        assert handled == ["$!a-2"]  # the room went on past the two it cannot read
        keys.add("S1")
        assert await inbox.key_arrived("S1") == 1
        assert await inbox.key_arrived("S3") == 0
        processor.wake()
        for _ in range(100):
            if len(handled) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await processor.stop()
    assert handled == ["$!a-2", "$!a-1"]
    assert (await inbox.count_by_status()).get("waitkey") == 1  # S2's key never came


async def test_a_database_that_went_away_raises_storage_error(tmp_path: Path) -> None:
    pg = Postgres(tmp_path / "pg")
    pg.start()
    url = pg.create_database("gone")
    database = Database(url)
    await database.upgrade()
    store = CallStore(database)
    pg.stop(mode="immediate")
    try:
        with pytest.raises(StorageError, match="database error"):
            await store.open_calls()
        with pytest.raises(StorageError, match="unreachable"):
            await database.ping()
        pg.restart()
        assert await store.open_calls() == []
    finally:
        await database.close()
        pg.stop()


def test_db_upgrade_command(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "homeserver: {address: 'http://127.0.0.1:8008', domain: localhost}\n"
        f"database: {{url: 'sqlite+aiosqlite:///{tmp_path / 'cli.db'}'}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "db", "upgrade", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert f"database at revision {Database.head_revision()}" in done.stdout
    assert (tmp_path / "cli.db").exists()
