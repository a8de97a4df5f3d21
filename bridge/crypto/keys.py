"""Signed JSON and device keys as the Matrix spec defines them (canonical JSON, unpadded
base64, ed25519 signatures)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import vodozemac as vz


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def verify_signed(obj: dict[str, Any], user_id: str, key_id: str, ed25519: str) -> bool:
    """Whether `obj` carries a valid signature by `ed25519` under user_id / key_id."""
    signatures = obj.get("signatures")
    by_user = signatures.get(user_id) if isinstance(signatures, dict) else None
    signature = by_user.get(key_id) if isinstance(by_user, dict) else None
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    try:
        vz.Ed25519PublicKey.from_base64(ed25519).verify_signature(
            canonical_json(unsigned), vz.Ed25519Signature.from_base64(signature)
        )
    except (vz.SignatureException, vz.KeyException, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Device:
    """Another device, with the keys its owner signed (from /keys/query)."""

    user_id: str
    device_id: str
    curve25519: str
    ed25519: str


def read_device_keys(user_id: str, device_id: str, keys: Any) -> Device | None:
    """A device from /keys/query, only if it is the one asked for and signed itself."""
    if not isinstance(keys, dict) or keys.get("user_id") != user_id:
        return None
    if keys.get("device_id") != device_id:
        return None
    found = keys.get("keys")
    curve = found.get(f"curve25519:{device_id}") if isinstance(found, dict) else None
    ed = found.get(f"ed25519:{device_id}") if isinstance(found, dict) else None
    if not isinstance(curve, str) or not isinstance(ed, str):
        return None
    if not verify_signed(keys, user_id, f"ed25519:{device_id}", ed):
        return None
    return Device(user_id, device_id, curve, ed)
