"""Media keys of a MatrixRTC call with per-participant encryption, as matrix-js-sdk 43 and
Element Call exchange them (docs/encryption.md, media keys): pure decisions, no I/O.

Each device in the call makes its own key and sends it, Olm-encrypted, to every other
member's device as `io.element.call.encryption_keys`. Someone leaving makes a new key (they
must not read what follows); someone joining gets the key as it is while it is young, else a
new one (they must not read what was said before they came).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

CALL_KEYS = "io.element.call.encryption_keys"
KEY_BYTES = 16
KEY_SLOTS = 256  # key indices wrap at this
ROTATION_GRACE_MS = 10_000  # a joiner within this of the key's making gets it unchanged
USE_DELAY_MS = 1_000  # a new key is sent first and used after this, so the members have it


class CallKeyError(ValueError):
    """A key message that is not one: why."""


@dataclass(frozen=True)
class KeyHolder:
    """A member's device, for one membership (a rejoin is a new holder)."""

    user_id: str
    device_id: str
    joined_ms: int


@dataclass(frozen=True)
class OwnKey:
    index: int
    key: bytes = field(repr=False)
    made_ms: int


@dataclass(frozen=True)
class KeyRollout:
    """Send `key` to `to`; `new`: it replaces the key in use, after USE_DELAY_MS."""

    key: OwnKey
    to: tuple[KeyHolder, ...]
    new: bool


class OutboundKeys:
    """The key this device sends with, and who has it."""

    def __init__(self, make_key: Callable[[], bytes], now_ms: int) -> None:
        self.make_key = make_key
        self.current = OwnKey(0, make_key(), now_ms)
        self.shared_with: set[KeyHolder] = set()

    def rollout(self, members: Iterable[KeyHolder], now_ms: int) -> KeyRollout | None:
        """What to send now that the call's other members are `members`; None: nothing."""
        members = set(members)
        devices = {(m.user_id, m.device_id) for m in members}
        # A device that rejoined is a joiner, not someone who left (as matrix-js-sdk counts).
        had = {
            h for h in self.shared_with if (h.user_id, h.device_id) not in devices or h in members
        }
        left = {h for h in had if h not in members}
        joined = members - had
        if left or (joined and now_ms - self.current.made_ms >= ROTATION_GRACE_MS):
            index = (self.current.index + 1) % KEY_SLOTS
            self.current = OwnKey(index, self.make_key(), now_ms)
            self.shared_with = set()
            return KeyRollout(self.current, _ordered(members), new=True)
        if joined:
            return KeyRollout(self.current, _ordered(joined), new=False)
        return None

    def shared(self, rollout: KeyRollout) -> None:
        """The rollout was sent (to those of its holders whose devices could be reached)."""
        if rollout.key == self.current:
            self.shared_with.update(rollout.to)


def _ordered(holders: set[KeyHolder]) -> tuple[KeyHolder, ...]:
    return tuple(sorted(holders, key=lambda h: (h.user_id, h.device_id, h.joined_ms)))


def key_content(
    key: OwnKey, room_id: str, user_id: str, device_id: str, now_ms: int
) -> dict[str, Any]:
    """The to-device content matrix-js-sdk 43's ToDeviceKeyTransport sends and reads."""
    return {
        "keys": {"index": key.index, "key": base64.b64encode(key.key).decode()},
        "room_id": room_id,
        "member": {"claimed_device_id": device_id, "id": f"{user_id}:{device_id}"},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": now_ms,
    }


@dataclass(frozen=True)
class MemberKey:
    """A member's key as their message claims it (the sender's device is checked apart)."""

    claimed_device_id: str
    index: int
    key: bytes = field(repr=False)


def read_key_content(content: dict[str, Any], room_id: str) -> MemberKey:
    """A received key message for the call in `room_id`, checked; CallKeyError if it is not."""
    if content.get("room_id") != room_id:
        raise CallKeyError(f"for room {content.get('room_id')!r}, not this call's")
    keys = content.get("keys")
    member = content.get("member")
    if not isinstance(keys, dict) or not isinstance(member, dict):
        raise CallKeyError("no keys or member")
    index, encoded = keys.get("index"), keys.get("key")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < KEY_SLOTS:
        raise CallKeyError(f"key index {index!r} is not 0 to {KEY_SLOTS - 1}")
    if not isinstance(encoded, str):
        raise CallKeyError("no key")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise CallKeyError(f"the key is not base64: {e}") from e
    if not 1 <= len(key) <= 64:
        raise CallKeyError(f"a key of {len(key)} bytes")
    device = member.get("claimed_device_id")
    if not isinstance(device, str) or not device:
        raise CallKeyError("no claimed_device_id")
    return MemberKey(device, index, key)
