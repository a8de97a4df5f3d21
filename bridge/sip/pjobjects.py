"""The pjsua2 objects of a call worker: each callback records or forwards to the engine.

pjsua2 calls these on the SIP thread, inside the library; acting on a call from inside
`onIncomingCall` can abort the process (docs/design-notes.md), so they only note what
happened and leave the acting to the engine's polling loop.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pjsua2 as pj

from ..workers.protocol import DtmfReceived, TrunkSettings
from .message import parse_name_addr

if TYPE_CHECKING:
    from .engine import SipEngine

log = logging.getLogger(__name__)


class LogWriter(pj.LogWriter):  # type: ignore[misc]
    """pjlib's log → Python logging, and every received request → SipRequestSeen."""

    def __init__(self, engine: SipEngine) -> None:
        super().__init__()
        self.engine = engine

    def write(self, entry: pj.LogEntry) -> None:
        try:
            self.engine.on_log(entry.level, entry.msg)
        except Exception:  # a raise here would cross into C++
            log.exception("log writer failed")


class BridgeEndpoint(pj.Endpoint):  # type: ignore[misc]
    def __init__(self, engine: SipEngine) -> None:
        super().__init__()
        self.engine = engine

    def onRejectedIncomingCall(self, prm: pj.OnRejectedIncomingCallParam) -> None:
        self.engine.on_refused(prm)


class BridgeAccount(pj.Account):  # type: ignore[misc]
    def __init__(
        self,
        engine: SipEngine,
        peer_hosts: frozenset[str] = frozenset(),
        media_host: str | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.peer_hosts = peer_hosts  # where the calls it places are answered from
        self.media_host = media_host  # and where their far end's own host is

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.engine.on_incoming(self, prm)

    def onIncomingSubscribe(self, prm: pj.OnIncomingSubscribeParam) -> None:
        # pjsua accepts presence subscriptions by default; the bridge publishes none.
        prm.code = 403
        prm.reason = "Forbidden"


class TrunkAccount(BridgeAccount):
    def __init__(
        self, engine: SipEngine, trunk: TrunkSettings, peer_hosts: frozenset[str], media_host: str
    ) -> None:
        super().__init__(engine, peer_hosts, media_host)
        self.trunk = trunk

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.engine.on_registration(self.trunk.name, prm)


class BridgeCall(pj.Call):  # type: ignore[misc]
    def __init__(
        self,
        engine: SipEngine,
        account: BridgeAccount,
        call_id: int,
        ref: str,
        outgoing: bool = False,
    ) -> None:
        super().__init__(account, call_id)
        self.engine = engine
        self.ref = ref
        self.outgoing = outgoing
        self.ended_locally = False
        self.peer_reason: str | None = None
        self.last_progress = 0
        self.end_detail: str | None = None  # why the bridge ended it, for the record
        self.redirect_to: str | None = None
        self.redirect_code: int | None = None
        self.rx_packets = 0
        self.rx_changed = time.monotonic()
        # Who may act inside this dialog, and whose host a NATed phone's RTP comes from.
        self.peer_hosts: frozenset[str] = account.peer_hosts
        self.media_host: str | None = account.media_host

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self.engine.on_call_state(self, prm)

    # pjsua would act on these by itself (transfer, replace, renegotiate): the guard decides.
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        self.engine.guard.on_transaction(self, prm)

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        self.engine.guard.on_transfer(self, prm)

    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:
        self.engine.guard.on_replace(self, prm)

    def onCallRxReinvite(self, prm: pj.OnCallRxReinviteParam) -> None:
        prm.statusCode = self.engine.guard.offer(self, prm.offer.wholeSdp, prm.rdata.srcAddress)

    def onCallRxOffer(self, prm: pj.OnCallRxOfferParam) -> None:
        prm.statusCode = self.engine.guard.offer(self, prm.offer.wholeSdp, None)

    def onCallRedirected(self, prm: pj.OnCallRedirectedParam) -> int:
        # Never followed here (pjsua would dial the target's host itself): the controller
        # dials the target's number over a trunk if the dial plan allows it.
        self.redirect_to = parse_name_addr(prm.targetUri).uri
        event = prm.e
        if event.type == pj.PJSIP_EVENT_TSX_STATE:
            self.redirect_code = event.body.tsxState.tsx.statusCode
        self.end_detail = f"redirected to {self.redirect_to}"
        return int(pj.PJSIP_REDIRECT_STOP)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        self.engine.on_media_state(self)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        method = "info" if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc4733"
        self.engine.emit(DtmfReceived(call_ref=self.ref, digit=prm.digit, method=method))
