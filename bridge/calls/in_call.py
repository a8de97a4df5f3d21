"""What a worker reports from inside a live outbound or inbound call: a redirect to follow
or not, and what it refused there (a REFER, a stranger's request, a stranger's media)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import TrunkConfig
from ..core.callflow import Direction
from ..metrics import Metrics
from ..sip.message import uri_user
from ..workers.protocol import CallEnded, InDialogRefused, MakeCall, RtpDropped
from .effects import CallContext
from .records import RecordKeeper

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
TrunkChoice = Callable[[str, str], tuple[TrunkConfig, str] | str]


class InCallReports:
    def __init__(self, records: RecordKeeper, metrics: Metrics, choose_trunk: TrunkChoice) -> None:
        self.records = records
        self.metrics = metrics
        self.choose_trunk = choose_trunk

    async def redirected(self, ctx: CallContext, ended: CallEnded) -> str | None:
        """Dial a 3xx's target number over a trunk if the dial plan takes it, as if the user
        had dialled it (never its host); None when dialled, else why not."""
        hops = ctx.extra.get("redirects", 0)
        number = uri_user(ended.redirect_to or "")
        if ctx.direction is not Direction.OUTBOUND or ctx.matrix_user is None:
            return "only calls the bridge placed are redirected"
        if hops >= MAX_REDIRECTS:
            return f"more than {MAX_REDIRECTS} redirects"
        choice = self.choose_trunk(number, ctx.matrix_user) if number else "it names no number"
        if isinstance(choice, str):
            return choice
        trunk, e164 = choice
        ctx.extra["redirects"] = hops + 1
        ctx.trunk = trunk.name
        await self.records.add_note(
            ctx.record_id, f"{ended.sip_code}: redirected to {ended.redirect_to}; dialled {e164}"
        )
        log.info("call %s: redirected; dialling %s over %s", ctx.record_id, e164, trunk.name)
        ctx.send_to_worker(
            MakeCall(
                call_ref=ctx.call_ref,
                trunk=trunk.name,
                number=e164,
                caller_id=ctx.caller_id,
                caller_name=ctx.caller_name,
            )
        )
        return None

    async def refused(self, ctx: CallContext, message: InDialogRefused | RtpDropped) -> None:
        """Count what the worker refused inside a call, and note it once on the record."""
        if isinstance(message, InDialogRefused):
            self.metrics.in_dialog_refused.labels(message.method).inc()
            await self.records.add_note(ctx.record_id, f"{message.sip_code}: {message.detail}")
            return
        before = ctx.extra.get("rtp_dropped", 0)
        ctx.extra["rtp_dropped"] = message.packets
        self.metrics.rtp_dropped.inc(max(0, message.packets - before))
        if before == 0:
            await self.records.add_note(
                ctx.record_id, "media from a source other than the call's peer was dropped"
            )
