"""Encrypted rooms, with a user on matrix-js-sdk's Rust crypto (Element Web's)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import BridgeStack
from tests.test_inbound_calls import linked_room
from tests.test_matrix_bot import notice_from
from teststack.bridge_process import BridgeProcess
from teststack.js_sdk import encrypted_chat
from teststack.matrix_client import MatrixUser


async def test_the_bot_reads_commands_in_an_encrypted_room_and_answers_encrypted(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    result = await asyncio.to_thread(
        encrypted_chat,
        stack.synapse.url,
        alice.user_id,
        "pw",
        stack.bot,
        "help",
        "!sip help",
        "link",
    )
    assert result["ok"], result
    assert result["sentEncrypted"], result  # the command itself went out encrypted
    for answer in (result["hello"], result["reply"]):
        assert answer["encrypted"] and answer["wireType"] == "m.room.encrypted", result
        assert answer["msgtype"] == "m.notice", result
    assert "!sip link" in result["reply"]["body"], result
    # The bot's device lives in the bridge's database, its secrets pickled, not in clear.
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        (device_id, pickle) = db.execute("SELECT device_id, pickle FROM crypto_devices").fetchone()
    assert device_id.startswith("SIPBRIDGE") and '"account"' in pickle


async def test_events_the_bot_cannot_decrypt_wait_aside_and_hold_nothing_up(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    bridge = start_bridge()
    room = await alice.create_room(invite=[stack.bot])
    await alice.wait_for_membership(room, stack.bot, "join")
    megolm = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "x", "device_id": "D"}
    # A key that never comes, garbage, and a shape no client sends.
    await alice.send(room, "m.room.encrypted", {**megolm, "session_id": "S1", "ciphertext": "AAAA"})
    await alice.send(room, "m.room.encrypted", {**megolm, "ciphertext": 5})
    await alice.send(room, "m.room.encrypted", {"algorithm": "m.olm.v1.curve25519-aes-sha2"})
    await alice.send_text(room, "!sip help")
    # The room goes on at once: the command behind them is answered.
    await alice.wait_for_event(room, notice_from(stack.bot, "!sip link"), timeout=10)
    assert bridge.process.running()
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        rows = db.execute(
            "SELECT status, awaiting_key, last_error FROM inbox_events"
            " WHERE json_extract(event, '$.type') = 'm.room.encrypted' ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == ["waitkey", "parked", "parked"], rows
    assert rows[0][1] == "S1" and "S1" in rows[0][2], rows
    assert "ciphertext" in rows[1][2] and "Megolm" in rows[2][2], rows


async def test_a_ghost_speaks_encrypted_in_an_encrypted_portal(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    # A new DM with a number's ghost, encrypted as Element makes DMs; its default power
    # levels keep the ghost from joining calls, and the ghost says so.
    ghost = "@sip_+4930111222:localhost"
    result = await asyncio.to_thread(
        encrypted_chat,
        stack.synapse.url,
        alice.user_id,
        "pw",
        ghost,
        "cannot join calls",
        direct=True,
    )
    assert result["ok"], result
    assert result["hello"]["encrypted"] and result["hello"]["wireType"] == "m.room.encrypted"
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        users = {u for (u,) in db.execute("SELECT user_id FROM crypto_devices")}
    assert users == {stack.bot, ghost}, users


async def test_a_lost_crypto_store_costs_a_new_device_and_nothing_else(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    def chat() -> dict[str, Any]:
        return encrypted_chat(
            stack.synapse.url, alice.user_id, "pw", stack.bot, "help", "!sip help", "link"
        )

    first = start_bridge()
    await linked_room(stack, alice)  # something of the bridge's own that must survive
    assert (await asyncio.to_thread(chat))["ok"]
    first.stop()
    database = tmp_path / "bridge.db"
    with sqlite3.connect(database) as db:
        (old_device,) = db.execute("SELECT device_id FROM crypto_devices").fetchone()
        links = db.execute("SELECT * FROM number_links").fetchall()
        db.execute("DELETE FROM crypto_devices")
    start_bridge()
    result = await asyncio.to_thread(chat)
    assert result["ok"] and result["reply"]["encrypted"], result
    with sqlite3.connect(database) as db:
        (new_device,) = db.execute("SELECT device_id FROM crypto_devices").fetchone()
        assert db.execute("SELECT * FROM number_links").fetchall() == links
    assert new_device != old_device and len(links) == 1
