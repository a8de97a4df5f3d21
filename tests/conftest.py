"""Fixtures that start the real services once per session, and a bridge per test."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from teststack.bridge_process import BridgeProcess
from teststack.configs import LocalStack
from teststack.kamailio import Edge, all_workers_active, edge_layout
from teststack.matrix_client import MatrixUser
from teststack.postgres import Postgres
from teststack.procs import free_port_pair

# The tests' name for the local stack: Synapse with the bridge's registration.
BridgeStack = LocalStack

PERMISSIONS = {"@alice:localhost": "admin", "@bob:localhost": "user"}
PEER = {"username": "desk", "password": "correct horse battery"}


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


def records(tmp_path: Path) -> list[dict[str, Any]]:
    """The bridge's call records (its SQLite database in the test's folder)."""
    with sqlite3.connect(tmp_path / "bridge.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM calls ORDER BY started_at")]


@dataclass
class EdgeSetup:
    edge: Edge
    bridge: BridgeProcess

    @property
    def target(self) -> str:
        return f"{self.edge.address[0]}:{self.edge.address[1]}"


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"not reached in {timeout} s: {what}")


async def ended_records(tmp_path: Path, count: int) -> list[dict[str, Any]]:
    """The call records once `count` of them exist and all have ended."""

    def done() -> bool:
        rows = records(tmp_path)
        return len(rows) == count and all(r["state"] == "ended" for r in rows)

    await asyncio.to_thread(wait_for, done, 15, f"{count} ended call records")
    return records(tmp_path)


@pytest.fixture
def with_edge(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], tmp_path: Path
) -> Iterator[Callable[..., EdgeSetup]]:
    """Kamailio written from the bridge's config, then the bridge with edge.enabled."""
    edges: list[Edge] = []

    def start(
        workers: int = 2,
        trunk_sources: list[str] | None = None,
        bridge_env: dict[str, str] | None = None,
        **edge_settings: Any,
    ) -> EdgeSetup:
        """`trunk_sources`: the trunk's allowed sources instead of 127.0.0.1; `bridge_env`:
        more settings for the bridge."""
        config, env = edge_layout(
            stack.config,
            tmp_path / "edge",
            free_port_pair(),
            workers,
            trunk_sources,
            **{"peers": [PEER], **edge_settings},
        )
        edge = Edge(tmp_path, config)
        edges.append(edge)
        edge.start()
        bridge = start_bridge({**env, **(bridge_env or {})})
        wait_for(
            lambda: all_workers_active(edge), what="every worker active in the edge's dispatcher"
        )
        return EdgeSetup(edge, bridge)

    yield start
    for edge in edges:
        edge.stop()
