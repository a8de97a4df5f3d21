"""Keeps the edge's dispatcher in step with the worker pool.

A worker takes new calls from the edge only while it is ready and has a free slot; a
starting, full, draining or dead one is switched off. The whole state is sent again now
and then, so an edge that restarted (and read every worker as off) catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from ..config import Config
from ..workers.pool import Worker, WorkerPool
from .render import RPC_SOCKET, WORKER_GROUP, worker_duid
from .rpc import EdgeRpc, EdgeRpcError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
RESEND_SECONDS = 10.0


def wanted_states(workers: Iterable[Worker]) -> dict[str, str]:
    """duid → dispatcher state: 'a' (takes calls) or 'i' (does not)."""
    return {worker_duid(w.id): "a" if w.free_slots > 0 else "i" for w in workers}


class EdgeSync:
    def __init__(self, config: Config, pool: WorkerPool, rpc: EdgeRpc | None = None) -> None:
        self.pool = pool
        self.rpc = rpc or EdgeRpc(config.edge.config_dir.resolve() / RPC_SOCKET)
        self._sent: dict[str, str] = {}
        self._sent_at = 0.0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edge-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(POLL_SECONDS)

    async def sync_once(self) -> None:
        wanted = wanted_states(self.pool.workers.values())
        stale = time.monotonic() - self._sent_at > RESEND_SECONDS
        changes = {d: s for d, s in wanted.items() if stale or self._sent.get(d) != s}
        if not changes:
            return
        try:
            for duid, state in changes.items():
                await self.rpc.call("dispatcher.set_duid_state", state, WORKER_GROUP, duid)
                self._sent[duid] = state
        except EdgeRpcError as e:
            if not self._failing:
                log.error("cannot update the SIP edge (calls may go to the wrong worker): %s", e)
            self._failing = True
            self._sent.clear()
            return
        if self._failing:
            log.info("the SIP edge is reachable again")
        self._failing = False
        if stale:
            self._sent_at = time.monotonic()
        else:
            log.debug("edge dispatcher: %s", changes)
