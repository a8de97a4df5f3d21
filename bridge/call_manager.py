"""The controller's handling of calls: worker reports in, decisions and call records out."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from .core.outcome import Outcome, outcome_of_sip_end
from .metrics import Metrics
from .sip.message import uri_user
from .storage.calls import CallStore
from .storage.database import StorageError
from .storage.models import CallRecord, utcnow
from .storage.numbers import NumberStore
from .workers.pool import WorkerPool
from .workers.protocol import (
    CallEnded,
    CallProgress,
    CallRefusedByStack,
    FromWorker,
    IncomingCall,
    Message,
    RejectCall,
    SipRequestSeen,
)

log = logging.getLogger(__name__)


@dataclass
class LiveCall:
    record_id: str
    worker_id: int
    call_ref: str
    direction: str
    answered: bool = False
    # Why the bridge itself refused or ended the call, for the record.
    refusal: str | None = None


class CallManager:
    def __init__(self, calls: CallStore, numbers: NumberStore, metrics: Metrics) -> None:
        self.calls = calls
        self.numbers = numbers
        self.metrics = metrics
        self.pool: WorkerPool | None = None
        self._live: dict[tuple[int, str], LiveCall] = {}

    def attach(self, pool: WorkerPool) -> None:
        self.pool = pool

    def _send(self, worker_id: int, message: Message) -> None:
        if self.pool is None or not self.pool.send(worker_id, message):
            log.warning("could not send %s to worker %d", type(message).__name__, worker_id)

    async def on_worker_event(self, worker_id: int, message: FromWorker) -> None:
        if isinstance(message, SipRequestSeen):
            self.metrics.sip_requests.labels(message.method).inc()
            log.debug("worker %d: %s from %s", worker_id, message.method, message.source)
        elif isinstance(message, IncomingCall):
            await self._incoming(worker_id, message)
        elif isinstance(message, CallProgress):
            await self._progress(worker_id, message)
        elif isinstance(message, CallEnded):
            await self._ended(worker_id, message)
        elif isinstance(message, CallRefusedByStack):
            await self._refused(worker_id, message)

    async def _incoming(self, worker_id: int, call: IncomingCall) -> None:
        callee = uri_user(call.request_uri) or uri_user(call.to_uri)
        caller = uri_user(call.from_uri) or call.from_uri
        log.info(
            "incoming call %s on worker %d: %s (%s) → %s, from %s",
            call.sip_call_id,
            worker_id,
            caller,
            call.from_display or "no name",
            callee,
            call.source,
        )
        record = CallRecord(
            id=uuid.uuid4().hex,
            direction="inbound",
            state="routing",
            caller=caller,
            callee=callee,
            caller_name=call.from_display,
            worker_id=worker_id,
            sip_call_id=call.sip_call_id,
            source=call.source,
            started_at=utcnow(),
        )
        try:
            await self.calls.create(record)
            room_id = await self.numbers.room_for(callee)
        except StorageError as e:
            log.error("cannot take call %s: %s; answering 503", call.sip_call_id, e)
            self._send(worker_id, RejectCall(call_ref=call.call_ref, code=503, retry_after=30))
            return
        live = LiveCall(record.id, worker_id, call.call_ref, "inbound")
        self._live[(worker_id, call.call_ref)] = live
        if room_id is None:
            log.info("call %s: %s is not linked to a room; answering 404", record.id, callee)
            live.refusal = f"{callee} is not linked to a room"
            self._send(worker_id, RejectCall(call_ref=call.call_ref, code=404, reason="Not Found"))
            return
        # Ringing the linked room is the call flow's job; until it runs, refuse honestly.
        await self.calls.update(record.id, room_id=room_id)
        self._send(
            worker_id,
            RejectCall(call_ref=call.call_ref, code=480, reason="Temporarily Unavailable"),
        )

    async def _progress(self, worker_id: int, progress: CallProgress) -> None:
        live = self._live.get((worker_id, progress.call_ref))
        if live is None:
            return
        if progress.state == "answered":
            live.answered = True
            await self.calls.update(live.record_id, state="active", answered_at=utcnow())

    async def _ended(self, worker_id: int, ended: CallEnded) -> None:
        live = self._live.pop((worker_id, ended.call_ref), None)
        if live is None:
            log.warning("worker %d ended unknown call %s", worker_id, ended.call_ref)
            return
        outcome = outcome_of_sip_end(ended.sip_code, live.answered)
        side = "the phone" if ended.by_remote else "the bridge"
        reason = f"{ended.sip_code} {ended.reason}, ended by {side}"
        await self.calls.finish(
            live.record_id,
            outcome.value,
            sip_code=ended.sip_code,
            reason=f"{live.refusal} ({reason})" if live.refusal else reason,
            q850_cause=ended.q850_cause,
        )
        self.metrics.calls.labels(live.direction, outcome.value).inc()
        log.info("call %s ended: %s (%d %s)", live.record_id, outcome, ended.sip_code, ended.reason)

    async def _refused(self, worker_id: int, refused: CallRefusedByStack) -> None:
        log.warning(
            "worker %d's SIP stack refused a call from %s: %d %s",
            worker_id,
            refused.source,
            refused.sip_code,
            refused.reason,
        )
        outcome = outcome_of_sip_end(refused.sip_code, answered=False)
        now = utcnow()
        await self.calls.create(
            CallRecord(
                id=uuid.uuid4().hex,
                direction="inbound",
                state="ended",
                caller=uri_user(refused.from_uri) or refused.from_uri,
                callee=uri_user(refused.to_uri) or refused.to_uri,
                worker_id=worker_id,
                sip_call_id=refused.sip_call_id,
                source=refused.source,
                started_at=now,
                ended_at=now,
                outcome=outcome.value,
                sip_code=refused.sip_code,
                reason=f"refused by the SIP stack: {refused.reason}",
            )
        )
        self.metrics.calls.labels("inbound", outcome.value).inc()

    async def on_worker_lost(self, worker_id: int, reason: str) -> None:
        """A worker died: its calls are gone, so close their records."""
        self.metrics.worker_restarts.inc()
        for key in [k for k in self._live if k[0] == worker_id]:
            del self._live[key]
        for record in await self.calls.open_calls(worker_id):
            await self.calls.finish(
                record.id, Outcome.FAILED.value, reason=f"call worker {worker_id} stopped: {reason}"
            )
            self.metrics.calls.labels(record.direction, Outcome.FAILED.value).inc()
            log.warning("call %s ended with its worker %d", record.id, worker_id)

    async def close_stale(self, reason: str) -> int:
        """Close records of calls that no process holds any more (after a restart or stop)."""
        stale = await self.calls.open_calls()
        for record in stale:
            await self.calls.finish(record.id, Outcome.FAILED.value, reason=reason)
        return len(stale)

    @property
    def live_calls(self) -> int:
        return len(self._live)
