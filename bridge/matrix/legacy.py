"""Legacy 1:1 VoIP (MSC2746, version "1"): event shapes, and reading what clients send.

What matrix-js-sdk's call code demands of a peer is in DESIGN §4: `type` beside `sdp`,
`party_id` on every event, a `lifetime` well above 3 s, candidates trickled after the offer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

CALL_INVITE = "m.call.invite"
CALL_ANSWER = "m.call.answer"
CALL_CANDIDATES = "m.call.candidates"
CALL_SELECT_ANSWER = "m.call.select_answer"
CALL_REJECT = "m.call.reject"
CALL_HANGUP = "m.call.hangup"
CALL_NEGOTIATE = "m.call.negotiate"
LEGACY_TYPES = {
    CALL_INVITE,
    CALL_ANSWER,
    CALL_CANDIDATES,
    CALL_SELECT_ANSWER,
    CALL_REJECT,
    CALL_HANGUP,
    CALL_NEGOTIATE,
}
VERSION = "1"
HANGUP_REASONS = {
    "ice_timeout",
    "ice_failed",
    "invite_timeout",
    "user_hangup",
    "user_media_failed",
    "user_busy",
    "unknown_error",
}


def new_party_id() -> str:
    return secrets.token_hex(8)


# What Element looks at to show its in-call dial pad.
CAPABILITIES = {"m.call.transferee": False, "m.call.dtmf": True}


def _base(call_id: str, party_id: str) -> dict[str, Any]:
    return {"call_id": call_id, "party_id": party_id, "version": VERSION}


def invite_content(
    call_id: str, party_id: str, sdp: str, lifetime_ms: int, invitee: str
) -> dict[str, Any]:
    return {
        **_base(call_id, party_id),
        "lifetime": lifetime_ms,
        "offer": {"type": "offer", "sdp": sdp},
        "invitee": invitee,
        "capabilities": CAPABILITIES,
    }


def answer_content(call_id: str, party_id: str, sdp: str) -> dict[str, Any]:
    return {
        **_base(call_id, party_id),
        "answer": {"type": "answer", "sdp": sdp},
        "capabilities": CAPABILITIES,
    }


def select_answer_content(call_id: str, party_id: str, selected: str) -> dict[str, Any]:
    return {**_base(call_id, party_id), "selected_party_id": selected}


def hangup_content(call_id: str, party_id: str, reason: str) -> dict[str, Any]:
    return {**_base(call_id, party_id), "reason": reason}


def reject_content(call_id: str, party_id: str) -> dict[str, Any]:
    return _base(call_id, party_id)


def negotiate_content(
    call_id: str, party_id: str, kind: str, sdp: str, lifetime_ms: int
) -> dict[str, Any]:
    return {
        **_base(call_id, party_id),
        "description": {"type": kind, "sdp": sdp},
        "lifetime": lifetime_ms,
    }


@dataclass(frozen=True)
class Candidate:
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True)
class LegacyEvent:
    """One MSC2746 event as the bridge uses it."""

    type: str
    event_id: str
    sender: str
    call_id: str
    party_id: str | None
    sdp: str | None = None  # offer, answer or negotiate description
    sdp_type: str | None = None
    lifetime_ms: int | None = None
    invitee: str | None = None
    reason: str | None = None
    selected_party_id: str | None = None
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)
    age_ms: int = 0

    @property
    def expired(self) -> bool:
        """An invite older than its lifetime minus 3 s is ignored, as clients do."""
        return self.lifetime_ms is not None and self.age_ms > self.lifetime_ms - 3000


def _description(content: dict[str, Any], key: str) -> tuple[str | None, str | None]:
    value = content.get(key)
    if isinstance(value, dict) and isinstance(value.get("sdp"), str):
        kind = value.get("type")
        return value["sdp"], kind if isinstance(kind, str) else None
    return None, None


def read_legacy(event: dict[str, Any]) -> LegacyEvent | None:
    """The MSC2746 event, or None if it is not one we can use (the reason is not ours)."""
    kind = event.get("type")
    content = event.get("content")
    if kind not in LEGACY_TYPES or not isinstance(content, dict):
        return None
    call_id = content.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        return None
    party = content.get("party_id")
    sdp, sdp_type = None, None
    if kind == CALL_INVITE:
        sdp, sdp_type = _description(content, "offer")
        if sdp is None:
            return None
    elif kind == CALL_ANSWER:
        sdp, sdp_type = _description(content, "answer")
        if sdp is None:
            return None
    elif kind == CALL_NEGOTIATE:
        sdp, sdp_type = _description(content, "description")
    candidates = []
    if kind == CALL_CANDIDATES:
        for item in content.get("candidates") or []:
            if isinstance(item, dict) and isinstance(item.get("candidate"), str):
                mid = item.get("sdpMid")
                index = item.get("sdpMLineIndex")
                candidates.append(
                    Candidate(
                        item["candidate"],
                        mid if isinstance(mid, str) else None,
                        index if isinstance(index, int) else None,
                    )
                )
    lifetime = content.get("lifetime")
    unsigned = event.get("unsigned")
    age = unsigned.get("age") if isinstance(unsigned, dict) else None
    reason = content.get("reason")
    selected = content.get("selected_party_id")
    invitee = content.get("invitee")
    return LegacyEvent(
        type=kind,
        event_id=str(event.get("event_id")),
        sender=str(event.get("sender")),
        call_id=call_id,
        party_id=party if isinstance(party, str) else None,
        sdp=sdp,
        sdp_type=sdp_type,
        lifetime_ms=lifetime if isinstance(lifetime, int) else None,
        invitee=invitee if isinstance(invitee, str) else None,
        reason=reason if isinstance(reason, str) else None,
        selected_party_id=selected if isinstance(selected, str) else None,
        candidates=tuple(candidates),
        age_ms=age if isinstance(age, int) else 0,
    )


def hangup_reason(outcome: str, sip_code: int | None, inbound: bool) -> str:
    """The MSC2746 reason for a call that ended on the SIP side (or the bridge's)."""
    if outcome == "busy":
        return "user_busy"
    if outcome == "no_answer":
        return "invite_timeout"
    if outcome in ("completed", "cancelled"):
        return "user_hangup"
    if sip_code in (408, 480):
        return "invite_timeout"
    return "unknown_error"
