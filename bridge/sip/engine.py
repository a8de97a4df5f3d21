"""The pjsua2 endpoint of one call worker.

Every pjsua2 call is made on the one thread that polls `libHandleEvents`, fed by a command
queue; pjsua2 callbacks only record what happened and report it (acting on a call from
inside `onIncomingCall` can abort the process: docs/design-notes.md). Reports go out
through `emit`, which must be thread-safe and must not block.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pjsua2 as pj

from ..log import redact
from ..media.pjport import PumpPort, audio_format
from ..media.pumps import PumpRegistry
from ..workers.protocol import (
    AnswerCall,
    CallEnded,
    CallProgress,
    CallRefusedByStack,
    Drain,
    HangupCall,
    IncomingCall,
    MakeCall,
    Message,
    RejectCall,
    SendDtmf,
    SipRequestSeen,
    TrunkRegistration,
    TrunkSettings,
    WorkerSettings,
    WorkerStats,
)
from . import native
from .dialog_guard import DialogGuard, host_of
from .message import headers, parse_logged_request, parse_name_addr, q850_cause, request_uri
from .pjobjects import BridgeAccount, BridgeCall, BridgeEndpoint, LogWriter, TrunkAccount

log = logging.getLogger(__name__)
pjlog = logging.getLogger("pjsip")

Emit = Callable[[Message], None]
EngineCommand = AnswerCall | RejectCall | MakeCall | HangupCall | SendDtmf | Drain

POLL_MS = 10
PJ_ETOOMANY = 70010
CODEC_IDS = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1", "G722": "G722/16000/1"}
# A closed port: a TCP connect there fails at once, so probe calls free their slots at once.
PROBE_URI = "sip:capacity-probe@127.0.0.1:9;transport=tcp"


def _session_timer_expired(info: pj.CallInfo) -> bool:
    # pjsip's session timer ends the dialog with this status and reason (sip_timer.c).
    return bool(info.lastStatusCode == 408 and "session refresh" in info.lastReason.lower())


def _trunk_uri(trunk: TrunkSettings, user: str | None = None) -> str:
    userpart = f"{user}@" if user else ""
    transport = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
    return f"sip:{userpart}{trunk.host}:{trunk.port}{transport}"


def _via_transport(via: str) -> str:
    """'SIP/2.0/UDP host;branch=…' → 'udp'."""
    protocol = via.split(" ", 1)[0]
    return protocol.rsplit("/", 1)[-1].lower() if protocol.count("/") == 2 else ""


class SipError(Exception):
    """The SIP stack could not start or do what was asked."""


@dataclass
class _Undecided:
    deadline: float


@dataclass
class EngineState:
    calls: dict[str, BridgeCall] = field(default_factory=dict)
    undecided: dict[str, _Undecided] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    draining_retry_after: int | None = None


class SipEngine:
    def __init__(self, settings: WorkerSettings, emit: Emit, pumps: PumpRegistry) -> None:
        self.settings = settings
        self.emit = emit
        self.pumps = pumps
        self.guard = DialogGuard(settings.codecs, settings.strict_rtp, emit)
        self._ports: dict[str, PumpPort] = {}  # lent to live calls
        self._idle_ports: list[PumpPort] = []  # kept for the next calls (see PumpPort)
        self._stats_at = 0.0
        self._rtp_checked_at = 0.0
        self.capacity = 0
        self._commands: queue.SimpleQueue[EngineCommand] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pjsua", daemon=True)
        self._state = EngineState()
        self._refs = itertools.count(1)
        self._last_stats: tuple[int, int, bool] | None = None
        self._endpoint: BridgeEndpoint | None = None
        self._account: BridgeAccount | None = None
        self._trunks: dict[str, TrunkAccount] = {}
        # pjsua2 may keep a pointer to the writer until the process ends: never free it.
        self._writer = LogWriter(self)

    # ---- any thread -------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> int:
        """Start the SIP thread; returns the measured call capacity."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SipError(f"the SIP stack did not start within {timeout:.0f} s")
        if self._failure is not None:
            raise SipError(f"the SIP stack failed to start: {self._failure}") from self._failure
        return self.capacity

    def submit(self, command: EngineCommand) -> None:
        self._commands.put(command)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- the SIP thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._init()
        except BaseException as e:  # reported through start()
            self._failure = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self._run_commands()
                self._expire_undecided()
                self._check_rtp()
                self._reap_ended()
                self._report_stats()
                assert self._endpoint is not None
                self._endpoint.libHandleEvents(POLL_MS)
        except Exception:
            log.exception("SIP thread failed; stopping the worker's SIP stack")
        finally:
            self._shutdown()

    def _init(self) -> None:
        s = self.settings
        ep = BridgeEndpoint(self)
        self._endpoint = ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = s.max_calls
        cfg.uaConfig.userAgent = "sip-matrix-bridge"
        # pjsua takes unsolicited message-waiting NOTIFYs by default; the bridge has no use.
        cfg.uaConfig.mwiUnsolicitedEnabled = False
        cfg.logConfig.writer = self._writer
        cfg.logConfig.level = 4  # level 4 carries the message log, which SipRequestSeen reads
        cfg.logConfig.consoleLevel = 4
        cfg.logConfig.msgLogging = True
        cfg.logConfig.decor = 0
        # With no sound device, ended calls never free their slots unless this is -1 (§7).
        cfg.medConfig.sndAutoCloseTime = -1
        cfg.medConfig.ecTailLen = 0
        cfg.medConfig.noVad = True
        # pjmedia's default jitter buffer starts large; phones on trunks rarely need it.
        cfg.medConfig.jbInit = s.sip_jitter_ms
        cfg.medConfig.jbMinPre = max(20, s.sip_jitter_ms // 2)
        cfg.medConfig.jbMaxPre = s.sip_jitter_ms * 4
        ep.libInit(cfg)
        transports = list(s.transports)
        for name in transports:
            tcfg = pj.TransportConfig()
            tcfg.port = s.sip_port
            tcfg.boundAddress = s.sip_host
            if s.public_host:
                tcfg.publicAddress = s.public_host
            kind = pj.PJSIP_TRANSPORT_UDP if name == "udp" else pj.PJSIP_TRANSPORT_TCP
            ep.transportCreate(kind, tcfg)
        if "tcp" not in transports:
            # The capacity probe needs a TCP client; bind it to loopback on any port.
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = "127.0.0.1"
            ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcfg)
        if any(t.transport == "tls" for t in s.trunks):
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = s.sip_host
            ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
        ep.audDevManager().setNullDev()
        self._set_codecs(ep)
        ep.libStart()
        # What pjsua advertises but the bridge refuses (docs/security.md, in-call requests).
        native.withdraw_capabilities(pj.PJSIP_H_ALLOW, {"REFER", "MESSAGE", "SUBSCRIBE", "NOTIFY"})
        native.withdraw_capabilities(pj.PJSIP_H_SUPPORTED, {"replaces", "norefersub"})
        native.withdraw_capabilities(pj.PJSIP_H_ACCEPT, native.NOT_ACCEPTED)
        account = BridgeAccount(self)
        acfg = self._account_config(f"sip:bridge@{s.public_host or s.sip_host}:{s.sip_port}")
        account.create(acfg, True)
        self._account = account
        self.capacity = self._probe_capacity(account)
        for trunk in s.trunks:
            self._trunks[trunk.name] = self._create_trunk_account(trunk)

    def _account_config(self, id_uri: str) -> pj.AccountConfig:
        s = self.settings
        acfg = pj.AccountConfig()
        acfg.idUri = id_uri
        # No re-INVITE after an answer with several codecs: trunks have no use for it.
        acfg.mediaConfig.lockCodecEnabled = False
        acfg.mediaConfig.transportConfig.port = s.rtp_port
        acfg.mediaConfig.transportConfig.portRange = s.rtp_port_count
        acfg.mediaConfig.transportConfig.boundAddress = s.sip_host
        if s.public_host:
            acfg.mediaConfig.transportConfig.publicAddress = s.public_host
        # Session timers when the other side supports them (most trunks do): a dialog whose
        # refreshes stop, because a phone or proxy died without a BYE, ends on both sides.
        acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_OPTIONAL
        acfg.callConfig.timerMinSESec = 90
        acfg.callConfig.timerSessExpiresSec = s.session_expires
        # Every default that would let pjsua act or speak for the bridge, set explicitly.
        acfg.callConfig.prackUse = pj.PJSUA_100REL_NOT_USED
        acfg.presConfig.publishEnabled = False
        acfg.mwiConfig.enabled = False
        return acfg

    def _create_trunk_account(self, trunk: TrunkSettings) -> TrunkAccount:
        user = trunk.caller_id or trunk.username or "bridge"
        acfg = self._account_config(f"sip:{user}@{trunk.host}")
        if trunk.username and trunk.password is not None:
            # Digest with whatever algorithm the trunk challenges with (MD5 or SHA-256).
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", trunk.auth_realm, trunk.username, 0, trunk.password)
            )
        if trunk.send_register and self.settings.register_trunks:
            acfg.regConfig.registrarUri = _trunk_uri(trunk)
            acfg.regConfig.timeoutSec = trunk.register_interval
            acfg.regConfig.retryIntervalSec = 30
            acfg.regConfig.registerOnAdd = True
        else:
            acfg.regConfig.registerOnAdd = False
        if self.settings.edge_proxy:
            # Trunks see the edge's address only: every request leaves through it.
            acfg.sipConfig.proxies.append(self.settings.edge_proxy)
        hosts = self._trunk_hosts(trunk)
        # With the edge, the trunk's in-dialog requests come from the edge; its media never.
        signalling = {host_of(self.settings.edge_source)} if self.settings.edge_source else hosts
        account = TrunkAccount(self, trunk, frozenset(signalling), hosts[0])
        account.create(acfg)
        return account

    @staticmethod
    def _trunk_hosts(trunk: TrunkSettings) -> list[str]:
        """The trunk's addresses (its host name resolved once, at start)."""
        try:
            return socket.gethostbyname_ex(trunk.host)[2]
        except OSError as e:
            log.warning("trunk %s: %s does not resolve (%s)", trunk.name, trunk.host, e)
            return [trunk.host]

    def _set_codecs(self, ep: BridgeEndpoint) -> None:
        wanted = [CODEC_IDS[name] for name in self.settings.codecs]
        for info in ep.codecEnum2():
            codec_id = info.codecId
            priority = 255 - wanted.index(codec_id) if codec_id in wanted else 0
            ep.codecSetPriority(codec_id, priority)

    def _probe_capacity(self, account: BridgeAccount) -> int:
        """Count the call slots pjsua really has (the wheel caps them below maxCalls)."""
        probes: list[pj.Call] = []
        for _ in range(self.settings.max_calls):
            probe = pj.Call(account)
            try:
                probe.makeCall(PROBE_URI, pj.CallOpParam(True))
            except pj.Error:
                del probe
                break
            probes.append(probe)
        capacity = len(probes)
        for probe in probes:
            with contextlib.suppress(pj.Error):
                probe.hangup(pj.CallOpParam())
        deadline = time.monotonic() + 5
        assert self._endpoint is not None
        while any(p.isActive() for p in probes) and time.monotonic() < deadline:
            self._endpoint.libHandleEvents(POLL_MS)
        probes.clear()
        return capacity

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._execute(command)
            except pj.Error as e:
                log.warning("SIP command %s failed: %s", command.kind, e.reason)

    def _execute(self, command: EngineCommand) -> None:
        if isinstance(command, Drain):
            self._state.draining_retry_after = command.retry_after
            return
        if isinstance(command, MakeCall):
            self._make_call(command)
            return
        call = self._state.calls.get(command.call_ref)
        if call is None:
            log.debug("%s for call %s, which has ended", command.kind, command.call_ref)
            return
        if isinstance(command, SendDtmf):
            call.dialDtmf(command.digits)
            return
        self._state.undecided.pop(command.call_ref, None)
        if isinstance(command, AnswerCall):
            call.answer(self._op(command.code))
        elif isinstance(command, RejectCall):
            call.ended_locally = True
            call.hangup(self._op(command.code, command.reason, command.retry_after))
        else:
            call.ended_locally = True
            call.hangup(self._op(command.code or 0, command.reason))

    def _make_call(self, command: MakeCall) -> None:
        # A redirected call is dialled again under its ref: the ended one goes first.
        self._reap_ended()
        account = self._trunks.get(command.trunk)
        if account is None:
            self._fail_outgoing(command.call_ref, 500, f"no trunk named {command.trunk}")
            return
        call = BridgeCall(self, account, pj.PJSUA_INVALID_ID, command.call_ref, outgoing=True)
        prm = pj.CallOpParam(True)
        trunk = account.trunk
        if command.caller_id and command.caller_id != trunk.caller_id:
            # The account's From carries the trunk's number; a user's own number goes in PAI.
            name = f'"{command.caller_name}" ' if command.caller_name else ""
            header = pj.SipHeader()
            header.hName = "P-Asserted-Identity"
            header.hValue = f"{name}<sip:{command.caller_id}@{trunk.host}>"
            prm.txOption.headers.append(header)
        try:
            call.makeCall(_trunk_uri(trunk, command.number), prm)
        except pj.Error as e:
            del call
            code = 503 if e.status == PJ_ETOOMANY else 500
            self._fail_outgoing(command.call_ref, code, e.reason)
            return
        self._state.calls[command.call_ref] = call

    def _fail_outgoing(self, ref: str, code: int, reason: str) -> None:
        log.warning("outgoing call %s not placed: %s", ref, reason)
        self.emit(CallEnded(call_ref=ref, sip_code=code, reason=reason, by_remote=False))

    @staticmethod
    def _op(code: int, reason: str | None = None, retry_after: int | None = None) -> pj.CallOpParam:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        if reason:
            prm.reason = reason
        if reason and code == 0:
            # A BYE or CANCEL the bridge sends says why (RFC 3326).
            header = pj.SipHeader()
            header.hName = "Reason"
            header.hValue = f'Q.850;cause=16;text="{reason}"'
            prm.txOption.headers.append(header)
        if retry_after is not None:
            header = pj.SipHeader()
            header.hName = "Retry-After"
            header.hValue = str(retry_after)
            prm.txOption.headers.append(header)
        return prm

    def _expire_undecided(self) -> None:
        now = time.monotonic()
        for ref, undecided in list(self._state.undecided.items()):
            if undecided.deadline <= now:
                log.warning("no decision on call %s in time; answering 503", ref)
                self._execute(RejectCall(call_ref=ref, code=503, reason="Service Unavailable"))

    def _check_rtp(self) -> None:
        """Each second: media sources settle, and calls whose phone went quiet on the wire
        (no RTP at all, not just silence) end."""
        timeout = self.settings.rtp_timeout
        now = time.monotonic()
        if now - self._rtp_checked_at < 1.0:
            return
        self._rtp_checked_at = now
        self.guard.tick([c for ref, c in self._state.calls.items() if ref in self._ports])
        if not timeout:
            return
        for ref in list(self._ports):
            call = self._state.calls.get(ref)
            if call is None or call.ended_locally:
                continue
            try:
                packets = call.getStreamStat(0).rtcp.rxStat.pkt
            except pj.Error:
                continue
            if packets != call.rx_packets:
                call.rx_packets, call.rx_changed = packets, now
            elif now - call.rx_changed >= timeout:
                log.warning("call %s: no RTP from the phone for %.0f s; hanging up", ref, timeout)
                call.end_detail = f"no RTP from the phone for {timeout:.0f} s"
                self._execute(HangupCall(call_ref=ref, reason="RTP timeout"))

    def _reap_ended(self) -> None:
        # Call objects (and their audio ports) are deleted here, never inside a callback.
        while self._state.ended:
            ref = self._state.ended.pop()
            self._drop_port(ref)
            self.guard.release(ref)
            self.pumps.close(ref)
            self._state.calls.pop(ref, None)

    def _lend_port(self) -> PumpPort:
        if self._idle_ports:
            return self._idle_ports.pop()
        port = PumpPort()
        port.createPort(f"pump-{id(port):x}", audio_format())  # ports live as long as the worker
        return port

    def _drop_port(self, ref: str) -> None:
        port = self._ports.pop(ref, None)
        call = self._state.calls.get(ref)
        if port is None:
            return
        with contextlib.suppress(pj.Error):
            if call is not None and call.hasMedia():
                media = call.getAudioMedia(-1)
                media.stopTransmit(port)
                port.stopTransmit(media)
        port.pump = None
        self._idle_ports.append(port)

    def _report_stats(self) -> None:
        now = time.monotonic()
        stats = (
            len(self._state.calls),
            self.capacity,
            self._state.draining_retry_after is not None,
        )
        if stats == self._last_stats and now - self._stats_at < 5:
            return
        self._last_stats = stats
        self._stats_at = now
        underruns, overruns = self.pumps.totals()
        self.emit(
            WorkerStats(
                active_calls=stats[0],
                capacity=stats[1],
                draining=stats[2],
                frames_underrun=underruns,
                frames_overrun=overruns,
            )
        )

    def _shutdown(self) -> None:
        ep = self._endpoint
        if ep is None:
            return
        try:
            ep.hangupAllCalls()
            deadline = time.monotonic() + 3
            while self._state.calls and time.monotonic() < deadline:
                ep.libHandleEvents(POLL_MS)
                self._reap_ended()
        except pj.Error as e:
            log.warning("hanging up calls at shutdown failed: %s", e.reason)
        # Every pjsua2 object must be gone before libDestroy, or the process aborts.
        for ref in list(self._ports):
            self._drop_port(ref)
        self._idle_ports.clear()  # every call is gone: nothing lends them any more
        self._state.calls.clear()
        self._state.undecided.clear()
        for trunk_account in self._trunks.values():
            trunk_account.shutdown()
        self._trunks.clear()
        if self._account is not None:
            self._account.shutdown()
            self._account = None
        ep.libDestroy()

    # ---- callbacks (SIP thread, inside pjsua2): record and report only ------------------

    def on_log(self, level: int, text: str) -> None:
        if text.startswith("RX ") and "Request msg" in text[:80]:
            seen = parse_logged_request(text)
            if seen is not None:
                self.guard.seen(seen)
                self.emit(
                    SipRequestSeen(
                        method=seen.method,
                        source=seen.source,
                        transport=seen.transport,
                        sip_call_id=seen.sip_call_id,
                    )
                )
        if text.startswith(("RX ", "TX ")):
            if self.settings.log_sip_messages:
                pjlog.debug("%s", redact(text.rstrip()))
            return
        if level <= 1:
            pjlog.error("%s", text.rstrip())
        elif level == 2:
            pjlog.warning("%s", text.rstrip())
        elif level == 3:
            pjlog.debug("%s", text.rstrip())

    def on_incoming(self, account: BridgeAccount, prm: pj.OnIncomingCallParam) -> None:
        ref = f"{self.settings.worker_id}.{next(self._refs)}"
        call = BridgeCall(self, account, prm.callId, ref)
        self._state.calls[ref] = call
        message = prm.rdata.wholeMsg
        hdrs = headers(message)
        sender = parse_name_addr(hdrs.get("from", ""))
        retry_after = self._state.draining_retry_after
        if retry_after is not None:
            # Queued, so it runs after this callback returns.
            self.submit(
                RejectCall(
                    call_ref=ref, code=503, reason="Service Unavailable", retry_after=retry_after
                )
            )
            return
        self._state.undecided[ref] = _Undecided(time.monotonic() + self.settings.decision_timeout)
        source = prm.rdata.srcAddress
        transport = _via_transport(hdrs.get("via", ""))
        via_edge = bool(self.settings.edge_source) and source == self.settings.edge_source
        call.peer_hosts = frozenset({host_of(source)})
        if via_edge:
            # Only the edge's own requests are believed about who really called.
            source = hdrs.get("x-bridge-source", source)
            transport = hdrs.get("x-bridge-transport", transport).lower()
        call.media_host = host_of(source)
        self.emit(
            IncomingCall(
                call_ref=ref,
                sip_call_id=hdrs.get("call-id", ""),
                request_uri=request_uri(message) or "",
                from_uri=sender.uri,
                from_display=sender.display,
                to_uri=parse_name_addr(hdrs.get("to", "")).uri,
                source=source,
                transport=transport,
                via_edge=via_edge,
                peer=hdrs.get("x-bridge-peer") if via_edge else None,
            )
        )

    def on_media_state(self, call: BridgeCall) -> None:
        """Bind the call's media to its peer (after every negotiation), and connect its audio
        to its pump once its media is active (once per call)."""
        info = call.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.guard.guard_media(call, media.index)
                if call.ref in self._ports:
                    return
                audio = call.getAudioMedia(media.index)
                port = self._lend_port()
                port.pump = self.pumps.get(call.ref)
                audio.startTransmit(port)
                port.startTransmit(audio)
                self._ports[call.ref] = port
                log.debug("call %s: audio connected", call.ref)
                return

    def on_call_state(self, call: BridgeCall, prm: pj.OnCallStateParam) -> None:
        info = call.getInfo()
        cause = self._peer_q850(prm)
        if cause is not None:
            call.peer_reason = cause
        if info.state == pj.PJSIP_INV_STATE_EARLY and call.outgoing:
            code = info.lastStatusCode
            if code in (180, 183) and code != call.last_progress:
                call.last_progress = code
                state = "ringing" if code == 180 else "early"
                self.emit(CallProgress(call_ref=call.ref, state=state, sip_code=code))
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.emit(CallProgress(call_ref=call.ref, state="answered", sip_code=200))
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            if _session_timer_expired(info) and call.end_detail is None:
                # pjsip sent this BYE itself: the other side stopped refreshing the dialog.
                call.ended_locally = True
                call.end_detail = "no session refresh from the other side (session timer)"
            self._state.undecided.pop(call.ref, None)
            self._state.ended.append(call.ref)
            self.emit(
                CallEnded(
                    call_ref=call.ref,
                    # pjsua reports a redirect it stopped as 487; the record keeps the 3xx.
                    sip_code=call.redirect_code or info.lastStatusCode,
                    reason=call.end_detail or info.lastReason,
                    q850_cause=q850_cause(call.peer_reason),
                    by_remote=not call.ended_locally,
                    redirect_to=call.redirect_to,
                )
            )

    @staticmethod
    def _peer_q850(prm: pj.OnCallStateParam) -> str | None:
        """The Reason header of a request or response the peer sent, if this event has one."""
        event = prm.e
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return None
        src = event.body.tsxState.src
        if event.body.tsxState.type != pj.PJSIP_EVENT_RX_MSG:
            return None
        message = src.rdata.wholeMsg
        return headers(message).get("reason") if message else None

    def on_registration(self, trunk: str, prm: pj.OnRegStateParam) -> None:
        if prm.status != 0 or prm.code >= 300:
            state = "failed"
        elif prm.expiration > 0:
            state = "registered"
        else:
            state = "unregistered"
        level = logging.INFO if state != "failed" else logging.WARNING
        log.log(level, "trunk %s: %s (%d %s)", trunk, state, prm.code, prm.reason)
        self.emit(
            TrunkRegistration(
                trunk=trunk,
                state=state,
                code=prm.code,
                reason=prm.reason,
                expires=prm.expiration,
            )
        )

    def on_refused(self, prm: pj.OnRejectedIncomingCallParam) -> None:
        hdrs = headers(prm.rdata.wholeMsg or "")
        self.emit(
            CallRefusedByStack(
                sip_call_id=hdrs.get("call-id", ""),
                source=prm.rdata.srcAddress,
                from_uri=parse_name_addr(hdrs.get("from", "")).uri,
                to_uri=parse_name_addr(hdrs.get("to", "")).uri,
                sip_code=prm.statusCode,
                reason=prm.reason,
            )
        )
