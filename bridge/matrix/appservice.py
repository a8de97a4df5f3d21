"""The appservice HTTP side, on mautrix.appservice, with three fixes the bridge relies on:

- the hs_token is checked on every route, in constant time (mautrix compares with `!=`);
- a transaction is acknowledged only after its events are stored durably (mautrix answers
  200 even when a handler raised, and the homeserver then never retries);
- events are not handled here but by the inbox, in order per room.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore

from ..storage.database import StorageError
from ..storage.inbox import InboxStore

log = logging.getLogger(__name__)

REQUIRED_EVENT_FIELDS = ("event_id", "room_id", "type", "sender")


class MemoryASStateStore(MemoryStateStore, ASStateStore):
    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    return request.query.get("access_token")


def token_middleware(hs_token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every route, known or not, answers nothing before the homeserver's token is right."""
    expected = hs_token.encode()

    @web.middleware
    async def check_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = presented_token(request)
        if token is None:
            log.warning("request to %s without a token from %s", request.path, request.remote)
            return _error(401, "M_UNAUTHORIZED", "No access token given")
        if not hmac.compare_digest(token.encode(), expected):
            log.warning("request to %s with a wrong token from %s", request.path, request.remote)
            return _error(403, "M_FORBIDDEN", "Invalid access token")
        return await handler(request)

    return check_token


def missing_fields(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return list(REQUIRED_EVENT_FIELDS)
    return [f for f in REQUIRED_EVENT_FIELDS if not isinstance(event.get(f), str)]


class BridgeAppService(AppService):
    def __init__(
        self,
        *,
        inbox: InboxStore,
        on_stored: Callable[[], None],
        hs_token: str,
        on_device_messages: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            hs_token=hs_token,
            state_store=MemoryASStateStore(),
            aiohttp_params={"middlewares": [token_middleware(hs_token)]},
            **kwargs,
        )
        self.inbox = inbox
        self.on_stored = on_stored
        # To-device messages, key counts and device lists (encryption), before the events.
        self.on_device_messages = on_device_messages

    def _check_token(self, request: web.Request) -> bool:
        token = presented_token(request)
        return token is not None and hmac.compare_digest(token.encode(), self.hs_token.encode())

    async def _http_handle_transaction(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["transaction_id"]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "M_NOT_JSON", "Body is not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _error(400, "M_BAD_JSON", "The transaction has no 'events' list")
        if self.on_device_messages is not None:
            try:
                await self.on_device_messages(body)
            except StorageError as e:
                log.warning(
                    "transaction %s not taken yet, the homeserver will retry: %s", txn_id, e
                )
                return _error(503, "M_UNKNOWN", "The bridge cannot store keys right now")
            except Exception:
                # A to-device message is never worth losing the room events behind it.
                log.exception("transaction %s: its to-device part failed", txn_id)
        usable = []
        for index, event in enumerate(events):
            missing = missing_fields(event)
            if missing:
                # Say what was wrong and drop only this event; the rest of the transaction counts.
                log.error(
                    "transaction %s event %d lacks %s; skipping it: %.300s",
                    txn_id,
                    index,
                    ", ".join(missing),
                    json.dumps(event),
                )
                continue
            usable.append(event)
        try:
            stored = await self.inbox.store_transaction(txn_id, usable)
        except StorageError as e:
            # Not acknowledged: the homeserver keeps the transaction and retries it.
            log.error("transaction %s not stored, the homeserver will retry: %s", txn_id, e)
            return _error(503, "M_UNKNOWN", "The bridge cannot store events right now")
        if stored:
            log.debug("transaction %s stored with %d events", txn_id, len(usable))
            self.on_stored()
        else:
            log.info("transaction %s was stored before; acknowledging it again", txn_id)
        return web.json_response({})
