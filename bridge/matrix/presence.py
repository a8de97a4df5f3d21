"""A ghost's presence in one room's call: membership, its delayed leave, ring, decline.

The membership is backed by a delayed leave (MSC4140) that the homeserver sends unless we
keep restarting it: if the bridge dies, the ghost leaves the call by itself within
`delayed_leave` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from mautrix.api import Method, Path
from mautrix.appservice import IntentAPI
from mautrix.errors import MatrixRequestError, MatrixStandardRequestError
from mautrix.types import RoomID

from ..config import MatrixRtcConfig
from .rtc import (
    CALL_MEMBER,
    CALL_NOTIFY,
    DELAY_PARAM,
    RTC_DECLINE,
    RTC_NOTIFICATION,
    call_notify_content,
    decline_content,
    membership_content,
    membership_state_key,
    notification_content,
)

log = logging.getLogger(__name__)

DELAYED_EVENTS = Path.unstable["org.matrix.msc4140"].delayed_events


def now_ms() -> int:
    return int(time.time() * 1000)


class GhostPresence:
    def __init__(
        self, intent: IntentAPI, room_id: str, device_id: str, rtc: MatrixRtcConfig
    ) -> None:
        self.intent = intent
        self.room_id = RoomID(room_id)
        self.device_id = device_id
        self.rtc = rtc
        self.state_key = membership_state_key(intent.mxid, device_id)
        self.membership_event_id: str | None = None
        self.delay_id: str | None = None
        self._foci: list[dict[str, Any]] = []
        self._keepalive: asyncio.Task[None] | None = None

    def _state_path(self) -> Any:
        return Path.v3.rooms[self.room_id].state[CALL_MEMBER][self.state_key]

    async def join(self, foci_preferred: list[dict[str, Any]]) -> str:
        """Schedule the delayed leave, then send the membership; returns its event id."""
        self._foci = foci_preferred
        await self._schedule_delayed_leave()
        response = await self.intent.api.request(Method.PUT, self._state_path(), self._content())
        self.membership_event_id = str(response["event_id"])
        if self.delay_id is not None:
            self._keepalive = asyncio.create_task(
                self._keep_alive(), name=f"keepalive {self.state_key}"
            )
        return self.membership_event_id

    def _content(self) -> dict[str, Any]:
        return membership_content(
            self.intent.mxid,
            self.device_id,
            self._foci,
            now_ms(),
            self.rtc.membership_expires * 1000,
        )

    async def _schedule_delayed_leave(self) -> None:
        delay_ms = int(self.rtc.delayed_leave * 1000)
        try:
            response = await self.intent.api.request(
                Method.PUT, self._state_path(), {}, query_params={DELAY_PARAM: str(delay_ms)}
            )
        except MatrixStandardRequestError as e:
            log.warning(
                "homeserver refused a delayed leave (%s): if the bridge dies, %s stays in the "
                "call of %s until its membership expires; set max_event_delay_duration",
                e,
                self.intent.mxid,
                self.room_id,
            )
            return
        self.delay_id = response.get("delay_id")

    async def _keep_alive(self) -> None:
        assert self.delay_id is not None
        while True:
            await asyncio.sleep(self.rtc.delayed_leave_refresh)
            try:
                await self.intent.api.request(
                    Method.POST, DELAYED_EVENTS[self.delay_id].restart, {}
                )
            except MatrixStandardRequestError as e:
                if e.http_status == 404:
                    # It fired (we were too slow): the ghost left; put the membership back.
                    log.warning("delayed leave of %s fired early; rejoining", self.state_key)
                    self.delay_id = None
                    await self._schedule_delayed_leave()
                    await self.intent.api.request(Method.PUT, self._state_path(), self._content())
                    if self.delay_id is None:
                        return
                else:
                    log.warning("restarting the delayed leave of %s failed: %s", self.state_key, e)
            except (OSError, MatrixRequestError) as e:
                log.warning("restarting the delayed leave of %s failed: %s", self.state_key, e)

    async def leave(self) -> None:
        """Leave the call now: send the delayed leave at once, or an empty membership."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None
        if self.delay_id is not None:
            delay_id, self.delay_id = self.delay_id, None
            try:
                await self.intent.api.request(Method.POST, DELAYED_EVENTS[delay_id].send, {})
                return
            except MatrixRequestError as e:
                if getattr(e, "http_status", None) == 404:
                    # It fired already (the homeserver sends overdue ones when it comes back):
                    # the ghost has left, and a second leave would only repeat it.
                    log.info("the delayed leave of %s had fired already", self.state_key)
                    return
                log.info("sending the delayed leave failed (%s); leaving directly", e)
        await self.intent.api.request(Method.PUT, self._state_path(), {})

    async def ring(self, kind: str, mentions: list[str], send_call_notify: bool) -> str:
        assert self.membership_event_id is not None, "ring after join"
        content = notification_content(
            kind, self.membership_event_id, mentions, int(self.rtc.ring_lifetime * 1000), now_ms()
        )
        event_id = await self.send(RTC_NOTIFICATION, content)
        if send_call_notify:
            await self.send(CALL_NOTIFY, call_notify_content(kind, mentions))
        return event_id

    async def decline(self, notification_event_id: str) -> str:
        return await self.send(RTC_DECLINE, decline_content(notification_event_id))

    async def send(self, event_type: str, content: dict[str, Any]) -> str:
        """A room event of a type mautrix does not know, as this ghost."""
        path = Path.v3.rooms[self.room_id].send[event_type][self.intent.api.get_txn_id()]
        response = await self.intent.api.request(Method.PUT, path, content)
        return str(response["event_id"])
