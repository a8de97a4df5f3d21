"""SIPp load through the SIP edge: python -m bench.edge_load [--rates 0.25,0.5] [--soak-minutes 30]

A real Synapse, LiveKit and Kamailio; the bridge with `--workers` call workers behind the
edge; `--rooms` rooms, each linked to its own number. SIPp plays a trunk calling those
numbers through the edge, one step per rate (calls per second) for `--step-seconds`, each call
held `--hold` seconds after its answer and then hung up by the phone. A Matrix user in every
room answers each ring by joining the call (MatrixRTC membership, so the worker joins the
LiveKit room as the phone) and leaves when the ghost does.

Per step it prints the calls placed, the share that succeeded (INVITE answered with 200,
BYE answered) and the set-up time percentiles (INVITE → 180 ringing, INVITE → 200 answered,
which includes the Matrix user's answer). With --soak-minutes it then runs calls at
`--soak-rate` for that long and prints the bridge's and the edge's memory and open
descriptors, sampled every 30 s.

The phones send no RTP (this measures signalling and call handling; bench.media measures
audio), so the bridge runs with media.rtp_timeout 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.setup_latency import percentile
from bridge.matrix.rtc import CALL_MEMBER, RTC_NOTIFICATION
from teststack.bridge_process import BridgeProcess
from teststack.configs import LocalStack
from teststack.kamailio import Edge, all_workers_active, edge_layout
from teststack.matrix_client import MatrixUser
from teststack.procs import free_port_pair
from teststack.rtc_user import join_call, leave_call
from teststack.sipp import SippResult, headers_of, phone_call_answered, start_sipp, timed_messages

BENCH_USER = "@bench:localhost"
GHOST_PREFIX = "@sip_"


def number_of(room_index: int) -> str:
    return f"+4930100{room_index:04d}"


def caller_of(room_index: int) -> str:
    return f"+4940100{room_index:04d}"


def load_scenario(hold_ms: int) -> str:
    """A trunk's call through the edge to the number and from the caller of the inject file."""
    xml = phone_call_answered(hold_ms, caller="[field1]", routed=True, answer_timeout_ms=30_000)
    return xml.replace("[service]", "[field0]")


@dataclass
class Answerer:
    """The Matrix user: joins each ringing call, leaves when the ghost has left."""

    user: MatrixUser
    auth_url: str
    in_call: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[object]] = field(default_factory=set)

    async def run(self) -> None:
        since, _ = await self.user.sync(None, 0)
        while True:
            try:
                since, events = await self.user.sync(since, 5000)
            except Exception as e:  # keep answering through a slow or failing request
                print(f"  (answerer: /sync failed: {e})")
                await asyncio.sleep(1)
                continue
            for event in events:
                self._on_event(event)

    def _on_event(self, event: dict[str, object]) -> None:
        sender = str(event.get("sender", ""))
        if not sender.startswith(GHOST_PREFIX):
            return
        room = str(event["room_id"])
        if event.get("type") == RTC_NOTIFICATION and room not in self.in_call:
            self.in_call.add(room)
            self._spawn(join_call(self.user, room, "BENCH", service=self.auth_url))
        elif event.get("type") == CALL_MEMBER and not event.get("content") and room in self.in_call:
            self.in_call.discard(room)
            self._spawn(leave_call(self.user, room, "BENCH"))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@dataclass
class StepResult:
    rate: float
    placed: int
    successful: int
    failed: int
    ringing_ms: list[float]
    answered_ms: list[float]
    failures: dict[str, int]

    @property
    def success(self) -> float:
        return self.successful / self.placed if self.placed else 0.0


