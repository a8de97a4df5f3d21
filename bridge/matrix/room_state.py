"""Reading a room's state (as the client-server API returns it): members, power, the slot."""

from __future__ import annotations

from typing import Any

from .rtc import RTC_SLOT, SLOT_ID, RtcMember, read_call_member

State = list[dict[str, Any]]


def state_content(state: State, event_type: str, state_key: str = "") -> dict[str, Any] | None:
    for event in state:
        if event.get("type") == event_type and event.get("state_key") == state_key:
            content = event.get("content")
            return content if isinstance(content, dict) else None
    return None


def members(state: State, *memberships: str) -> set[str]:
    """Users whose membership is one of `memberships`."""
    return {
        e["state_key"]
        for e in state
        if e.get("type") == "m.room.member"
        and isinstance(e.get("state_key"), str)
        and isinstance(e.get("content"), dict)
        and e["content"].get("membership") in memberships
    }


def joined_members(state: State) -> set[str]:
    return members(state, "join")


def session_members(state: State, now_ms: int) -> list[RtcMember]:
    """Valid call members (unexpired, and joined to the room), oldest first."""
    joined = joined_members(state)
    members = []
    for event in state:
        update = read_call_member(event)
        if update is None or update.member is None:
            continue
        member = update.member
        if member.valid_at(now_ms) and member.user_id in joined:
            members.append(member)
    return sorted(members, key=lambda m: (m.started_ms, m.user_id, m.device_id))


# Room versions in which the creators are not in the power levels but above them (v12+).
_LEGACY_VERSIONS = {str(v) for v in range(1, 12)}
CREATOR_LEVEL = 2**53


def creators(state: State) -> set[str]:
    for event in state:
        if event.get("type") == "m.room.create" and event.get("state_key") == "":
            content = event.get("content") or {}
            if str(content.get("room_version", "1")) in _LEGACY_VERSIONS:
                return set()
            extra = content.get("additional_creators")
            names = {str(event.get("sender"))}
            if isinstance(extra, list):
                names |= {u for u in extra if isinstance(u, str)}
            return names
    return set()


def power_level(state: State, user_id: str) -> int:
    if user_id in creators(state):
        return CREATOR_LEVEL
    levels = state_content(state, "m.room.power_levels") or {}
    users = levels.get("users")
    if isinstance(users, dict) and isinstance(users.get(user_id), int):
        return int(users[user_id])
    default = levels.get("users_default", 0)
    return int(default) if isinstance(default, int) else 0


def required_level(state: State, event_type: str, is_state: bool) -> int:
    levels = state_content(state, "m.room.power_levels")
    if levels is None:
        return 0  # rooms without power levels let every member send
    events = levels.get("events")
    if isinstance(events, dict) and isinstance(events.get(event_type), int):
        return int(events[event_type])
    key = "state_default" if is_state else "events_default"
    default = levels.get(key, 50 if is_state else 0)
    return int(default) if isinstance(default, int) else 50


def may_send(state: State, user_id: str, event_type: str, is_state: bool = True) -> bool:
    return power_level(state, user_id) >= required_level(state, event_type, is_state)


def slot(state: State) -> dict[str, Any] | None:
    return state_content(state, RTC_SLOT, SLOT_ID)


def is_encrypted(state: State) -> bool:
    return state_content(state, "m.room.encryption") is not None
