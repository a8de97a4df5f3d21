"""A device's state for the database: every secret encrypted by vodozemac with the key."""

from __future__ import annotations

from typing import Any

import vodozemac as vz

from .olm_machine import OlmMachine, OutboundRoomSession


def pickle_machine(machine: OlmMachine, key: bytes) -> dict[str, Any]:
    """Everything the device holds, each secret encrypted by vodozemac with `key` (32 bytes)."""
    return {
        "account": machine.account.pickle(key),
        "olm": {peer: [s.pickle(key) for s in ss] for peer, ss in machine.olm_sessions.items()},
        "inbound": {sid: [room, s.pickle(key)] for sid, (room, s) in machine.inbound.items()},
        "outbound": {
            room: {
                "session": o.session.pickle(key),
                "created_ms": o.created_ms,
                "shared_with": sorted(o.shared_with),
            }
            for room, o in machine.outbound.items()
        },
    }


def unpickle_machine(user_id: str, device_id: str, data: dict[str, Any], key: bytes) -> OlmMachine:
    machine = OlmMachine(user_id, device_id, vz.Account.from_pickle(data["account"], key))
    machine.olm_sessions = {
        peer: [vz.Session.from_pickle(p, key) for p in pickles]
        for peer, pickles in data.get("olm", {}).items()
    }
    machine.inbound = {
        sid: (room, vz.InboundGroupSession.from_pickle(p, key))
        for sid, (room, p) in data.get("inbound", {}).items()
    }
    machine.outbound = {
        room: OutboundRoomSession(
            vz.GroupSession.from_pickle(o["session"], key), o["created_ms"], set(o["shared_with"])
        )
        for room, o in data.get("outbound", {}).items()
    }
    return machine