def setup_times(result: SippResult) -> tuple[list[float], list[float], dict[str, int]]:
    """Per call: INVITE → 180 and INVITE → 200 in ms; and the final failure codes seen."""
    invites: dict[str, float] = {}
    ringing: list[float] = []
    answered: list[float] = []
    failures: dict[str, int] = {}
    seen_180: set[str] = set()
    for stamp, way, message in timed_messages(result.messages):
        call_id = headers_of(message).get("call-id", "")
        if way == "sent" and message.startswith("INVITE "):
            invites.setdefault(call_id, stamp)
        elif way == "received" and message.startswith("SIP/2.0 ") and call_id in invites:
            code = int(message[8:11])
            took = (stamp - invites[call_id]) * 1000
            if code == 180 and call_id not in seen_180:
                seen_180.add(call_id)
                ringing.append(took)
            elif code == 200 and "INVITE" in headers_of(message).get("cseq", ""):
                answered.append(took)
            elif code >= 300:
                failures[str(code)] = failures.get(str(code), 0) + 1
    return ringing, answered, failures


def write_inject_file(path: Path, rooms: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["SEQUENTIAL"] + [f"{number_of(i)};{caller_of(i)}" for i in range(rooms)]
    path.write_text("\n".join(lines) + "\n")


async def run_calls(
    workdir: Path, edge: Edge, rooms: int, rate: float, seconds: float, hold: float
) -> StepResult:
    calls = max(1, round(rate * seconds))
    inject = workdir / "calls.csv"
    write_inject_file(inject, rooms)
    sipp = start_sipp(
        workdir,
        load_scenario(int(hold * 1000)),
        f"{edge.address[0]}:{edge.address[1]}",
        calls=calls,
        rate=rate,
        timeout=seconds + hold + 90,
        extra_args=("-inf", str(inject), "-l", str(rooms)),
    )
    result = await asyncio.to_thread(sipp.wait)
    ringing, answered, failures = setup_times(result)
    return StepResult(rate, calls, result.successful, result.failed, ringing, answered, failures)


def describe(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 0.5):6.0f} ms  p95 {percentile(values, 0.95):6.0f} ms  "
        f"p99 {percentile(values, 0.99):6.0f} ms  max {max(values):6.0f} ms"
    )


def report_step(step: StepResult) -> None:
    failures = ", ".join(f"{n} x {code}" for code, n in sorted(step.failures.items()))
    print(
        f"rate {step.rate:5.2f}/s: {step.successful}/{step.placed} calls succeeded "
        f"({step.success:.1%}), {step.failed} failed{f' ({failures})' if failures else ''}"
    )
    print(f"    INVITE → 180: {describe(step.ringing_ms)}")
    print(f"    INVITE → 200: {describe(step.answered_ms)}")


def worker_restarts(bridge: BridgeProcess) -> int:
    return sum(int(w["restarts"]) for w in bridge.health()["workers"])


def process_group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except ProcessLookupError:
                continue
    return pids


def rss_and_fds(pids: Iterable[int]) -> tuple[float, int]:
    """Resident memory (MiB) and open descriptors, summed over the processes."""
    rss_kib, fds = 0, 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kib += int(
                next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))
            )
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            continue
    return rss_kib / 1024, fds


async def soak(
    workdir: Path,
    bridge: BridgeProcess,
    edge: Edge,
    rooms: int,
    rate: float,
    minutes: float,
    hold: float,
) -> None:
    samples: list[tuple[float, float, int, float, int, int]] = []
    started = time.monotonic()

    def sample() -> None:
        bridge_pids = [bridge.pid, *bridge.worker_pids()]
        rss, fds = rss_and_fds(bridge_pids)
        edge_rss, edge_fds = rss_and_fds(process_group(edge.process.pid))
        calls = sum(int(w["active_calls"]) for w in bridge.health()["workers"])
        samples.append(((time.monotonic() - started) / 60, rss, fds, edge_rss, edge_fds, calls))

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(30)

    sampling = asyncio.create_task(sampler())
    restarts = worker_restarts(bridge)
    step = await run_calls(workdir / "soak", edge, rooms, rate, minutes * 60, hold)
    restarts = worker_restarts(bridge) - restarts
    sampling.cancel()
    await asyncio.sleep(10)  # the last calls' ghosts leave, the workers settle
    sample()
    print(f"\nsoak: {minutes:.0f} min at {rate}/s, calls held {hold:.0f} s")
    report_step(step)
    print(f"    worker restarts: {restarts}")
    print("  minute  calls  bridge RSS MiB  bridge fds  edge RSS MiB  edge fds")
    for minute, rss, fds, edge_rss, edge_fds, calls in samples:
        print(
            f"  {minute:6.1f}  {calls:5d}  {rss:14.1f}  {fds:10d}  {edge_rss:12.1f}  {edge_fds:8d}"
        )
    warm = next((s for s in samples if s[0] >= 5), samples[0])
    last = samples[-1]
    print(
        f"  after warm-up (minute {warm[0]:.1f}) to the end: bridge RSS {last[1] - warm[1]:+.1f} "
        f"MiB, bridge fds {last[2] - warm[2]:+d}, edge RSS {last[3] - warm[3]:+.1f} MiB, "
        f"edge fds {last[4] - warm[4]:+d}"
    )


