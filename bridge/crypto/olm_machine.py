"""One Matrix device's end-to-end encryption (Olm for to-device, Megolm for rooms), on
vodozemac.

Pure: no I/O. It says what to upload, decrypts what it is given and encrypts what it is
asked to; the caller moves the results to and from the homeserver and stores the state
(`pickling.py`). Formats: the Matrix spec's `m.olm.v1.curve25519-aes-sha2` and
`m.megolm.v1.aes-sha2`; how they reach the bridge is in docs/encryption.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import vodozemac as vz

from .keys import Device, b64decode, canonical_json, unpadded_b64, verify_signed

OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"
ALGORITHMS = [OLM, MEGOLM]
ROOM_KEY = "m.room_key"
# Rotate a room's outbound session as clients do (the spec's defaults for m.room.encryption).
ROTATION_MESSAGES = 100
ROTATION_MS = 7 * 24 * 3600 * 1000


class DecryptionError(ValueError):
    """This message cannot be decrypted (malformed, or not for this device)."""


class MissingSessionError(DecryptionError):
    """A room event whose Megolm session this device does not (yet) hold."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no Megolm session {session_id} (its key has not arrived)")
        self.session_id = session_id


@dataclass
class OutboundRoomSession:
    session: vz.GroupSession
    created_ms: int
    shared_with: set[str] = field(default_factory=set)  # "user|device"

    def readers(self) -> set[str]:
        """The users whose devices were given this session's key."""
        return {entry.split("|", 1)[0] for entry in self.shared_with}

    def expired(self, now_ms: int) -> bool:
        return (
            self.session.message_index >= ROTATION_MESSAGES
            or now_ms - self.created_ms >= ROTATION_MS
        )


@dataclass(frozen=True)
class ToDevice:
    """A decrypted to-device event: who sent it, from which key, and what."""

    sender: str
    sender_key: str
    sender_device: str | None
    type: str
    content: dict[str, Any]


