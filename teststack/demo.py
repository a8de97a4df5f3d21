"""The bridge's main job, end to end on this machine, with embedded defaults.

A local Synapse, the bridge on SQLite with one call worker, a Matrix user who talks to the
bot, and a scripted phone (SIPp) that calls in. Prints what happens; stops everything.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from . import ROOT
from .bridge_process import BridgeProcess, generate_registration
from .matrix_client import Event, MatrixUser
from .procs import free_port, free_port_block
from .sipp import invite_expecting, responses, run_sipp
from .synapse import Synapse

DEMO_DIR = ROOT / ".demo"
DEMO_NUMBER = "+4930123456"
CALLER = "+4940555666"


def say(text: str) -> None:
    print(text, flush=True)


def demo_config(synapse: Synapse, as_port: int, metrics_port: int, sip_port: int) -> dict[str, Any]:
    """Only what differs from the bridge's built-in defaults."""
    return {
        "homeserver": {"address": synapse.url, "domain": synapse.server_name},
        "appservice": {"address": f"http://127.0.0.1:{as_port}", "port": as_port},
        "bridge": {"permissions": {"@demo:localhost": "admin"}},
        "sip": {"port": sip_port},
        "media": {"rtp_port": sip_port + 100, "rtp_ports_per_worker": 40},
        "metrics": {"port": metrics_port},
    }


def is_bot_notice(bot: str, text: str) -> Any:
    def match(event: Event) -> bool:
        content = event.get("content", {})
        return event.get("sender") == bot and text in content.get("body", "")

    return match


def call_records(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM calls ORDER BY started_at")]


async def run(workdir: Path) -> int:
    as_port, metrics_port, sip_port = free_port(), free_port(), free_port_block(1)
    registration = workdir / "registration.yaml"
    synapse = Synapse(workdir / "synapse", [registration])
    config_path = workdir / "config.yaml"
    config_path.write_text(json.dumps(demo_config(synapse, as_port, metrics_port, sip_port)))
    generate_registration(config_path, registration)
    say(f"1. Registration written ({registration.name}); starting Synapse on {synapse.url}")
    synapse.start()
    bridge = BridgeProcess(workdir, config_path, metrics_port)
    try:
        token = synapse.register_user("demo")
        say(f"2. Starting the bridge (SQLite, 1 call worker, SIP on 127.0.0.1:{sip_port})")
        bridge.start()
        workers = bridge.health()["workers"]
        say(f"   ready: worker pid {workers[0]['pid']}, capacity {workers[0]['capacity']} calls")
        bot = f"@sipbot:{synapse.server_name}"
        async with MatrixUser(synapse.url, "@demo:localhost", token) as demo:
            say("3. @demo:localhost opens a DM with the bot and types `!sip status`")
            room = await demo.create_room(invite=[bot], is_direct=True)
            await demo.wait_for_membership(room, bot, "join")
            await demo.send_text(room, "!sip status")
            reply = await demo.wait_for_event(room, is_bot_notice(bot, "Call workers"))
            for line in reply["content"]["body"].splitlines():
                say(f"   bot: {line}")
        say(f"4. A phone ({CALLER}) calls {DEMO_NUMBER}, which no room is linked to yet")
        result = run_sipp(
            workdir / "sipp",
            f"127.0.0.1:{sip_port}",
            invite_expecting(404, caller=CALLER, caller_name="Demo Phone"),
            service=DEMO_NUMBER,
        )
        say(f"   the phone received: {', '.join(map(str, responses(result.messages)))}")
        for _ in range(50):
            records = call_records(workdir / "sip-bridge.db")
            if records and records[-1]["state"] == "ended":
                break
            await asyncio.sleep(0.1)
        record = records[-1]
        say("5. The call record the controller wrote:")
        for key in (
            "direction",
            "caller",
            "caller_name",
            "callee",
            "worker_id",
            "outcome",
            "sip_code",
            "reason",
        ):
            say(f"   {key}: {record[key]}")
        ok = result.ok and record["sip_code"] == 404
    finally:
        code = bridge.stop()
        synapse.stop()
    say(f"6. Bridge stopped (exit code {code}); Synapse stopped.")
    return 0 if ok and code == 0 else 1


def main() -> int:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir()
    code = asyncio.run(run(DEMO_DIR))
    say("Demo " + ("succeeded." if code == 0 else f"FAILED; logs are in {DEMO_DIR}"))
    return code


if __name__ == "__main__":
    sys.exit(main())