async def link_rooms(stack: LocalStack, user: MatrixUser, rooms: int) -> None:
    for i in range(rooms):
        room = await user.create_room(
            invite=[stack.bot], power_level_content_override={"users": {stack.bot: 100}}
        )
        await user.wait_for_membership(room, stack.bot, "join")
        await user.send_text(room, f"!sip link {number_of(i)}")
    # The last link answered means all are in place: the bot handles a room's commands in order.
    await user.wait_for_event(
        room,
        lambda e: e.get("sender") == stack.bot and "now ring" in str(e.get("content", {})),
        timeout=60,
    )


async def run(args: argparse.Namespace, workdir: Path, stack: LocalStack) -> None:
    config, env = edge_layout(stack.config, workdir / "edge", free_port_pair(), args.workers)
    edge = Edge(workdir, config)
    edge.start()
    try:
        bridge = stack.start_bridge({**env, "SIPBRIDGE_MEDIA__RTP_TIMEOUT": "0"})
        deadline = time.monotonic() + 30
        while not all_workers_active(edge):
            if time.monotonic() > deadline:
                raise RuntimeError("the edge never saw every worker active")
            await asyncio.sleep(0.5)
        token = stack.synapse.register_user("bench")
        async with MatrixUser(stack.synapse.url, BENCH_USER, token) as user:
            await link_rooms(stack, user, args.rooms)
            answerer = Answerer(user, stack.auth.url)
            answering = asyncio.create_task(answerer.run())
            slots = args.workers * 4
            print(
                f"edge: Kamailio, {args.workers} workers ({slots} call slots), {args.rooms} "
                f"numbers/rooms, calls held {args.hold:.0f} s, steps of {args.step_seconds:.0f} s"
            )
            best = None
            for n, rate in enumerate(args.rates):
                restarts = worker_restarts(bridge)
                step = await run_calls(
                    workdir / f"step{n}", edge, args.rooms, rate, args.step_seconds, args.hold
                )
                report_step(step)
                print(f"    worker restarts: {worker_restarts(bridge) - restarts}")
                if step.success >= 0.999:
                    best = rate
                await asyncio.sleep(args.hold)  # let the step's last calls clear
            if args.rates:
                print(f"highest rate with ≥ 99.9 % successful calls: {best}/s")
            if args.soak_minutes:
                await soak(
                    workdir, bridge, edge, args.rooms, args.soak_rate, args.soak_minutes, args.hold
                )
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering
    finally:
        edge.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rooms", type=int, default=48)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds a call lasts")
    parser.add_argument(
        "--rates",
        type=lambda s: [float(r) for r in s.split(",") if r],
        default=[0.25, 0.5, 0.75, 1.0],
    )
    parser.add_argument("--step-seconds", type=float, default=120.0)
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    parser.add_argument("--soak-rate", type=float, default=0.4)
    parser.add_argument("--workdir", type=Path, help="keep logs and databases here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-load-") as tmp:
        workdir = args.workdir or Path(tmp)
        stack = LocalStack(
            workdir / "stack", {BENCH_USER: "admin"}, log_level="INFO", workers=args.workers
        )
        stack.start_homeserver()
        try:
            asyncio.run(run(args, workdir, stack))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
