"""The bridge's decisions about what arrives inside a live call, on the SIP thread.

Every in-dialog request is answered by `in_dialog.decide` before pjsua2 can act on it; media
offers must come from the call's peer and carry a codec the bridge takes; REFER and INVITE
with Replaces are refused; the call's media sockets take packets from its peer only. What
was refused goes to the controller (`InDialogRefused`, `RtpDropped`) for the call record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import pjsua2 as pj

from ..workers.protocol import InDialogRefused, Message, RtpDropped
from . import native
from .in_dialog import Verdict, decide, offer_answer
from .message import LoggedRequest, headers
from .rtp_guard import Address, RtpGuard, RtpGuardError, parse_address

log = logging.getLogger(__name__)

DROP_LOG_SECONDS = 10.0  # a call's dropped packets are logged at most this often


def host_of(address: str) -> str:
    """'1.2.3.4:5060' → '1.2.3.4'; '[::1]:5060' → '::1'."""
    parsed = parse_address(address)
    return parsed[0] if parsed else address


class GuardedCall(Protocol):
    """What the guard needs of a pjsua2 call (the engine's call objects)."""

    ref: str
    peer_hosts: frozenset[str]  # where its signalling comes from (the edge, or the peer)
    media_host: str | None  # the peer's own host, from which a NATed phone's RTP may come

    def getInfo(self) -> pj.CallInfo: ...
    def getMedTransportInfo(self, index: int) -> pj.MediaTransportInfo: ...
    def getStreamInfo(self, index: int) -> pj.StreamInfo: ...


class DialogGuard:
    def __init__(self, codecs: list[str], strict_rtp: bool, emit: Callable[[Message], None]):
        self.codecs = codecs
        self.strict_rtp = strict_rtp
        self.emit = emit
        self.rtp = RtpGuard()
        self.last_request: LoggedRequest | None = None  # the request pjsip is handling now
        self._drops_logged: dict[str, float] = {}

    def seen(self, request: LoggedRequest) -> None:
        """pjsip logs each request as it arrives, before any layer acts on it."""
        self.last_request = request

    def _refused(self, call: GuardedCall, method: str, code: int, detail: str) -> None:
        log.warning("call %s: %s answered %d: %s", call.ref, method, code, detail)
        self.emit(InDialogRefused(call_ref=call.ref, method=method, sip_code=code, detail=detail))

    # ---- requests -------------------------------------------------------------------------

    def on_transaction(self, call: GuardedCall, prm: pj.OnCallTsxStateParam) -> None:
        """A transaction of the call changed; a new incoming request gets its answer here."""
        event = prm.e
        tsx = event.body.tsxState.tsx
        if (
            event.body.tsxState.type != pj.PJSIP_EVENT_RX_MSG
            or tsx.role != pj.PJSIP_ROLE_UAS
            or tsx.state != pj.PJSIP_TSX_STATE_TRYING
        ):
            return
        rdata = event.body.tsxState.src.rdata
        fields = headers(rdata.wholeMsg)
        verdict = decide(
            tsx.method,
            fields.get("content-type") or fields.get("c"),
            int(fields.get("content-length", "0") or 0) > 0,
            host_of(rdata.srcAddress) in call.peer_hosts,
            rdata.srcAddress,
        )
        if verdict is None:
            return
        self._answer(call, tsx.method, rdata, verdict, fields)

    def _answer(
        self,
        call: GuardedCall,
        method: str,
        rdata: pj.SipRxData,
        verdict: Verdict,
        fields: dict[str, str],
    ) -> None:
        try:
            native.respond(rdata.pjRxData, verdict.code, verdict.reason, verdict.headers)
        except native.NativeError as e:
            log.error("call %s: could not answer %s: %s", call.ref, method, e)
            return
        if verdict.note is not None:
            target = fields.get("refer-to")
            detail = f"{verdict.note} (Refer-To {target})" if target else verdict.note
            self._refused(call, method, verdict.code, detail)
        else:
            log.info("call %s: in-dialog %s answered %d", call.ref, method, verdict.code)

    def on_transfer(self, call: GuardedCall, prm: pj.OnCallTransferRequestParam) -> None:
        # `decide` answers every REFER first; this is pjsua's own hook, refused all the same.
        prm.statusCode = 403
        self._refused(call, "REFER", 403, f"a REFER to {prm.dstUri} was refused")

    def on_replace(self, call: GuardedCall, prm: pj.OnCallReplaceRequestParam) -> None:
        prm.statusCode = 403
        prm.reason = "Forbidden"
        self._refused(
            call,
            "INVITE",
            403,
            f"an INVITE from {prm.rdata.srcAddress} to replace this call was refused",
        )

    def offer(self, call: GuardedCall, sdp: str, source: str | None) -> int:
        """200 to take a media offer (re-INVITE or UPDATE), 488 to refuse it."""
        if source is None:
            request = self.last_request
            call_id = call.getInfo().callIdString
            source = request.source if request and request.sip_call_id == call_id else "unknown"
        from_peer = host_of(source) in call.peer_hosts
        code, why = offer_answer(sdp, self.codecs, from_peer)
        if code != 200:
            if from_peer:
                log.info("call %s: media offer refused (488): %s", call.ref, why)
            else:
                self._refused(call, "INVITE/UPDATE", code, f"{why} ({source}) was refused")
        return code

    # ---- media ----------------------------------------------------------------------------

    def guard_media(self, call: GuardedCall, index: int) -> None:
        """Bind the call's media sockets to the peer the SDP named (again after a change)."""
        if not self.strict_rtp:
            return
        try:
            transport = call.getMedTransportInfo(index)
            stream = call.getStreamInfo(index)
            local = [parse_address(transport.localRtpName), parse_address(transport.localRtcpName)]
            ports = [a[1] for a in local if a is not None]
            remote = [
                parse_address(stream.remoteRtpAddress),
                parse_address(stream.remoteRtcpAddress),
            ][: len(ports)]
            self.rtp.guard(call.ref, ports, remote, call.media_host)
        except (RtpGuardError, OSError, pj.Error) as e:
            log.error("call %s: media not bound to its peer (strict RTP): %s", call.ref, e)

    def tick(self, calls: list[GuardedCall]) -> None:
        """Each second: fix latched sources, report dropped packets."""
        if not self.rtp.calls:
            return
        now = time.monotonic()
        for call in calls:
            if call.ref not in self.rtp.calls:
                continue
            try:
                transport = call.getMedTransportInfo(0)
                heard: list[Address | None] = [
                    parse_address(transport.srcRtpName),
                    parse_address(transport.srcRtcpName),
                ]
                for address in self.rtp.settle(call.ref, heard):
                    log.info("call %s: media fixed to %s:%d", call.ref, *address)
            except (RtpGuardError, OSError, pj.Error) as e:
                log.warning("call %s: media source not fixed: %s", call.ref, e)
        try:
            changed = self.rtp.count_drops()
        except OSError as e:
            log.warning("cannot count dropped RTP packets: %s", e)
            return
        for ref, packets in changed.items():
            if now - self._drops_logged.get(ref, 0.0) >= DROP_LOG_SECONDS:
                self._drops_logged[ref] = now
                log.warning("call %s: %d packets from other sources dropped so far", ref, packets)
            self.emit(RtpDropped(call_ref=ref, packets=packets))

    def release(self, ref: str) -> None:
        self.rtp.release(ref)
        self._drops_logged.pop(ref, None)
