"""Sending a room event with content as the spec gives it (a plain dict)."""

from __future__ import annotations

from typing import Any

from mautrix.api import Method, Path
from mautrix.appservice import IntentAPI
from mautrix.types import RoomID


async def send_event(
    intent: IntentAPI, room_id: str, event_type: str, content: dict[str, Any]
) -> str:
    path = Path.v3.rooms[RoomID(room_id)].send[event_type][intent.api.get_txn_id()]
    response = await intent.api.request(Method.PUT, path, content)
    return str(response["event_id"])
