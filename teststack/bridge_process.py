"""The bridge as a user runs it: `python -m bridge -c config.yaml`, in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import ROOT
from .procs import ManagedProcess, kill_pid, pid_alive


def generate_registration(config_path: Path, registration_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "-g",
            "-c",
            str(config_path),
            "-r",
            str(registration_path),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


class BridgeProcess:
    def __init__(
        self,
        workdir: Path,
        config_path: Path,
        metrics_port: int,
        env: dict[str, str] | None = None,
        name: str = "bridge",
    ) -> None:
        self.workdir = workdir
        self.metrics_port = metrics_port
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = str(ROOT)
        self.process = ManagedProcess(
            name,
            [sys.executable, "-m", "bridge", "-c", str(config_path)],
            workdir / f"{name}.log",
            cwd=workdir,
            env=full_env,
        )
        self._worker_pids: set[int] = set()

    def start(self, timeout: float = 90.0) -> BridgeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        self.process.wait_http(f"http://127.0.0.1:{self.metrics_port}/health", timeout)
        self.worker_pids()
        return self

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.metrics_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                data: dict[str, Any] = json.load(r)
        except urllib.error.HTTPError as e:
            data = json.load(e)
        return data

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        key = f"{name}{{{wanted}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0

    def worker_pids(self) -> list[int]:
        pids = [w["pid"] for w in self.health()["workers"] if w.get("pid")]
        self._worker_pids.update(pids)
        return pids

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        code = self.process.stop(timeout=timeout, sig=sig)
        self.reap_workers()
        return code

    def reap_workers(self) -> None:
        """Workers notice a dead controller and exit; make sure, by PID."""
        for pid in self._worker_pids:
            if pid_alive(pid):
                kill_pid(pid)
