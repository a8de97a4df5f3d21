"""MatrixRTC event shapes (MSC4143, MSC4075, MSC4310), as shipping clients send and read them.

Pure: builds event contents and reads memberships out of events. See DESIGN §4.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

CALL_MEMBER = "org.matrix.msc3401.call.member"
RTC_MEMBER = "org.matrix.msc4143.rtc.member"
RTC_SLOT = "org.matrix.msc4143.rtc.slot"
RTC_NOTIFICATION = "org.matrix.msc4075.rtc.notification"
CALL_NOTIFY = "org.matrix.msc4075.call.notify"
RTC_DECLINE = "org.matrix.msc4310.rtc.decline"
SLOT_ID = "m.call#ROOM"
DELAY_PARAM = "org.matrix.msc4140.delay"
MAX_RING_MS = 120_000


def membership_state_key(user_id: str, device_id: str) -> str:
    # A leading '_' because keys starting with '@' must equal the sender in current rooms.
    return f"_{user_id}_{device_id}_m.call"


def livekit_focus(service_url: str, room_id: str) -> dict[str, Any]:
    return {"type": "livekit", "livekit_service_url": service_url, "livekit_alias": room_id}


def membership_content(
    user_id: str,
    device_id: str,
    foci_preferred: list[dict[str, Any]],
    created_ts: int,
    expires_ms: int,
) -> dict[str, Any]:
    return {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": device_id,
        "membershipID": f"{user_id}:{device_id}",
        "expires": expires_ms,
        "created_ts": created_ts,
        "m.call.intent": "audio",
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": foci_preferred,
    }


def slot_open_content() -> dict[str, Any]:
    return {"status": "open", "application": {"type": "m.call"}}


def slot_is_open(content: dict[str, Any] | None) -> bool:
    if not content:
        return False
    application = content.get("application")
    return (
        content.get("status") == "open"
        and isinstance(application, dict)
        and application.get("type") == "m.call"
    )


def notification_content(
    kind: str, membership_event_id: str, mentions: list[str], lifetime_ms: int, now_ms: int
) -> dict[str, Any]:
    return {
        "notification_type": kind,
        "m.relates_to": {"rel_type": "m.reference", "event_id": membership_event_id},
        "sender_ts": now_ms,
        "lifetime": min(lifetime_ms, MAX_RING_MS),
        "m.mentions": {"user_ids": sorted(mentions)},
        "m.call.intent": "audio",
    }


def call_notify_content(kind: str, mentions: list[str]) -> dict[str, Any]:
    """The older form (org.matrix.msc4075.call.notify)."""
    return {
        "application": "m.call",
        "call_id": "",
        "notify_type": kind,
        "m.mentions": {"user_ids": sorted(mentions), "room": False},
    }


def decline_content(notification_event_id: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.reference", "event_id": notification_event_id}}


@dataclass(frozen=True)
class RtcMember:
    user_id: str
    device_id: str
    started_ms: int  # when the member joined (orders the session: oldest first)
    expires_at_ms: int | None
    foci_preferred: tuple[dict[str, Any], ...]
    member_id: str | None = None  # sticky memberships name themselves

    @property
    def key(self) -> str:
        return f"{self.user_id}|{self.device_id}"

    @property
    def identity(self) -> str:
        """The member's participant identity in LiveKit (DESIGN §4)."""
        if self.member_id is None:
            return f"{self.user_id}:{self.device_id}"
        digest = hashlib.sha256(
            json.dumps(
                [self.user_id, self.device_id, self.member_id], separators=(",", ":")
            ).encode()
        ).digest()
        return base64.b64encode(digest).decode().rstrip("=")

    def valid_at(self, now_ms: int) -> bool:
        return self.expires_at_ms is None or self.expires_at_ms > now_ms


@dataclass(frozen=True)
class MembershipUpdate:
    """A member's state in the room's call after an event: `member` is None when it left."""

    slot_key: str  # identifies the membership across its updates
    sender: str
    member: RtcMember | None


def read_call_member(event: dict[str, Any]) -> MembershipUpdate | None:
    """A state-event membership (org.matrix.msc3401.call.member); None if not about m.call#ROOM."""
    if event.get("type") != CALL_MEMBER or not isinstance(event.get("state_key"), str):
        return None
    sender = event.get("sender")
    content = event.get("content")
    if not isinstance(sender, str) or not isinstance(content, dict):
        return None
    key = event["state_key"]
    if not content:
        return MembershipUpdate(key, sender, None)
    device_id = content.get("device_id")
    if (
        content.get("application") != "m.call"
        or content.get("call_id") not in ("", "ROOM")
        or not isinstance(device_id, str)
        or not isinstance(content.get("focus_active"), dict)
    ):
        return None
    origin = event.get("origin_server_ts")
    created = content.get("created_ts") if isinstance(content.get("created_ts"), int) else origin
    started = created if isinstance(created, int) else 0
    expires = content.get("expires")
    foci = content.get("foci_preferred")
    return MembershipUpdate(
        key,
        sender,
        RtcMember(
            user_id=sender,
            device_id=device_id,
            started_ms=started,
            expires_at_ms=started + expires if isinstance(expires, int) else None,
            foci_preferred=tuple(f for f in foci if isinstance(f, dict))
            if isinstance(foci, list)
            else (),
        ),
    )


def read_rtc_member(event: dict[str, Any]) -> MembershipUpdate | None:
    """A sticky membership (org.matrix.msc4143.rtc.member); None if not about m.call#ROOM."""
    if event.get("type") != RTC_MEMBER:
        return None
    sender = event.get("sender")
    content = event.get("content")
    if not isinstance(sender, str) or not isinstance(content, dict):
        return None
    sticky = content.get("sticky_key", content.get("msc4354_sticky_key"))
    if set(content) <= {"slot_id", "msc4354_sticky_key", "sticky_key"}:
        # A withdrawal: the member left (its key is the sticky key).
        key = sticky if isinstance(sticky, str) else f"{sender}|?"
        return MembershipUpdate(f"sticky:{sender}:{key}", sender, None)
    member = content.get("member")
    if content.get("slot_id") != SLOT_ID or not isinstance(member, dict):
        return None
    device_id = member.get("device_id")
    if member.get("user_id") != sender or not isinstance(device_id, str):
        return None
    transports = content.get("transports")
    published = transports.get("published") if isinstance(transports, dict) else None
    origin = event.get("origin_server_ts")
    key = sticky if isinstance(sticky, str) else device_id
    return MembershipUpdate(
        f"sticky:{sender}:{key}",
        sender,
        RtcMember(
            user_id=sender,
            device_id=device_id,
            started_ms=origin if isinstance(origin, int) else 0,
            expires_at_ms=None,  # sticky events expire with their stickiness, not a field
            foci_preferred=tuple(t for t in published if isinstance(t, dict))
            if isinstance(published, list)
            else (),
            member_id=member.get("id") if isinstance(member.get("id"), str) else None,
        ),
    )


def read_membership(event: dict[str, Any]) -> MembershipUpdate | None:
    return read_call_member(event) or read_rtc_member(event)


def referenced_event(content: dict[str, Any]) -> str | None:
    relation = content.get("m.relates_to")
    if isinstance(relation, dict) and relation.get("rel_type") == "m.reference":
        event_id = relation.get("event_id")
        return event_id if isinstance(event_id, str) else None
    return None
