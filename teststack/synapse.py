"""A throwaway Synapse homeserver on 127.0.0.1 (installed by scripts/install-stack)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from . import STACK_DIR
from .procs import ManagedProcess, free_port

SYNAPSE_PYTHON = STACK_DIR / "synapse" / "bin" / "python"
SERVER_NAME = "localhost"

LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s %(levelname)s %(name)s: %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log}
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""

_GENEROUS = {"per_second": 1000, "burst_count": 1000}


def homeserver_config(
    workdir: Path, port: int, secret: str, registrations: list[Path]
) -> dict[str, Any]:
    return {
        "server_name": SERVER_NAME,
        "pid_file": str(workdir / "homeserver.pid"),
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "federation", "openid"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "log_config": str(workdir / "log.yaml"),
        "media_store_path": str(workdir / "media"),
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": secret,
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_registration": False,
        "app_service_config_files": [str(p) for p in registrations],
        # MSC4140 delayed events; Element Call relies on them for its membership.
        "max_event_delay_duration": "24h",
        "rc_message": _GENEROUS,
        "rc_registration": _GENEROUS,
        "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
        "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
        "rc_joins_per_room": _GENEROUS,
        "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
        "rc_delayed_event_mgmt": _GENEROUS,
        "rc_room_creation": _GENEROUS,
        # MSC4075: the push rules that make a ring notification ring (docs/element-x.md);
        # MSC2409 and MSC3202: to-device messages and key counts for the bridge's devices
        # (docs/encryption.md).
        "experimental_features": {
            "msc3266_enabled": True,
            "msc4075_enabled": True,
            "msc2409_to_device_messages_enabled": True,
            "msc3202_transaction_extensions": True,
        },
    }


class Synapse:
    def __init__(self, workdir: Path, registrations: list[Path]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_hex(16)
        self.registrations = registrations
        self.server_name = SERVER_NAME
        self.config_path = workdir / "homeserver.yaml"
        self.process = ManagedProcess(
            "synapse",
            [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            workdir / "synapse.out",
            cwd=workdir,
        )

    def start(self, timeout: float = 90.0) -> None:
        if not SYNAPSE_PYTHON.exists():
            raise RuntimeError("Synapse is not installed: run scripts/install-stack")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = homeserver_config(self.workdir, self.port, self.secret, self.registrations)
        self.config_path.write_text(json.dumps(config, indent=2))
        (self.workdir / "log.yaml").write_text(LOG_CONFIG.format(log=self.workdir / "synapse.log"))
        subprocess.run(
            [
                str(SYNAPSE_PYTHON),
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(self.config_path),
                "--generate-keys",
            ],
            check=True,
            cwd=self.workdir,
            capture_output=True,
        )
        self.process.start()
        self.process.wait_http(f"{self.url}/_matrix/client/versions", timeout)

    def stop(self) -> None:
        self.process.stop()

    def restart(self, timeout: float = 90.0) -> None:
        """Start again after stop(), with the same port, keys and database."""
        self.process.start()
        self.process.wait_http(f"{self.url}/_matrix/client/versions", timeout)

    def register_user(self, username: str, password: str = "pw", admin: bool = False) -> str:
        """Create a user with the shared secret; returns its access token."""
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        with urllib.request.urlopen(endpoint, timeout=10) as r:
            nonce = json.load(r)["nonce"]
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    username.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        body = {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        request = urllib.request.Request(
            endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return str(json.load(r)["access_token"])
