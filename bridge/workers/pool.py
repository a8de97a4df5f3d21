"""The controller's view of its call workers: start, watch, restart, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from ..config import Config
from ..edge.render import edge_address
from .channel import Channel
from .protocol import (
    Drain,
    FromWorker,
    Message,
    ProtocolError,
    Stop,
    TrunkSettings,
    WorkerReady,
    WorkerSettings,
    WorkerStats,
    decode_from_worker,
)

log = logging.getLogger(__name__)

WorkerState = Literal["starting", "ready", "draining", "stopped", "dead"]
EventHandler = Callable[[int, FromWorker], Awaitable[None]]
LossHandler = Callable[[int, str], Awaitable[None]]

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
HEALTHY_AFTER = 60.0  # a worker up this long resets its restart back-off


class WorkerPoolError(Exception):
    """The workers could not be started."""


@dataclass
class Worker:
    id: int
    sip_port: int
    rtp_port: int
    state: WorkerState = "starting"
    pid: int | None = None
    capacity: int = 0
    active_calls: int = 0
    frames_underrun: int = 0
    frames_overrun: int = 0
    restarts: int = 0
    started_at: float = 0.0
    startup_seconds: float | None = None
    exit_code: int | None = None
    process: asyncio.subprocess.Process | None = None
    channel: Channel[FromWorker] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    supervisor: asyncio.Task[None] | None = None

    @property
    def free_slots(self) -> int:
        return max(0, self.capacity - self.active_calls) if self.state == "ready" else 0


def worker_settings(config: Config, worker: Worker) -> WorkerSettings:
    return WorkerSettings(
        worker_id=worker.id,
        sip_host=config.sip.listen_host,
        sip_port=worker.sip_port,
        public_host=config.sip.public_host,
        transports=list(config.sip.transports),
        max_calls=config.workers.max_calls,
        rtp_port=worker.rtp_port,
        rtp_port_count=config.media.rtp_ports_per_worker,
        codecs=list(config.media.codecs),
        decision_timeout=config.sip.decision_timeout,
        log_level=config.logging.level,
        log_sip_messages=config.logging.sip_messages,
        trunks=[
            TrunkSettings(
                name=t.name,
                host=t.host,
                port=t.port,
                transport=t.transport,
                username=t.username,
                password=t.password,
                send_register=t.send_register,
                register_interval=t.register_interval,
                auth_realm=t.auth_realm,
                caller_id=t.caller_id,
            )
            for t in config.sip.trunks
        ],
        register_trunks=worker.id == 1,
        rtp_timeout=config.media.rtp_timeout,
        strict_rtp=config.media.strict_rtp,
        session_expires=config.sip.session_expires,
        sip_jitter_ms=config.media.sip_jitter_ms,
        ice_servers=[s.model_dump(exclude_none=True) for s in config.media.ice_servers],
        webrtc_host_addresses=list(config.media.webrtc_host_addresses),
        webrtc_codecs=list(config.media.webrtc_codecs),
        webrtc_jitter_frames=config.media.webrtc_jitter_frames,
        edge_proxy=f"sip:{edge_address(config)};lr" if config.edge.enabled else None,
        edge_source=edge_address(config) if config.edge.enabled else None,
    )


class WorkerPool:
    def __init__(self, config: Config, on_event: EventHandler, on_lost: LossHandler) -> None:
        self.config = config
        self._on_event = on_event
        self._on_lost = on_lost
        self._stopping = False
        self._drain: Drain | None = None
        n = config.workers.count
        self.workers = {
            i: Worker(
                id=i,
                sip_port=config.sip.port + i - 1,
                rtp_port=config.media.rtp_port + (i - 1) * config.media.rtp_ports_per_worker,
            )
            for i in range(1, n + 1)
        }

    async def start(self) -> None:
        """Start every worker and wait until each reports ready."""
        for worker in self.workers.values():
            worker.supervisor = asyncio.create_task(
                self._supervise(worker), name=f"worker-{worker.id}"
            )
        waits = [asyncio.wait_for(w.ready.wait(), READY_TIMEOUT) for w in self.workers.values()]
        try:
            await asyncio.gather(*waits)
        except TimeoutError:
            broken = [w for w in self.workers.values() if not w.ready.is_set()]
            details = ", ".join(
                f"worker {w.id} (SIP port {w.sip_port}, exit code {w.exit_code})" for w in broken
            )
            raise WorkerPoolError(
                f"call workers did not become ready within {READY_TIMEOUT:.0f} s: {details}; "
                "is the SIP port in use by another program?"
            ) from None

    def send(self, worker_id: int, message: Message) -> bool:
        worker = self.workers.get(worker_id)
        if worker is None or worker.channel is None or worker.state in ("dead", "stopped"):
            return False
        worker.channel.send(message)
        return True

    def pick_worker(self) -> Worker | None:
        """The ready worker with the most free slots, for an outgoing call."""
        candidates = [w for w in self.workers.values() if w.free_slots > 0]
        return max(candidates, key=lambda w: w.free_slots, default=None)

    @property
    def capacity(self) -> int:
        return sum(w.capacity for w in self.workers.values() if w.state == "ready")

    async def drain(self, retry_after: int) -> None:
        self._drain = Drain(retry_after=retry_after)
        for worker in self.workers.values():
            if self.send(worker.id, self._drain):
                worker.state = "draining"

    async def stop(self) -> None:
        self._stopping = True
        for worker in self.workers.values():
            self.send(worker.id, Stop())
        supervisors = [w.supervisor for w in self.workers.values() if w.supervisor]
        if supervisors:
            await asyncio.wait(supervisors, timeout=STOP_TIMEOUT + 2)
        for task in supervisors:
            task.cancel()

    # ---- supervision ---------------------------------------------------------------------

    async def _supervise(self, worker: Worker) -> None:
        delay = 1.0
        while not self._stopping:
            started = time.monotonic()
            reason = await self._run_once(worker)
            if self._stopping:
                break
            worker.state = "dead"
            worker.restarts += 1
            log.error("call worker %d stopped (%s); restarting in %.0f s", worker.id, reason, delay)
            try:
                await self._on_lost(worker.id, reason)
            except Exception:
                log.exception("ending the calls of worker %d failed", worker.id)
            await asyncio.sleep(delay)
            healthy = time.monotonic() - started > HEALTHY_AFTER
            delay = 1.0 if healthy else min(delay * 2, self.config.workers.restart_delay_max)
        worker.state = "stopped"

    async def _run_once(self, worker: Worker) -> str:
        ours, theirs = socket.socketpair()
        worker.ready.clear()
        worker.state = "starting"
        worker.capacity = worker.active_calls = 0
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bridge",
                "worker",
                "--ipc-fd",
                str(theirs.fileno()),
                pass_fds=[theirs.fileno()],
                stdin=asyncio.subprocess.DEVNULL,
                # pjlib prints its banner on stdout; errors and our logs go to stderr.
                stdout=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            ours.close()
            theirs.close()
            return f"could not start the process: {e}"
        finally:
            theirs.close()
        worker.process = process
        worker.pid = process.pid
        worker.started_at = time.time()
        worker.exit_code = None
        channel = await Channel.open(ours, decode_from_worker)
        worker.channel = channel
        channel.send(worker_settings(self.config, worker))
        reader = asyncio.create_task(self._read(worker, channel))
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        finally:
            worker.channel = None
            channel.close()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(reader, 1)
        worker.exit_code = code
        return f"exit code {code}" if code >= 0 else f"killed by signal {-code}"

    async def _read(self, worker: Worker, channel: Channel[FromWorker]) -> None:
        while True:
            try:
                message = await channel.receive()
            except ProtocolError as e:
                log.error("worker %d: %s", worker.id, e)
                continue
            if message is None:
                return
            if isinstance(message, WorkerReady):
                worker.capacity = message.capacity
                worker.startup_seconds = round(time.time() - worker.started_at, 3)
                worker.state = "ready"
                if self._drain is not None:
                    channel.send(self._drain)
                    worker.state = "draining"
                worker.ready.set()
                log.info(
                    "call worker %d ready: pid %d, SIP %s:%d, capacity %d, up %.2f s after spawn",
                    worker.id,
                    message.pid,
                    message.sip_host,
                    message.sip_port,
                    message.capacity,
                    worker.startup_seconds,
                )
            elif isinstance(message, WorkerStats):
                worker.active_calls = message.active_calls
                worker.capacity = message.capacity
                worker.frames_underrun = message.frames_underrun
                worker.frames_overrun = message.frames_overrun
            try:
                await self._on_event(worker.id, message)
            except Exception:
                log.exception("handling %s from worker %d failed", message.kind, worker.id)
