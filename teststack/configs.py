"""The bridge as the tests, the demo and the benchmarks run it: Synapse, SIPp as the trunk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from .bridge_process import BridgeProcess, generate_registration
from .livekit import LiveKit
from .procs import free_port, free_port_block, free_port_pair
from .rtc_auth import AuthServiceProcess
from .synapse import Synapse


@dataclass(frozen=True)
class Ports:
    appservice: int
    metrics: int
    sip: int  # worker N listens on sip + N - 1
    trunk: int  # where SIPp plays the provider the bridge dials out to

    @classmethod
    def free(cls, workers: int = 3) -> Ports:
        return cls(free_port(), free_port(), free_port_block(workers), free_port_pair())


def bridge_config(
    synapse: Synapse,
    ports: Ports,
    permissions: dict[str, str],
    log_level: str = "INFO",
    rtc_service: str = "http://127.0.0.1:1/unused",
) -> dict[str, Any]:
    return {
        "homeserver": {"address": synapse.url, "domain": synapse.server_name},
        "appservice": {
            "address": f"http://127.0.0.1:{ports.appservice}",
            "hostname": "127.0.0.1",
            "port": ports.appservice,
        },
        "bridge": {"permissions": permissions, "encryption": "allow"},
        "sip": {
            "listen_host": "127.0.0.1",
            "port": ports.sip,
            "trunks": [
                {
                    # SIPp plays both the provider calling in and the one we dial out to.
                    "name": "local",
                    "host": "127.0.0.1",
                    "port": ports.trunk,
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
        "media": {
            "rtp_port": ports.sip + 1000,
            "rtp_ports_per_worker": 40,
            "webrtc_host_addresses": ["127.0.0.1"],  # tests stay on loopback
        },
        "matrixrtc": {
            "livekit_service_url": rtc_service,
            "ring_lifetime": 20,
            "delayed_leave": 5,
            "delayed_leave_refresh": 2,
        },
        "logging": {"level": log_level},
        "metrics": {"enabled": True, "hostname": "127.0.0.1", "port": ports.metrics},
    }


class LocalStack:
    """Synapse with the bridge's registration, and the bridge: start, use, stop."""

    def __init__(
        self,
        workdir: Path,
        permissions: dict[str, str],
        log_level: str = "INFO",
        workers: int = 3,
    ):
        self.workdir = workdir
        self.ports = Ports.free(workers)
        self.registration = workdir / "registration.yaml"
        self.synapse = Synapse(workdir / "synapse", [self.registration])
        self.livekit = LiveKit(workdir / "livekit")
        self.auth = AuthServiceProcess(workdir, self.synapse.url, self.livekit.url)
        self.config_path = workdir / "config.yaml"
        self.config = bridge_config(
            self.synapse, self.ports, permissions, log_level, rtc_service=self.auth.url
        )
        self.bridge: BridgeProcess | None = None
        self.tokens: dict[str, str] = {}

    @property
    def bot(self) -> str:
        return f"@sipbot:{self.synapse.server_name}"

    def start_homeserver(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config, indent=2))
        generate_registration(self.config_path, self.registration)
        written = YAML(typ="safe").load(self.config_path.read_text())
        self.tokens = {k: written["appservice"][k] for k in ("as_token", "hs_token")}
        self.synapse.start()
        self.livekit.start()
        self.auth.start()

    def start_bridge(self, env: dict[str, str] | None = None) -> BridgeProcess:
        self.bridge = BridgeProcess(self.workdir, self.config_path, self.ports.metrics, env)
        return self.bridge.start()

    def stop(self) -> int | None:
        code = self.bridge.stop() if self.bridge is not None else None
        self.auth.stop()
        self.livekit.stop()
        self.synapse.stop()
        return code
