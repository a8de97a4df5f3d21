"""Prometheus metrics and the health endpoint, on their own listener."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .status import BridgeStatus

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sip_requests = Counter(
            "bridge_sip_requests_total",
            "SIP requests that reached a call worker, by method",
            ["method"],
            registry=self.registry,
        )
        self.calls = Counter(
            "bridge_calls_total",
            "Calls that ended, by direction and outcome",
            ["direction", "outcome"],
            registry=self.registry,
        )
        self.in_dialog_refused = Counter(
            "bridge_sip_in_dialog_refused_total",
            "Requests inside calls that the bridge refused (REFER, strangers), by method",
            ["method"],
            registry=self.registry,
        )
        self.rtp_dropped = Counter(
            "bridge_rtp_foreign_packets_total",
            "Packets to calls' media ports from others than the calls' peers, dropped",
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "bridge_worker_restarts_total", "Call workers restarted", registry=self.registry
        )
        self.workers_ready = Gauge(
            "bridge_workers_ready", "Call workers ready for calls", registry=self.registry
        )
        self.call_capacity = Gauge(
            "bridge_call_capacity", "Call slots over all ready workers", registry=self.registry
        )
        self.active_calls = Gauge(
            "bridge_active_calls", "Calls the workers hold now", registry=self.registry
        )
        self.frames_underrun = Gauge(
            "bridge_media_frames_underrun",
            "Frames the phone needed while Matrix had none (since each worker started)",
            ["worker"],
            registry=self.registry,
        )
        self.frames_overrun = Gauge(
            "bridge_media_frames_overrun",
            "Frames dropped because one side fell behind (since each worker started)",
            ["worker"],
            registry=self.registry,
        )
        self.inbox_events = Gauge(
            "bridge_inbox_events",
            "Stored Matrix events by status",
            ["status"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class MetricsServer:
    def __init__(
        self,
        metrics: Metrics,
        status: Callable[[], Awaitable[BridgeStatus]],
        host: str,
        port: int,
    ) -> None:
        self.metrics = metrics
        self.status = status
        self.host = host
        self.port = port
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        log.info("metrics at http://%s:%d/metrics, health at /health", self.host, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        status = await self.status()
        self._update_gauges(status)
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    def _update_gauges(self, status: BridgeStatus) -> None:
        ready = [w for w in status.workers if w.state == "ready"]
        self.metrics.workers_ready.set(len(ready))
        self.metrics.call_capacity.set(sum(w.capacity for w in ready))
        self.metrics.active_calls.set(sum(w.active_calls for w in status.workers))
        for w in status.workers:
            self.metrics.frames_underrun.labels(str(w.id)).set(w.frames_underrun)
            self.metrics.frames_overrun.labels(str(w.id)).set(w.frames_overrun)
        for state, count in status.inbox.items():
            self.metrics.inbox_events.labels(state).set(count)

    async def _health(self, _request: web.Request) -> web.Response:
        status = await self.status()
        body = {
            "healthy": status.healthy,
            "database": status.database,
            "workers": [asdict(w) for w in status.workers],
        }
        return web.json_response(body, status=200 if status.healthy else 503)
