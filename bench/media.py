"""Concurrent calls with audio both ways: python -m bench.media [--calls 20] [--seconds 30]

Phones (pjsua2 echo phones, 4 calls each) call numbers linked to rooms in legacy mode; a
Matrix client (aiortc) answers each call and sends timestamped 1 kHz bursts, which the phone
sends straight back. Each client must hear its own bursts: audio crossed the bridge both
ways. Prints, for the bridge's own processes: CPU seconds per call-second (controller and
workers), peak RSS per call, frame underruns/overruns, and the round trip of the bursts
(phone → bridge → Matrix and back; one way through the bridge is at most half of it).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bridge.matrix.rtc import RTC_NOTIFICATION
from teststack.configs import LocalStack
from teststack.legacy_client import FRAME, RATE, LegacyCaller, PacedTrack
from teststack.matrix_client import MatrixUser
from teststack.rtc_participant import RtcParticipant

BURST_EVERY = 1.0  # seconds
BURST_LENGTH = 0.06
CALLS_PER_PHONE = 4
TICKS = os.sysconf("SC_CLK_TCK")


class BurstTrack(PacedTrack):
    """Silence with a 60 ms, 1 kHz burst every second; remembers when each burst left."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []

    def samples(self, t: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, Any]:
        in_burst = (t % BURST_EVERY) < BURST_LENGTH
        if in_burst[0] and t[0] % BURST_EVERY < FRAME / RATE:
            self.sent.append(time.monotonic())
        return np.where(in_burst, 12000 * np.sin(2 * np.pi * 1000 * t), 0)


class BenchClient:
    """One Matrix-side end: a legacy WebRTC caller or an Element-Call-like SFU member."""

    def __init__(self, client: LegacyCaller | RtcParticipant, bursts: BurstTrack) -> None:
        self.client = client
        self.bursts = bursts

    def received(self) -> tuple[list[float], list[bytes]]:
        client = self.client
        if isinstance(client, LegacyCaller):
            return client.arrivals, client.heard
        ghosts = [i for i in client.heard if i.startswith("@sip_")]
        if not ghosts:
            return [], []
        return client.arrivals[ghosts[0]], client.heard[ghosts[0]]

    async def hangup(self) -> None:
        if isinstance(self.client, LegacyCaller):
            await self.client.hangup()
        else:
            await self.client.leave()

    async def close(self) -> None:
        await self.client.close()


def burst_arrivals(client: BenchClient) -> list[float]:
    """When each burst came back: the first loud 5 ms after a quiet stretch."""
    arrivals = []
    quiet_since = 0
    times, chunks = client.received()
    for arrived, chunk in zip(times, chunks, strict=True):
        samples = np.frombuffer(chunk, np.int16).astype(np.float64)
        chunk_seconds = len(samples) / 16_000
        for i in range(0, len(samples) - 80, 80):
            loud = np.sqrt(np.mean(samples[i : i + 80] ** 2)) > 1500
            if loud and quiet_since >= 40:  # 200 ms of quiet first
                arrivals.append(arrived - chunk_seconds + i / 16_000)
            quiet_since = 0 if loud else quiet_since + 1
    return arrivals


