"""A LiveKit server (the SFU Element Call uses) on 127.0.0.1, built by scripts/install-stack."""

from __future__ import annotations

import json
from pathlib import Path

from . import STACK_DIR
from .procs import ManagedProcess, free_port, free_port_block

BINARY = STACK_DIR / "livekit" / "livekit-server"
API_KEY = "bridgetests"
API_SECRET = "a-secret-of-at-least-thirty-two-characters"


class LiveKit:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.tcp_port = free_port()
        self.udp_start = free_port_block(40)
        self.url = f"ws://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "livekit",
            [str(BINARY), "--config", str(workdir / "livekit.yaml")],
            workdir / "livekit.log",
            cwd=workdir,
        )

    def start(self, timeout: float = 30.0) -> None:
        if not BINARY.exists():
            raise RuntimeError("LiveKit is not installed: run scripts/install-stack")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "rtc": {
                "tcp_port": self.tcp_port,
                "port_range_start": self.udp_start,
                "port_range_end": self.udp_start + 39,
                "use_external_ip": False,
                "node_ip": "127.0.0.1",
            },
            "keys": {API_KEY: API_SECRET},
            "logging": {"level": "info"},
        }
        (self.workdir / "livekit.yaml").write_text(json.dumps(config))
        self.process.start()
        self.process.wait_http(f"http://127.0.0.1:{self.port}/", timeout)

    def stop(self) -> None:
        self.process.stop()
