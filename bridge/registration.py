"""`-g`: fresh appservice tokens, written into the config and a registration file."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from .config import Config, load_config


def user_namespaces(config: Config) -> list[dict[str, Any]]:
    domain = re.escape(config.homeserver.domain)
    prefix, suffix = config.bridge.username_template.split("{number}")
    return [
        {"regex": f"^@{re.escape(prefix)}.+{re.escape(suffix)}:{domain}$", "exclusive": True},
        {"regex": f"^@{re.escape(config.bridge.bot.username)}:{domain}$", "exclusive": True},
    ]


# What an encrypting appservice asks of Synapse (docs/encryption.md): to-device messages in
# its transactions (MSC2409/MSC4203), key counts and device lists (MSC3202), and devices of
# its own (MSC4190).
ENCRYPTION_REGISTRATION = {
    "receive_ephemeral": True,
    "org.matrix.msc3202": True,
    "io.element.msc4190": True,
}


def registration_for(config: Config, as_token: str, hs_token: str) -> dict[str, Any]:
    return {
        "id": config.appservice.id,
        "url": config.appservice.address,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": config.bridge.bot.username,
        "rate_limited": False,
        "namespaces": {"users": user_namespaces(config), "aliases": [], "rooms": []},
        **(ENCRYPTION_REGISTRATION if config.bridge.encryption != "off" else {}),
    }


def generate_registration(config_path: Path, registration_path: Path) -> dict[str, Any]:
    """Write new tokens into the config (keeping its comments) and the registration."""
    config = load_config(config_path, require_tokens=False)
    as_token = secrets.token_urlsafe(48)
    hs_token = secrets.token_urlsafe(48)
    yaml = YAML()  # round-trip: comments and order survive
    yaml.indent(mapping=4, sequence=4, offset=2)
    tree = yaml.load(config_path.read_text(encoding="utf-8"))
    tree.setdefault("appservice", {})
    tree["appservice"]["as_token"] = as_token
    tree["appservice"]["hs_token"] = hs_token
    with config_path.open("w", encoding="utf-8") as f:
        yaml.dump(tree, f)
    registration = registration_for(config, as_token, hs_token)
    plain = YAML()
    plain.default_flow_style = False
    with registration_path.open("w", encoding="utf-8") as f:
        plain.dump(registration, f)
    registration_path.chmod(0o640)  # it holds both tokens
    return registration
