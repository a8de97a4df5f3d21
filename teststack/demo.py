"""The bridge's main job, end to end on this machine, with embedded defaults.

A local Synapse; the bridge on SQLite with one call worker; a Matrix user who links numbers
to a room. A real softphone (baresip) calls in and the Matrix user answers over WebRTC:
tones cross both ways and are measured. Then a phone rings the room's MatrixRTC call, and
the user calls a phone with `!sip call`. Prints what happens, then stops everything.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.matrix.rtc import CALL_MEMBER, RTC_NOTIFICATION

from . import ROOT
from .audio import analyse, loudest_stretch, read_wav, tone, write_wav
from .baresip import Baresip
from .configs import LocalStack
from .legacy_client import LegacyCaller
from .matrix_client import Event, MatrixUser
from .rtc_user import join_call
from .sipp import phone_call_answered, responses, start_sipp, trunk_answers

DEMO_DIR = ROOT / ".demo"
NUMBER = "+4930123456"
AUDIO_NUMBER = "+4930123400"
CALLER = "+4940555666"
CALLEE = "+4930777888"
PHONE_HZ, MATRIX_HZ = 440.0, 1000.0


def say(text: str) -> None:
    print(text, flush=True)


def from_sender(sender: str, event_type: str, body: str | None = None) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        if event.get("sender") != sender or event.get("type") != event_type:
            return False
        return body is None or body in event.get("content", {}).get("body", "")

    return match


def last_record(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM calls ORDER BY started_at DESC LIMIT 1").fetchone()
        return dict(row) if row else {}


async def wait_ended(db: Path) -> dict[str, Any]:
    for _ in range(100):
        record = last_record(db)
        if record.get("state") == "ended":
            return record
        await asyncio.sleep(0.1)
    raise TimeoutError("the call record was not closed")


def show_record(record: dict[str, Any]) -> None:
    for key in (
        "direction",
        "caller",
        "caller_name",
        "callee",
        "trunk",
        "matrix_user",
        "outcome",
        "sip_code",
        "reason",
    ):
        say(f"     {key}: {record[key]}")


async def run(stack: LocalStack) -> bool:
    token = stack.synapse.register_user("demo")
    say(f"2. Starting the bridge (SQLite, 1 call worker, SIP on 127.0.0.1:{stack.ports.sip})")
    bridge = stack.start_bridge()
    worker = bridge.health()["workers"][0]
    say(f"   ready: worker pid {worker['pid']}, capacity {worker['capacity']} calls")
    db = stack.workdir / "sip-bridge.db"
    async with MatrixUser(stack.synapse.url, "@demo:localhost", token) as demo:
        say(f"3. @demo:localhost makes a room with the bot and types `!sip link {NUMBER}`")
        room = await demo.create_room(
            invite=[stack.bot], power_level_content_override={"users": {stack.bot: 100}}
        )
        await demo.wait_for_membership(room, stack.bot, "join")
        await demo.send_text(room, f"!sip link {NUMBER}")
        reply = await demo.wait_for_event(room, from_sender(stack.bot, "m.room.message", "ring"))
        say(f"   bot: {reply['content']['body']}")
        await demo.send_text(room, "!sip status")
        reply = await demo.wait_for_event(
            room, from_sender(stack.bot, "m.room.message", "Call workers")
        )
        for line in reply["content"]["body"].splitlines():
            say(f"   bot: {line}")

        audio_ok = await audio_call(stack, demo, room, db)

        say(
            f"5. A phone ({CALLER}, 'Demo Phone') calls {NUMBER}, which rings the room's "
            "MatrixRTC call"
        )
        phone = start_sipp(
            stack.workdir / "phone",
            phone_call_answered(2000, caller=CALLER, caller_name="Demo Phone"),
            f"127.0.0.1:{stack.ports.sip}",
            service=NUMBER,
        )
        ghost = f"@sip_{CALLER}:localhost"
        await demo.wait_for_event(room, from_sender(ghost, CALL_MEMBER))
        ring = await demo.wait_for_event(room, from_sender(ghost, RTC_NOTIFICATION))
        say(
            f"   {ghost} joined the room's call and rang it "
            f"({ring['content']['notification_type']}, "
            f"lifetime {ring['content']['lifetime'] // 1000} s)"
        )
        await asyncio.sleep(1)
        say("   @demo:localhost answers (joins the call); the phone hangs up after 2 s")
        await join_call(demo, room, "DEMO", service=stack.auth.url)
        result = await asyncio.to_thread(phone.wait)
        say(f"   the phone received: {', '.join(map(str, responses(result.messages)))}")
        notice = await demo.wait_for_event(room, from_sender(ghost, "m.room.message", "Call with"))
        say(f"   room notice: {notice['content']['body']}")
        record = await wait_ended(db)
        say("   call record:")
        show_record(record)
        inbound_ok = result.ok and record["outcome"] == "completed"

        say(f"6. @demo:localhost types `!sip call {CALLEE}`; the far end answers, talks 2 s")
        trunk = start_sipp(
            stack.workdir / "trunk",
            trunk_answers(300, hang_up_after_ms=2000),
            local_port=stack.ports.trunk,
        )
        started = time.monotonic()
        await demo.send_text(room, f"!sip call {CALLEE}")
        reply = await demo.wait_for_event(room, from_sender(stack.bot, "m.room.message", "Calling"))
        say(f"   bot: {reply['content']['body']}")
        result = await asyncio.to_thread(trunk.wait)
        record = await wait_ended(db)
        say(
            f"   the far end answered and hung up after {time.monotonic() - started:.1f} s; "
            "call record:"
        )
        show_record(record)
        outbound_ok = result.ok and record["direction"] == "outbound"
    return audio_ok and inbound_ok and outbound_ok


async def audio_call(stack: LocalStack, demo: MatrixUser, room: str, db: Path) -> bool:
    say(
        f"4. `!sip link {AUDIO_NUMBER} legacy`; a softphone (baresip) calls it, playing "
        f"{PHONE_HZ:.0f} Hz"
    )
    await demo.send_text(room, f"!sip link {AUDIO_NUMBER} legacy")
    await demo.wait_for_event(room, from_sender(stack.bot, "m.room.message", "legacy"))
    wav = write_wav(stack.workdir / "phone.wav", tone(PHONE_HZ, 30, 8000), 8000)
    phone = Baresip(stack.workdir / "softphone", wav, user="softphone")
    await phone.start()
    matrix = LegacyCaller(demo, room, MATRIX_HZ)
    try:
        await phone.dial(f"sip:{AUDIO_NUMBER}@127.0.0.1:{stack.ports.sip}")
        await matrix.answer("@sip_softphone:localhost")
        await phone.wait_event("CALL_ESTABLISHED", 20)
        await matrix.wait_connected()
        say(f"   @demo:localhost answered over WebRTC, sending {MATRIX_HZ:.0f} Hz; talking 4 s")
        await asyncio.sleep(4)
        await matrix.hangup()
        await phone.wait_event("CALL_CLOSED", 15)
        matrix_heard = analyse(loudest_stretch(matrix.recording(), 16000, 2.5), 16000)
        samples, rate = read_wav(phone.received_audio())
        phone_heard = analyse(loudest_stretch(samples, rate, 2.5), rate)
    finally:
        await matrix.close()
        await phone.stop()
    for who, report in (("Matrix user", matrix_heard), ("phone", phone_heard)):
        say(
            f"   the {who} heard {report.frequency:.0f} Hz at {report.level_dbfs:.1f} dBFS "
            f"({report.purity:.0%} of the energy in the tone)"
        )
    record = await wait_ended(db)
    say("   call record:")
    show_record(record)
    return matrix_heard.is_tone(PHONE_HZ) and phone_heard.is_tone(MATRIX_HZ)


def main() -> int:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    stack = LocalStack(DEMO_DIR, {"@demo:localhost": "admin"})
    say(f"1. Writing config and registration; starting Synapse on {stack.synapse.url}")
    ok = False
    try:
        stack.start_homeserver()
        ok = asyncio.run(run(stack))
    finally:
        code = stack.stop()
    say(f"7. Bridge stopped (exit code {code}); Synapse stopped.")
    say("Demo " + ("succeeded." if ok and code == 0 else f"FAILED; logs are in {DEMO_DIR}"))
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
