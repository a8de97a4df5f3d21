"""What a MatrixRTC client (Element Call) sends, done by a test user through the CS API."""

from __future__ import annotations

import time
from typing import Any

from bridge.matrix.rtc import (
    CALL_MEMBER,
    RTC_DECLINE,
    RTC_NOTIFICATION,
    decline_content,
    livekit_focus,
    membership_content,
    membership_state_key,
    notification_content,
)

from .matrix_client import Event, MatrixUser


async def join_call(user: MatrixUser, room: str, device: str = "TESTDEV", *, service: str) -> str:
    """Join the room's call by membership alone (no media), naming `service` as the focus."""
    content = membership_content(
        user.user_id,
        device,
        [livekit_focus(service, room)],
        int(time.time() * 1000),
        14_400_000,
    )
    return await user.send_state(
        room, CALL_MEMBER, membership_state_key(user.user_id, device), content
    )


async def leave_call(user: MatrixUser, room: str, device: str = "TESTDEV") -> str:
    return await user.send_state(room, CALL_MEMBER, membership_state_key(user.user_id, device), {})


async def ring(user: MatrixUser, room: str, membership_event_id: str, callee: str) -> str:
    content = notification_content(
        "ring", membership_event_id, [callee], 30_000, int(time.time() * 1000)
    )
    return await user.send(room, RTC_NOTIFICATION, content)


async def decline(user: MatrixUser, room: str, notification_event_id: str) -> str:
    return await user.send(room, RTC_DECLINE, decline_content(notification_event_id))


def is_membership_of(user_id: str, joined: bool = True) -> Any:
    def match(event: Event) -> bool:
        return (
            event.get("type") == CALL_MEMBER
            and event.get("sender") == user_id
            and bool(event.get("content")) is joined
        )

    return match


def is_ring_from(user_id: str) -> Any:
    def match(event: Event) -> bool:
        return event.get("type") == RTC_NOTIFICATION and event.get("sender") == user_id

    return match