class OlmMachine:
    def __init__(self, user_id: str, device_id: str, account: vz.Account | None = None) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.account = account or vz.Account()
        self.olm_sessions: dict[str, list[vz.Session]] = {}  # by the peer's curve25519 key
        self.inbound: dict[str, tuple[str, vz.InboundGroupSession]] = {}  # id → (room, s)
        self.outbound: dict[str, OutboundRoomSession] = {}  # by room

    @property
    def curve25519(self) -> str:
        return self.account.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        return self.account.ed25519_key.to_base64()

    def _sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        signature = self.account.sign(canonical_json(obj)).to_base64()
        return {**obj, "signatures": {self.user_id: {f"ed25519:{self.device_id}": signature}}}

    def device_keys(self) -> dict[str, Any]:
        """This device's identity, signed, for /keys/upload."""
        return self._sign(
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "algorithms": ALGORITHMS,
                "keys": {
                    f"curve25519:{self.device_id}": self.curve25519,
                    f"ed25519:{self.device_id}": self.ed25519,
                },
            }
        )

    def one_time_keys(self, uploaded_count: int) -> dict[str, Any]:
        """Signed one-time keys to upload so the server holds half the account's maximum;
        call `mark_published` once the upload succeeded."""
        wanted = self.account.max_number_of_one_time_keys // 2 - uploaded_count
        if wanted > 0 and not self.account.one_time_keys:
            self.account.generate_one_time_keys(wanted)
        return {
            f"signed_curve25519:{key_id}": self._sign({"key": key.to_base64()})
            for key_id, key in self.account.one_time_keys.items()
        }

    def mark_published(self) -> None:
        self.account.mark_keys_as_published()

    # Olm (to-device)

    def decrypt_to_device(self, event: dict[str, Any]) -> ToDevice:
        """An `m.room.encrypted` to-device event for this device, decrypted and checked."""
        content = event.get("content")
        sender = event.get("sender")
        if not isinstance(content, dict) or not isinstance(sender, str):
            raise DecryptionError("not an encrypted to-device event")
        if content.get("algorithm") != OLM:
            raise DecryptionError(f"unsupported algorithm {content.get('algorithm')!r}")
        sender_key = content.get("sender_key")
        ciphertexts = content.get("ciphertext")
        ours = ciphertexts.get(self.curve25519) if isinstance(ciphertexts, dict) else None
        if not isinstance(sender_key, str) or not isinstance(ours, dict):
            raise DecryptionError("no ciphertext for this device")
        kind, body = ours.get("type"), ours.get("body")
        if kind not in (0, 1) or not isinstance(body, str):
            raise DecryptionError("malformed Olm ciphertext")
        try:
            message = vz.AnyOlmMessage.from_parts(kind, b64decode(body))
            plaintext = self._olm_decrypt(sender_key, kind, message)
            payload = json.loads(plaintext)
        except (ValueError, vz.DecodeException, vz.KeyException) as e:
            raise DecryptionError(f"Olm message from {sender} does not decrypt: {e}") from e
        recipient_keys = payload.get("recipient_keys") if isinstance(payload, dict) else None
        if (
            not isinstance(payload, dict)
            or not isinstance(recipient_keys, dict)
            or payload.get("sender") != sender
            or payload.get("recipient") != self.user_id
            or recipient_keys.get("ed25519") != self.ed25519
            or not isinstance(payload.get("type"), str)
            or not isinstance(payload.get("content"), dict)
        ):
            raise DecryptionError(f"Olm payload from {sender} is not addressed to this device")
        device = payload.get("sender_device")
        return ToDevice(
            sender,
            sender_key,
            device if isinstance(device, str) else None,
            payload["type"],
            payload["content"],
        )

    def _olm_decrypt(self, sender_key: str, kind: int, message: vz.AnyOlmMessage) -> bytes:
        sessions = self.olm_sessions.setdefault(sender_key, [])
        pre_key = message.to_pre_key()
        for session in sessions:
            if pre_key is not None and not session.session_matches(pre_key):
                continue
            try:
                return session.decrypt(message)
            except vz.OlmDecryptionException:
                continue
        if pre_key is None:
            raise DecryptionError("no Olm session decrypts this message")
        session, plaintext = self.account.create_inbound_session(
            vz.Curve25519PublicKey.from_base64(sender_key), pre_key
        )
        sessions.insert(0, session)
        return plaintext

    def has_olm_session(self, device: Device) -> bool:
        return bool(self.olm_sessions.get(device.curve25519))

    def start_olm_session(self, device: Device, one_time_key: dict[str, Any]) -> None:
        """An outbound session from a claimed (and signature-checked) one-time key."""
        if not verify_signed(
            one_time_key, device.user_id, f"ed25519:{device.device_id}", device.ed25519
        ):
            raise DecryptionError(f"{device.user_id} {device.device_id}: bad one-time key")
        session = self.account.create_outbound_session(
            vz.Curve25519PublicKey.from_base64(device.curve25519),
            vz.Curve25519PublicKey.from_base64(one_time_key["key"]),
        )
        self.olm_sessions.setdefault(device.curve25519, []).insert(0, session)

    def encrypt_to_device(
        self, device: Device, kind: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        """The `m.room.encrypted` content carrying `kind`/`content` to `device` (which needs an
        Olm session: `start_olm_session`)."""
        sessions = self.olm_sessions.get(device.curve25519)
        if not sessions:
            raise DecryptionError(f"no Olm session with {device.user_id} {device.device_id}")
        payload = {
            "type": kind,
            "content": content,
            "sender": self.user_id,
            "sender_device": self.device_id,
            "keys": {"ed25519": self.ed25519},
            "recipient": device.user_id,
            "recipient_keys": {"ed25519": device.ed25519},
        }
        message_type, ciphertext = sessions[0].encrypt(canonical_json(payload)).to_parts()
        return {
            "algorithm": OLM,
            "sender_key": self.curve25519,
            "ciphertext": {
                device.curve25519: {"type": message_type, "body": unpadded_b64(ciphertext)}
            },
        }

    # Megolm (rooms)

    def accept_room_key(self, event: ToDevice) -> str | None:
        """Keep the Megolm session an `m.room_key` carries; its session id, or None."""
        content = event.content
        if event.type != ROOM_KEY or content.get("algorithm") != MEGOLM:
            return None
        room_id, key = content.get("room_id"), content.get("session_key")
        if not isinstance(room_id, str) or not isinstance(key, str):
            raise DecryptionError(f"malformed m.room_key from {event.sender}")
        try:
            session = vz.InboundGroupSession(vz.SessionKey(key))
        except (vz.SessionKeyDecodeException, ValueError) as e:
            raise DecryptionError(f"m.room_key from {event.sender}: {e}") from e
        known = self.inbound.get(session.session_id)
        if known is None or known[1].first_known_index > session.first_known_index:
            self.inbound[session.session_id] = (room_id, session)
        return session.session_id

    def decrypt_room_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """The clear event (`type` and `content` replaced) of an `m.room.encrypted` one."""
        content = event.get("content")
        if not isinstance(content, dict) or content.get("algorithm") != MEGOLM:
            raise DecryptionError("not a Megolm-encrypted room event")
        session_id, ciphertext = content.get("session_id"), content.get("ciphertext")
        if not isinstance(session_id, str) or not isinstance(ciphertext, str):
            raise DecryptionError("Megolm event without session_id or ciphertext")
        known = self.inbound.get(session_id)
        if known is None:
            raise MissingSessionError(session_id)
        room_id, session = known
        if room_id != event.get("room_id"):
            raise DecryptionError(f"session {session_id} belongs to another room")
        try:
            plaintext = session.decrypt(vz.MegolmMessage.from_base64(ciphertext)).plaintext
            clear = json.loads(plaintext)
        except (ValueError, vz.MegolmDecryptionException, vz.DecodeException) as e:
            raise DecryptionError(f"Megolm event does not decrypt: {e}") from e
        if (
            not isinstance(clear, dict)
            or clear.get("room_id") != room_id
            or not isinstance(clear.get("type"), str)
            or not isinstance(clear.get("content"), dict)
        ):
            raise DecryptionError("decrypted Megolm payload is malformed")
        return {**event, "type": clear["type"], "content": clear["content"]}

    def room_session(self, room_id: str, now_ms: int) -> OutboundRoomSession:
        """The room's current outbound session (a new one when rotation is due)."""
        current = self.outbound.get(room_id)
        if current is None or current.expired(now_ms):
            current = self.new_room_session(room_id, now_ms)
        return current

    def new_room_session(self, room_id: str, now_ms: int) -> OutboundRoomSession:
        """A fresh outbound session for the room, replacing its current one."""
        current = OutboundRoomSession(vz.GroupSession(), now_ms)
        self.outbound[room_id] = current
        # Our own messages must decrypt for us too (a retried event, a second worker).
        inbound = vz.InboundGroupSession(current.session.session_key)
        self.inbound[current.session.session_id] = (room_id, inbound)
        return current

    def room_key_content(self, room_id: str, outbound: OutboundRoomSession) -> dict[str, Any]:
        return {
            "algorithm": MEGOLM,
            "room_id": room_id,
            "session_id": outbound.session.session_id,
            "session_key": outbound.session.session_key.to_base64(),
        }

    def encrypt_room_event(
        self, room_id: str, kind: str, content: dict[str, Any], now_ms: int
    ) -> dict[str, Any]:
        """The `m.room.encrypted` content for a room event (share the session's key first)."""
        outbound = self.room_session(room_id, now_ms)
        plaintext = canonical_json({"type": kind, "content": content, "room_id": room_id})
        relation = content.get("m.relates_to")
        encrypted: dict[str, Any] = {
            "algorithm": MEGOLM,
            "sender_key": self.curve25519,
            "device_id": self.device_id,
            "session_id": outbound.session.session_id,
            "ciphertext": outbound.session.encrypt(plaintext).to_base64(),
        }
        if relation is not None:
            encrypted["m.relates_to"] = relation  # relations stay visible, as the spec says
        return encrypted