def round_trips(client: BenchClient) -> list[float]:
    back = burst_arrivals(client)
    trips = []
    for sent in client.bursts.sent:
        later = [a - sent for a in back if 0 < a - sent < 0.8]
        if later:
            trips.append(min(later))
    return trips


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_phone(port: int, rtp_port: int, numbers: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.echo_phone", f"127.0.0.1:{port}", str(rtp_port), *numbers],
        stdin=subprocess.PIPE,
        stdout=None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL,
        text=True,
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


async def answer(user: MatrixUser, room: str, sfu: bool, auth_url: str) -> BenchClient:
    bursts = BurstTrack()
    if sfu:
        await user.wait_for_event(room, lambda e: e.get("type") == RTC_NOTIFICATION, timeout=30)
        member = RtcParticipant(user, room, auth_url, 1000, sound=bursts.samples)
        await member.join()
        return BenchClient(member, bursts)
    # The client plays at once, so the round trip is mostly the bridge's.
    caller = LegacyCaller(user, room, 1000, bursts, jitter_frames=1)
    await caller.answer("@sip_echo:localhost")
    await caller.wait_connected(30)
    return BenchClient(caller, bursts)


async def run(stack: LocalStack, calls: int, seconds: float, workers: int, sfu: bool) -> None:
    token = stack.synapse.register_user("bench")
    bridge = stack.start_bridge(
        {"SIPBRIDGE_WORKERS__COUNT": str(workers), "SIPBRIDGE_LOGGING__LEVEL": "WARNING"}
    )
    numbers = [f"+4930100{i:03d}" for i in range(calls)]
    phones: list[subprocess.Popen[str]] = []
    clients: list[BenchClient] = []
    async with MatrixUser(stack.synapse.url, "@bench:localhost", token) as user:
        rooms = []
        for number in numbers:
            room = await user.create_room(
                invite=[stack.bot], power_level_content_override={"users": {stack.bot: 100}}
            )
            await user.wait_for_membership(room, stack.bot, "join")
            await user.send_text(room, f"!sip link {number}" + ("" if sfu else " legacy"))
            rooms.append(room)
        await asyncio.sleep(2)
        try:
            for k in range(math.ceil(calls / CALLS_PER_PHONE)):
                batch = numbers[k * CALLS_PER_PHONE : (k + 1) * CALLS_PER_PHONE]
                worker_port = stack.ports.sip + k % workers
                phones.append(start_phone(worker_port, 30000 + 100 * k, batch))
                batch_rooms = rooms[k * CALLS_PER_PHONE : (k + 1) * CALLS_PER_PHONE]
                clients += await asyncio.gather(
                    *(answer(user, room, sfu, stack.auth.url) for room in batch_rooms)
                )
            print(f"{len(clients)} calls connected; measuring {seconds:.0f} s", flush=True)
            pids = {
                "controller": bridge.pid,
                **{f"w{i}": p for i, p in enumerate(bridge.worker_pids())},
            }
            start_cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
            peak_workers = peak_controller = 0.0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await asyncio.sleep(1)
                peak_workers = max(
                    peak_workers, sum(rss_mib(p) for n, p in pids.items() if n != "controller")
                )
                peak_controller = max(peak_controller, rss_mib(bridge.pid))
            used = {name: cpu_seconds(pid) - start_cpu[name] for name, pid in pids.items()}
            metrics = bridge.metrics()
        finally:
            for client in clients:
                await client.hangup()
            for phone in phones:
                if phone.stdin:
                    phone.stdin.close()
            for phone in phones:
                phone.wait(10)
            trips = [t for c in clients for t in round_trips(c)]
            heard_own = sum(1 for c in clients if burst_arrivals(c))
            for client in clients:
                await client.close()
    call_seconds = len(clients) * seconds
    worker_cpu = sum(v for k, v in used.items() if k != "controller")
    underruns = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("bridge_media_frames_underrun{")
    )
    overruns = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("bridge_media_frames_overrun{")
    )
    lines = [
        f"calls: {len(clients)} concurrent ({'LiveKit SFU' if sfu else 'legacy WebRTC'}), "
        f"{workers} workers, {seconds:.0f} s of audio both "
        f"ways; {heard_own}/{len(clients)} clients heard their bursts come back",
        f"CPU s per call-second: workers {worker_cpu / call_seconds:.4f}, controller "
        f"{used['controller'] / call_seconds:.4f} (total {worker_cpu + used['controller']:.1f} "
        f"CPU s in {seconds:.0f} s)",
        f"peak RSS: workers {peak_workers:.0f} MiB ({peak_workers / len(clients):.1f} MiB per "
        f"call), controller {peak_controller:.0f} MiB",
        f"frames: {underruns:.0f} underruns, {overruns:.0f} overruns "
        f"(of {call_seconds * 50 * 2:.0f} frames through the bridge)",
    ]
    if trips:
        lines.append(
            f"burst round trip (Matrix → bridge → echo phone → bridge → Matrix): "
            f"p50 {percentile(trips, 0.5) * 1000:.0f} ms, p95 {percentile(trips, 0.95) * 1000:.0f}"
            f" ms over {len(trips)} bursts; one way through the bridge ≤ "
            f"{percentile(trips, 0.5) * 500:.0f} ms (p50)"
        )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--sfu",
        action="store_true",
        help="Element Call sessions through LiveKit instead of legacy 1:1 calls",
    )
    args = parser.parse_args()
    workers = max(1, math.ceil(args.calls / CALLS_PER_PHONE))
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        stack = LocalStack(Path(tmp) / "stack", {"@bench:localhost": "admin"}, workers=workers)
        stack.start_homeserver()
        try:
            asyncio.run(run(stack, args.calls, args.seconds, workers, args.sfu))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
