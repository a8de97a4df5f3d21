"""The appservice HTTP API as the homeserver sees it: tokens, transactions, replays."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import BridgeStack
from tests.test_matrix_bot import notice_from
from teststack.bridge_process import BridgeProcess
from teststack.matrix_client import MatrixUser

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PUT", "/_matrix/app/v1/transactions/t1", {"events": []}),
    ("PUT", "/transactions/t1", {"events": []}),
    ("GET", "/_matrix/app/v1/users/@sip_+4930:localhost", None),
    ("GET", "/users/@sip_+4930:localhost", None),
    ("GET", "/_matrix/app/v1/rooms/%23any:localhost", None),
    ("GET", "/rooms/%23any:localhost", None),
    ("POST", "/_matrix/app/v1/ping", {}),
    ("GET", "/_matrix/mau/live", None),
    ("GET", "/_matrix/app/v1/thirdparty/protocol/sip", None),
    ("GET", "/no/such/route", None),
]


async def call(
    stack: BridgeStack,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    via: str = "header",
) -> tuple[int, Any]:
    headers = {}
    url = f"http://127.0.0.1:{stack.ports.appservice}{path}"
    if token is not None and via == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None:
        url += ("&" if "?" in url else "?") + f"access_token={token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def inbox_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM inbox_events").fetchone()[0])


async def test_every_route_refuses_missing_and_wrong_tokens(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], tmp_path: Path
) -> None:
    start_bridge()
    wrong = stack.tokens["hs_token"][:-1] + ("x" if stack.tokens["hs_token"][-1] != "x" else "y")
    for method, path, body in ROUTES:
        status, data = await call(stack, method, path, body)
        assert (status, data["errcode"]) == (401, "M_UNAUTHORIZED"), (method, path)
        for via in ("header", "query"):
            status, data = await call(stack, method, path, body, wrong, via)
            assert (status, data["errcode"]) == (403, "M_FORBIDDEN"), (method, path, via)
        # The appservice's own token is not the homeserver's.
        status, _ = await call(stack, method, path, body, stack.tokens["as_token"])
        assert status == 403, (method, path)
    # A transaction with a bad token stored nothing.
    event = {
        "event_id": "$bad",
        "room_id": "!r:localhost",
        "type": "m.room.message",
        "sender": "@alice:localhost",
        "content": {"msgtype": "m.text", "body": "!sip help"},
    }
    status, _ = await call(
        stack, "PUT", "/_matrix/app/v1/transactions/bad", {"events": [event]}, wrong
    )
    assert status == 403
    assert inbox_rows(tmp_path / "bridge.db") == 0
    # With the right token the same routes answer normally.
    status, _ = await call(stack, "POST", "/_matrix/app/v1/ping", {}, stack.tokens["hs_token"])
    assert status == 200
    status, _ = await call(
        stack,
        "GET",
        "/_matrix/app/v1/rooms/%23any:localhost",
        None,
        stack.tokens["hs_token"],
        via="query",
    )
    assert status == 404


def command_event(room: str, event_id: str, body: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "room_id": room,
        "type": "m.room.message",
        "sender": "@alice:localhost",
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body},
    }


async def count_notices(alice: MatrixUser, room: str, bot: str, text: str) -> int:
    return sum(1 for e in await alice.messages(room) if notice_from(bot, text)(e))


async def test_replayed_transaction_has_no_second_effect_even_after_restart(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
) -> None:
    bridge = start_bridge()
    room = await alice.create_room(invite=[stack.bot])
    await alice.wait_for_membership(room, stack.bot, "join")
    token = stack.tokens["hs_token"]
    txn = {"events": [command_event(room, "$replay-1", "!sip help replay-marker")]}
    assert (await call(stack, "PUT", "/_matrix/app/v1/transactions/replay-a", txn, token))[0] == 200
    await alice.wait_for_event(room, notice_from(stack.bot, "Commands (admin"))
    # The same transaction again, and the same event in a new transaction.
    assert (await call(stack, "PUT", "/_matrix/app/v1/transactions/replay-a", txn, token))[0] == 200
    assert (await call(stack, "PUT", "/_matrix/app/v1/transactions/replay-b", txn, token))[0] == 200
    assert bridge.stop() == 0
    start_bridge()
    assert (await call(stack, "PUT", "/_matrix/app/v1/transactions/replay-a", txn, token))[0] == 200
    # A fresh command proves the bridge is processing; only then count.
    await alice.send_text(room, "!sip help")
    await _wait_count(alice, room, stack.bot, "Commands (admin", 2)
    assert await count_notices(alice, room, stack.bot, "Commands (admin") == 2


async def _wait_count(alice: MatrixUser, room: str, bot: str, text: str, n: int) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if await count_notices(alice, room, bot, text) >= n:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"fewer than {n} notices containing {text!r}")


async def test_malformed_events_are_skipped_and_the_rest_processed(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], alice: MatrixUser
) -> None:
    bridge = start_bridge()
    room = await alice.create_room(invite=[stack.bot])
    await alice.wait_for_membership(room, stack.bot, "join")
    broken = command_event(room, "$broken", "!sip help")
    del broken["room_id"]
    wrong_content = {**command_event(room, "$wrong-content", "x"), "content": "not an object"}
    txn = {
        "events": [
            broken,
            "not even an object",
            wrong_content,
            command_event(room, "$good", "!sip status"),
        ]
    }
    status, _ = await call(
        stack, "PUT", "/_matrix/app/v1/transactions/mixed", txn, stack.tokens["hs_token"]
    )
    assert status == 200
    await alice.wait_for_event(room, notice_from(stack.bot, "Call workers"))
    log = bridge.log()
    assert "transaction mixed event 0 lacks room_id" in log
    assert "transaction mixed event 1 lacks event_id, room_id, type, sender" in log
    assert "parking event $wrong-content" in log
    assert bridge.process.running()


@pytest.mark.parametrize("body", [b"{not json", b'{"no_events": []}', b'{"events": {}}'])
async def test_unreadable_transactions_get_400(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], body: bytes
) -> None:
    start_bridge()
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"http://127.0.0.1:{stack.ports.appservice}/_matrix/app/v1/transactions/x",
            data=body,
            headers={"Authorization": f"Bearer {stack.tokens['hs_token']}"},
        ) as response,
    ):
        assert response.status == 400
