"""Inbound routing rules: which trunk a source belongs to, and how a caller is named."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Protocol


class TrunkLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def allowed_sources(self) -> list[str]: ...


def source_ip(source: str) -> str:
    """'1.2.3.4:5060' or '[::1]:5060' → the address alone."""
    if source.startswith("["):
        return source[1:].split("]", 1)[0]
    return source.rsplit(":", 1)[0] if source.count(":") == 1 else source


def trunk_for_source(source: str, trunks: Sequence[TrunkLike]) -> TrunkLike | None:
    """The first trunk whose allowed sources contain this address; None: a stranger."""
    try:
        address = ipaddress.ip_address(source_ip(source))
    except ValueError:
        return None
    for trunk in trunks:
        for network in trunk.allowed_sources:
            if address in ipaddress.ip_network(network, strict=False):
                return trunk
    return None


def ghost_number(user: str) -> str:
    """What a caller's ghost is named after: the number, or a safe form of the SIP user."""
    cleaned = re.sub(r"[^a-z0-9+._=\-]", "", user.lower())
    return cleaned or "unknown"


def caller_label(number: str, display: str | None) -> str:
    """How people read the phone side: 'Erika Muster (+4940…)', or just the number."""
    name = (display or "").strip()
    return f"{name} ({number})" if name and name != number else number
