"""Encrypted rooms, with a user on matrix-js-sdk's Rust crypto (Element Web's)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.conftest import BridgeStack
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
