"""Fixtures that start the real services once per session, and a bridge per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from teststack.bridge_process import BridgeProcess
from teststack.configs import LocalStack
from teststack.matrix_client import MatrixUser
from teststack.postgres import Postgres

# The tests' name for the local stack: Synapse with the bridge's registration.
BridgeStack = LocalStack

PERMISSIONS = {"@alice:localhost": "admin", "@bob:localhost": "user"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("stack"), PERMISSIONS, log_level="DEBUG")
    local.start_homeserver()
    yield local
    local.auth.stop()
    local.livekit.stop()
    local.synapse.stop()


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
            tmp_path, stack.config_path, stack.ports.metrics, env, name=f"bridge{len(started) + 1}"
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
