"""A Matrix user driven through the client-server API, as a test's stand-in for a person."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

Event = dict[str, Any]


class MatrixError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class MatrixUser:
    def __init__(self, base_url: str, user_id: str, access_token: str) -> None:
        self.base_url = base_url
        self.user_id = user_id
        self.token = access_token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MatrixUser:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(
            method,
            f"{self.base_url}/_matrix/client{path}",
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise MatrixError(response.status, data)
            return data

    async def create_room(
        self, invite: list[str] | None = None, is_direct: bool = False, **extra: Any
    ) -> str:
        body = {"invite": invite or [], "is_direct": is_direct, "preset": "private_chat", **extra}
        return str((await self.request("POST", "/v3/createRoom", body))["room_id"])

    async def join(self, room_id: str) -> None:
        await self.request("POST", f"/v3/join/{quote(room_id)}", {})

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/v3/rooms/{quote(room_id)}/leave", {})

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        txn = uuid.uuid4().hex
        path = f"/v3/rooms/{quote(room_id)}/send/{quote(event_type)}/{txn}"
        return str((await self.request("PUT", path, content))["event_id"])

    async def send_text(self, room_id: str, body: str) -> str:
        return await self.send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})

    async def send_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        path = f"/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/{quote(state_key, safe='')}"
        return str((await self.request("PUT", path, content))["event_id"])

    async def state(self, room_id: str, event_type: str, state_key: str = "") -> Any:
        path = f"/v3/rooms/{quote(room_id)}/state/{quote(event_type)}/{quote(state_key, safe='')}"
        return await self.request("GET", path)

    async def membership(self, room_id: str, user_id: str) -> str | None:
        try:
            return str((await self.state(room_id, "m.room.member", user_id))["membership"])
        except MatrixError as e:
            if e.status == 404:
                return None
            raise

    async def sync(self, since: str | None, timeout_ms: int = 10_000) -> tuple[str, list[Event]]:
        """One /sync long-poll: the next token and the timeline events of every joined room."""
        params = {"timeout": str(timeout_ms)}
        if since:
            params["since"] = since
        data = await self.request("GET", "/v3/sync", params=params)
        events = []
        for room_id, room in data.get("rooms", {}).get("join", {}).items():
            for event in room.get("timeline", {}).get("events", []):
                events.append({**event, "room_id": room_id})
        return str(data["next_batch"]), events

    async def messages(self, room_id: str, limit: int = 100) -> list[Event]:
        """The room's latest events, oldest first."""
        path = f"/v3/rooms/{quote(room_id)}/messages"
        data = await self.request("GET", path, params={"dir": "b", "limit": str(limit)})
        return list(reversed(data["chunk"]))

    async def wait_for_event(
        self, room_id: str, match: Callable[[Event], bool], timeout: float = 20.0
    ) -> Event:
        deadline = time.monotonic() + timeout
        seen: list[Event] = []
        while time.monotonic() < deadline:
            seen = await self.messages(room_id)
            for event in seen:
                if match(event):
                    return event
            await asyncio.sleep(0.2)
        summary = [(e.get("type"), e.get("sender"), e.get("content")) for e in seen[-8:]]
        raise TimeoutError(f"no matching event in {room_id} within {timeout} s; last: {summary}")

    async def wait_for_membership(
        self, room_id: str, user_id: str, membership: str, timeout: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout
        current = None
        while time.monotonic() < deadline:
            current = await self.membership(room_id, user_id)
            if current == membership:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{user_id} is {current} in {room_id}, not {membership}")
