"""Fixtures that start the real services once per session, and a bridge per test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from teststack.bridge_process import BridgeProcess, generate_registration
from teststack.matrix_client import MatrixUser
from teststack.postgres import Postgres
from teststack.procs import free_port, free_port_block, free_port_pair
from teststack.synapse import Synapse

MAX_WORKERS = 3


@dataclass
class BridgeStack:
    synapse: Synapse
    config_path: Path
    registration_path: Path
    config: dict[str, Any]
    as_port: int
    metrics_port: int
    sip_port: int
    trunk_port: int
    workdir: Path
    tokens: dict[str, str]

    @property
    def bot(self) -> str:
        return f"@sipbot:{self.synapse.server_name}"


def base_config(
    synapse: Synapse, as_port: int, metrics_port: int, sip_port: int, trunk_port: int
) -> dict[str, Any]:
    return {
        "homeserver": {"address": synapse.url, "domain": synapse.server_name},
        "appservice": {
            "address": f"http://127.0.0.1:{as_port}",
            "hostname": "127.0.0.1",
            "port": as_port,
            "id": "sip",
            "as_token": "generate",
            "hs_token": "generate",
        },
        "bridge": {
            "permissions": {
                "@alice:localhost": "admin",
                "@bob:localhost": "user",
            }
        },
        "database": {"url": "sqlite+aiosqlite:///bridge.db"},
        "sip": {
            "listen_host": "127.0.0.1",
            "port": sip_port,
            "trunks": [
                {
                    # SIPp plays both the provider calling in and the one we dial out to.
                    "name": "local",
                    "host": "127.0.0.1",
                    "port": trunk_port,
                    "allowed_sources": ["127.0.0.1/32"],
                    "caller_id": "+4930555000",
                    "dial_plan": {
                        "country_code": "49",
                        "allow": [r"^\+"],
                        "deny": [r"^\+49900", r"^\+881"],
                    },
                }
            ],
        },
        "workers": {"count": 1, "drain_timeout": 20, "restart_delay_max": 2},
        "media": {"rtp_port": sip_port + 1000, "rtp_ports_per_worker": 40},
        "matrixrtc": {
            "livekit_service_url": "http://127.0.0.1:1/livekit",
            "ring_lifetime": 20,
            "delayed_leave": 5,
            "delayed_leave_refresh": 2,
        },
        "logging": {"level": "DEBUG"},
        "metrics": {"enabled": True, "hostname": "127.0.0.1", "port": metrics_port},
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeStack]:
    workdir = tmp_path_factory.mktemp("stack")
    as_port, metrics_port = free_port(), free_port()
    sip_port = free_port_block(MAX_WORKERS)
    trunk_port = free_port_pair()
    registration = workdir / "registration.yaml"
    synapse = Synapse(workdir / "synapse", [registration])
    config = base_config(synapse, as_port, metrics_port, sip_port, trunk_port)
    config_path = workdir / "config.yaml"
    config_path.write_text(json.dumps(config, indent=2))
    generate_registration(config_path, registration)
    from ruamel.yaml import YAML

    written = YAML(typ="safe").load(config_path.read_text())
    tokens = {k: written["appservice"][k] for k in ("as_token", "hs_token")}
    synapse.start()
    yield BridgeStack(
        synapse,
        config_path,
        registration,
        config,
        as_port,
        metrics_port,
        sip_port,
        trunk_port,
        workdir,
        tokens,
    )
    synapse.stop()


@pytest.fixture
def start_bridge(stack: BridgeStack, tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """Start the bridge with env overrides; each gets its own SQLite database by default."""
    started: list[BridgeProcess] = []

    def start(env: dict[str, str] | None = None, wait: bool = True) -> BridgeProcess:
        env = {
            "SIPBRIDGE_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}",
            **(env or {}),
        }
        bridge = BridgeProcess(
            tmp_path, stack.config_path, stack.metrics_port, env, name=f"bridge{len(started) + 1}"
        )
        started.append(bridge)
        if wait:
            bridge.start()
        else:
            bridge.process.start()
        return bridge

    yield start
    for bridge in started:
        bridge.stop(timeout=30)


@pytest.fixture(scope="session")
def user_tokens(stack: BridgeStack) -> dict[str, str]:
    return {name: stack.synapse.register_user(name) for name in ("alice", "bob", "mallory")}


@pytest.fixture
async def alice(stack: BridgeStack, user_tokens: dict[str, str]) -> AsyncIterator[MatrixUser]:
    async with MatrixUser(stack.synapse.url, "@alice:localhost", user_tokens["alice"]) as user:
        yield user


@pytest.fixture
async def bob(stack: BridgeStack, user_tokens: dict[str, str]) -> AsyncIterator[MatrixUser]:
    async with MatrixUser(stack.synapse.url, "@bob:localhost", user_tokens["bob"]) as user:
        yield user


@pytest.fixture
async def mallory(stack: BridgeStack, user_tokens: dict[str, str]) -> AsyncIterator[MatrixUser]:
    async with MatrixUser(stack.synapse.url, "@mallory:localhost", user_tokens["mallory"]) as u:
        yield u


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.stop()
