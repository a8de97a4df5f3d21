"""Who is in each room's call, as the events we receive say it: joins and leaves in order."""

from __future__ import annotations

from dataclasses import dataclass, field

from .rtc import MembershipUpdate, RtcMember


@dataclass(frozen=True)
class SessionChange:
    joined: RtcMember | None = None
    left: RtcMember | None = None


@dataclass
class SessionTracker:
    rooms: dict[str, dict[str, RtcMember]] = field(default_factory=dict)

    def update(self, room_id: str, update: MembershipUpdate) -> SessionChange:
        members = self.rooms.setdefault(room_id, {})
        before = members.get(update.slot_key)
        if update.member is None:
            members.pop(update.slot_key, None)
            return SessionChange(left=before)
        members[update.slot_key] = update.member
        if before is not None and before.key == update.member.key:
            return SessionChange()  # a refresh of the same membership
        return SessionChange(joined=update.member, left=before)

    def member_of(self, room_id: str, user_id: str) -> RtcMember | None:
        for member in self.rooms.get(room_id, {}).values():
            if member.user_id == user_id:
                return member
        return None

    def seed(self, room_id: str, members: list[tuple[str, RtcMember]]) -> None:
        """Start from the room's state (when a call begins), keeping what events said since."""
        known = self.rooms.setdefault(room_id, {})
        for slot_key, member in members:
            known.setdefault(slot_key, member)
