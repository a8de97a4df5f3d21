"""Kamailio as the bridge's SIP edge, configured by the bridge's own edge-config."""

from __future__ import annotations

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
