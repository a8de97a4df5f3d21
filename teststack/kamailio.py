"""Kamailio as the bridge's SIP edge, configured by the bridge's own edge-config."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.edge.files import write_edge_config
from bridge.edge.render import RPC_SOCKET
from bridge.edge.rpc import EdgeRpc

from .procs import ManagedProcess
from .rawsip import UdpPeer


def kamailio_binary() -> str:
    path = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not Path(path).exists():
        raise RuntimeError("Kamailio is not installed: run scripts/install-stack")
    return path


class Edge:
    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config = Config.model_validate(config)
        self.directory = self.config.edge.config_dir
        self.address = ("127.0.0.1", self.config.edge.port)
        self.process = ManagedProcess(
            "kamailio",
            [
                kamailio_binary(),
                "-f",
                str(self.directory / "kamailio.cfg"),
                "-DD",  # stay in the foreground, so the test owns its PID
                "-E",
                "-Y",
                str(self.directory),
                "-P",
                str(self.directory / "kamailio.pid"),
                "-m",
                "64",
                "-M",
                "8",
            ],
            workdir / "kamailio.log",
        )

    def start(self, timeout: float = 15.0) -> None:
        write_edge_config(self.config, self.directory)
        self.process.start()
        deadline = time.monotonic() + timeout
        with UdpPeer() as probe:
            while time.monotonic() < deadline:
                if not self.process.running():
                    raise RuntimeError(f"kamailio exited:\n{self.process.log_tail()}")
                replies = probe.ask(
                    self.address, probe.request(self.address, "OPTIONS", "sip:127.0.0.1"), 0.5
                )
                if any(r.code == 200 for r in replies):
                    return
        raise RuntimeError(f"kamailio did not answer OPTIONS:\n{self.process.log_tail()}")

    def stop(self) -> None:
        self.process.stop(timeout=10)


def dispatcher_flags(edge: Edge) -> dict[str, str]:
    """duid → the dispatcher's flags for that worker ('AX' active, 'IX' inactive...)."""
    listing = EdgeRpc(edge.directory.resolve() / RPC_SOCKET).call_blocking("dispatcher.list")
    flags: dict[str, str] = {}
    for record in listing["RECORDS"]:
        for target in record["SET"]["TARGETS"]:
            dest = target["DEST"]
            flags[dest["ATTRS"]["DUID"]] = dest["FLAGS"]
    return flags


def edge_layout(
    config: dict[str, Any],
    edge_dir: Path,
    port: int,
    workers: int,
    trunk_sources: list[str] | None = None,
    **edge_settings: Any,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The bridge's config with an edge in front of `workers`, and the same as env overrides.

    `trunk_sources`: the trunks' allowed sources instead of the ones in `config`."""
    trunks = [dict(t) for t in config["sip"]["trunks"]]
    if trunk_sources is not None:
        for trunk in trunks:
            trunk["allowed_sources"] = trunk_sources
    section = {"enabled": True, "port": port, "config_dir": str(edge_dir), **edge_settings}
    full = {
        **config,
        "sip": {**config["sip"], "trunks": trunks},
        "edge": section,
        "workers": {**config["workers"], "count": workers},
    }
    env = {
        "SIPBRIDGE_EDGE": json.dumps(section),
        "SIPBRIDGE_WORKERS__COUNT": str(workers),
        "SIPBRIDGE_SIP__TRUNKS": json.dumps(trunks),
    }
    return full, env


def all_workers_active(edge: Edge) -> bool:
    return set(dispatcher_flags(edge).values()) == {"AX"}
