"""Configuration: clear one-line errors, placeholders refused, env overrides, registration."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bridge.config import ConfigError, PermissionLevel, parse_config
from teststack import ROOT

EXAMPLE = ROOT / "bridge" / "example-config.yaml"


def minimal(**sections: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "homeserver": {"address": "http://127.0.0.1:8008", "domain": "hs.test"},
        "appservice": {"as_token": "a" * 20, "hs_token": "h" * 20},
    }
    for name, values in sections.items():
        tree.setdefault(name, {}).update(values)
    return tree


def error_of(tree: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(tree, "cfg.yaml", environ=environ or {})
    return str(info.value)


def test_defaults_are_usable() -> None:
    config = parse_config(minimal(), environ={})
    assert config.workers.count == 1
    assert config.database.url.startswith("sqlite+aiosqlite")
    assert config.bot_mxid == "@sipbot:hs.test"


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        (
            "workers",
            {"count": "two"},
            "cfg.yaml: workers.count = 'two': Input should be a valid integer",
        ),
        (
            "workers",
            {"count": 0},
            "cfg.yaml: workers.count = 0: Input should be greater than or equal to 1",
        ),
        (
            "sip",
            {"port": 70000},
            "cfg.yaml: sip.port = 70000: Input should be less than or equal to 65535",
        ),
        (
            "sip",
            {"listen_host": "my-host"},
            "cfg.yaml: sip.listen_host = 'my-host': expected an IP address",
        ),
        (
            "database",
            {"url": "mysql://x"},
            "cfg.yaml: database.url = 'mysql://x': expected sqlite+aiosqlite",
        ),
        (
            "homeserver",
            {"address": "matrix.org"},
            "cfg.yaml: homeserver.address = 'matrix.org': expected an http:// or https:// URL",
        ),
        (
            "bridge",
            {"username_template": "sip_"},
            "cfg.yaml: bridge.username_template = 'sip_': expected exactly one '{number}'",
        ),
        (
            "bridge",
            {"permissions": {"@a:hs": "root"}},
            "cfg.yaml: bridge.permissions.@a:hs = 'root': Input should be 'none', 'user' or "
            "'admin'",
        ),
        ("sip", {"trunkz": []}, "cfg.yaml: sip.trunkz: unknown key"),
        ("logging", {"level": "LOUD"}, "cfg.yaml: logging.level = 'LOUD': Input should be"),
    ],
)
def test_a_bad_key_gets_one_line_naming_key_value_and_expectation(
    section: str, values: dict[str, Any], expected: str
) -> None:
    message = error_of(minimal(**{section: values}))
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_required_keys_and_secrets_stay_hidden() -> None:
    message = error_of({"appservice": {"as_token": 5}})
    assert "cfg.yaml: homeserver: missing; this key is required" in message
    trunk = {"name": "p", "host": "h", "password": 12345, "port": "x"}
    message = error_of(minimal(sip={"trunks": [trunk]}))
    assert "sip.trunks.0.port = 'x'" in message
    # A password of the wrong type is named, but its value never printed.
    assert "12345" not in message


def test_placeholders_from_the_example_are_refused() -> None:
    tree = YAML(typ="safe").load(EXAMPLE.read_text())
    message = error_of(tree)
    lines = message.splitlines()
    assert (
        "cfg.yaml: homeserver.address = 'https://matrix.example.com': this is the example"
        " config's placeholder; set your own value" in lines
    )
    assert any(
        line.startswith("cfg.yaml: bridge.permissions.@admin:example.com:") for line in lines
    )


def test_tokens_must_be_generated_first() -> None:
    tree = minimal()
    tree["appservice"] = {"as_token": "generate", "hs_token": "generate"}
    assert "appservice.as_token is still 'generate': run `python -m bridge -g" in error_of(tree)


def test_environment_overrides_keys_with_their_types() -> None:
    env = {
        "SIPBRIDGE_WORKERS__COUNT": "3",
        "SIPBRIDGE_DATABASE__URL": "postgresql+asyncpg://u@db/bridge",
        "SIPBRIDGE_METRICS__ENABLED": "false",
        "SIPBRIDGE_BRIDGE__PERMISSIONS": "{'hs.test': user, '@boss:hs.test': admin}",
        "OTHER_VARIABLE": "ignored",
    }
    config = parse_config(minimal(workers={"count": 1}), environ=env)
    assert config.workers.count == 3
    assert config.database.url == "postgresql+asyncpg://u@db/bridge"
    assert config.metrics.enabled is False
    assert config.permission_of("@boss:hs.test") is PermissionLevel.ADMIN
    assert config.permission_of("@someone:hs.test") is PermissionLevel.USER
    assert config.permission_of("@someone:elsewhere") is PermissionLevel.NONE
    message = error_of(minimal(), {"SIPBRIDGE_WORKERS__COUNT": "many"})
    assert message.startswith("cfg.yaml: workers.count = 'many'")
    assert error_of(minimal(), {"SIPBRIDGE_WORKERS__COUNTS": "2"}).startswith(
        "cfg.yaml: workers.counts: unknown key"
    )


def test_permissions_most_specific_wins() -> None:
    config = parse_config(
        minimal(
            bridge={"permissions": {"*": "user", "evil.test": "none", "@ok:evil.test": "admin"}}
        ),
        environ={},
    )
    assert config.permission_of("@x:anywhere") is PermissionLevel.USER
    assert config.permission_of("@x:evil.test") is PermissionLevel.NONE
    assert config.permission_of("@ok:evil.test") is PermissionLevel.ADMIN


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
    )


def test_cli_refuses_a_broken_config_with_exit_code_10(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "homeserver: {address: 'http://127.0.0.1:8008', domain: hs.test}\n"
        "appservice: {as_token: aaaaaaaa, hs_token: hhhhhhhh}\nworkers: {count: -1}\n"
    )
    done = run_cli("-c", "config.yaml", cwd=tmp_path)
    assert done.returncode == 10
    assert done.stderr.strip() == (
        "config error: config.yaml: workers.count = -1: Input should be greater than or equal to 1"
    )
    (tmp_path / "bad.yaml").write_text("homeserver: [unclosed\n")
    done = run_cli("-c", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 10 and "bad.yaml: not valid YAML at line" in done.stderr


def test_generate_registration_writes_tokens_namespace_and_keeps_comments(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    text = EXAMPLE.read_text().replace("https://matrix.example.com", "https://matrix.hs.test")
    text = text.replace("example.com", "hs.test")
    config_path.write_text(text)
    done = run_cli("-g", "-c", "config.yaml", "-r", "registration.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    registration = YAML(typ="safe").load((tmp_path / "registration.yaml").read_text())
    config = YAML(typ="safe").load(config_path.read_text())
    assert registration["as_token"] == config["appservice"]["as_token"]
    assert registration["hs_token"] == config["appservice"]["hs_token"]
    assert (
        len(registration["as_token"]) >= 40 and registration["as_token"] != registration["hs_token"]
    )
    assert registration["sender_localpart"] == "sipbot"
    assert registration["rate_limited"] is False
    users = registration["namespaces"]["users"]
    assert all(ns["exclusive"] for ns in users)
    ghost = re.compile(users[0]["regex"])
    assert ghost.fullmatch("@sip_+4930123456:hs.test")
    assert not ghost.fullmatch("@sip_+4930123456:other.test")
    assert not ghost.fullmatch("@alice:hs.test")
    assert "# The bridge bot: invite it to a room" in config_path.read_text()
    # Fresh tokens every time.
    first = registration["as_token"]
    run_cli("-g", "-c", "config.yaml", "-r", "registration.yaml", cwd=tmp_path)
    again = YAML(typ="safe").load((tmp_path / "registration.yaml").read_text())
    assert again["as_token"] != first
    # The shipped example registration has the same shape.
    example = YAML(typ="safe").load((ROOT / "registration.yaml.example").read_text())
    assert set(example) == set(registration)


def test_example_config_documents_every_section() -> None:
    tree = YAML(typ="safe").load(EXAMPLE.read_text())
    for section in (
        "homeserver",
        "appservice",
        "bridge",
        "database",
        "sip",
        "workers",
        "edge",
        "media",
        "logging",
        "metrics",
    ):
        assert section in tree
