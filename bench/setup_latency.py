"""Call set-up latency through a real Synapse: python -m bench.setup_latency [--calls N]

Prints p50/p95 of
- INVITE sent by the phone → the ring (rtc.notification) arriving in the Matrix user's /sync;
- the Matrix user's membership sent → the phone receiving 200 OK.
Calls are placed one after another (this measures latency, not load).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bridge.matrix.rtc import RTC_NOTIFICATION
from teststack.configs import LocalStack
from teststack.matrix_client import MatrixUser
from teststack.rtc_user import join_call, leave_call
from teststack.sipp import phone_call_answered, start_sipp, timed_messages

NUMBER = "+4930123456"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


async def one_call(
    stack: LocalStack, user: MatrixUser, room: str, since: str, i: int, workdir: Path
) -> tuple[float, float, str]:
    caller = f"+49401{i:06d}"
    ghost = f"@sip_{caller}:localhost"
    phone = start_sipp(
        workdir / f"call{i}",
        phone_call_answered(300, caller=caller),
        f"127.0.0.1:{stack.ports.sip}",
        service=NUMBER,
    )
    ring_seen = None
    deadline = time.monotonic() + 20
    while ring_seen is None and time.monotonic() < deadline:
        since, events = await user.sync(since, 5000)
        if any(e["type"] == RTC_NOTIFICATION and e["sender"] == ghost for e in events):
            ring_seen = time.time()
    if ring_seen is None:
        raise TimeoutError(f"call {i}: no ring in /sync")
    joined = time.time()
    await join_call(user, room, "BENCH", service=stack.auth.url)
    result = await asyncio.to_thread(phone.wait)
    if not result.ok:
        raise RuntimeError(f"call {i} failed: {result.output[-500:]}")
    log = timed_messages(result.messages)
    invite_sent = next(t for t, way, m in log if way == "sent" and m.startswith("INVITE "))
    answered = next(t for t, way, m in log if way == "received" and m.startswith("SIP/2.0 200"))
    await leave_call(user, room, "BENCH")
    await asyncio.sleep(0.5)  # let the ghost leave before the next call
    return ring_seen - invite_sent, answered - joined, since


async def run(stack: LocalStack, calls: int, workdir: Path) -> None:
    token = stack.synapse.register_user("bench")
    stack.start_bridge()
    async with MatrixUser(stack.synapse.url, "@bench:localhost", token) as user:
        room = await user.create_room(
            invite=[stack.bot], power_level_content_override={"users": {stack.bot: 100}}
        )
        await user.wait_for_membership(room, stack.bot, "join")
        await user.send_text(room, f"!sip link {NUMBER}")
        await asyncio.sleep(1.0)
        since, _ = await user.sync(None, 0)
        rings, answers = [], []
        for i in range(calls):
            ring, answer, since = await one_call(stack, user, room, since, i, workdir)
            rings.append(ring * 1000)
            answers.append(answer * 1000)
    print(f"calls: {calls} (sequential), bridge with 1 worker, Synapse on SQLite, loopback")
    for name, values in (("INVITE → ring in /sync", rings), ("membership → SIP 200", answers)):
        print(
            f"{name:>24}: p50 {percentile(values, 0.5):6.1f} ms   "
            f"p95 {percentile(values, 0.95):6.1f} ms   "
            f"min {min(values):6.1f}   max {max(values):6.1f}   "
            f"mean {statistics.mean(values):6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="setup-latency-") as tmp:
        workdir = Path(tmp)
        stack = LocalStack(workdir / "stack", {"@bench:localhost": "admin"})
        stack.start_homeserver()
        try:
            asyncio.run(run(stack, args.calls, workdir))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
