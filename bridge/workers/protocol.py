"""Typed messages between the controller and its call workers.

One JSON object per line over a socket pair; `kind` names the message. The controller
decides, the worker reports: a worker never acts on a new call without a decision.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class ProtocolError(Exception):
    """A line from the other process is not a message we know."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---- controller → worker ---------------------------------------------------------------


class TrunkSettings(Message):
    name: str
    host: str
    port: int
    transport: Literal["udp", "tcp", "tls"]
    username: str | None = None
    password: str | None = None
    auth_realm: str = "*"
    send_register: bool = False
    register_interval: int = 300
    caller_id: str | None = None


class WorkerSettings(Message):
    kind: Literal["WorkerSettings"] = "WorkerSettings"
    worker_id: int
    sip_host: str
    sip_port: int
    public_host: str | None
    transports: list[Literal["udp", "tcp"]]
    max_calls: int
    rtp_port: int
    rtp_port_count: int
    codecs: list[str]
    decision_timeout: float
    log_level: str
    log_sip_messages: bool
    trunks: list[TrunkSettings] = Field(default_factory=list)
    # Only one worker registers the trunks, so registrations do not replace each other.
    register_trunks: bool = False
    rtp_timeout: float = 30.0
    # RTP only from the call's peer (docs/security.md); False: pjmedia latches to anyone.
    strict_rtp: bool = True
    session_expires: int = 1800
    sip_jitter_ms: int = 40
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    webrtc_host_addresses: list[str] = Field(default_factory=list)
    webrtc_codecs: list[str] = Field(default_factory=lambda: ["G722", "opus", "PCMU", "PCMA"])
    webrtc_jitter_frames: int = 2
    # With a SIP edge: outbound requests go through it (a loose route), and requests from
    # its address carry the real caller in X-Bridge-* headers.
    edge_proxy: str | None = None
    edge_source: str | None = None


class AnswerCall(Message):
    """Send a provisional (180/183) or final 200 answer to an incoming call."""

    kind: Literal["AnswerCall"] = "AnswerCall"
    call_ref: str
    code: Literal[180, 183, 200]


class RejectCall(Message):
    kind: Literal["RejectCall"] = "RejectCall"
    call_ref: str
    code: int = Field(ge=300, le=699)
    reason: str | None = None
    retry_after: int | None = None


class MakeCall(Message):
    """Place an outgoing call over a trunk."""

    kind: Literal["MakeCall"] = "MakeCall"
    call_ref: str
    trunk: str
    number: str
    caller_id: str | None = None
    caller_name: str | None = None


class HangupCall(Message):
    """End a call in whatever state it is: CANCEL, BYE or a final response as fits."""

    kind: Literal["HangupCall"] = "HangupCall"
    call_ref: str
    code: int | None = None
    reason: str | None = None


class StartWebRtc(Message):
    """Give the call a WebRTC audio leg: answer this offer, or make an offer if none."""

    kind: Literal["StartWebRtc"] = "StartWebRtc"
    call_ref: str
    offer: str | None = None


class RemoteDescription(Message):
    """The Matrix side's answer to our offer, or its new offer (renegotiation)."""

    kind: Literal["RemoteDescription"] = "RemoteDescription"
    call_ref: str
    type: Literal["offer", "answer"]
    sdp: str


class IceCandidate(Message):
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


class RemoteCandidates(Message):
    kind: Literal["RemoteCandidates"] = "RemoteCandidates"
    call_ref: str
    candidates: list[IceCandidate]


class MediaKey(Message):
    """A participant's frame-encryption key (docs/encryption.md, media keys): raw bytes,
    base64; `identity` is the participant's LiveKit identity."""

    identity: str
    index: int = Field(ge=0, le=255)
    key: str = Field(min_length=4, max_length=100, repr=False)


class StartLiveKit(Message):
    """Join the call's LiveKit room with this token; mix in these participants. With
    `own_key`, media is frame-encrypted (an encrypted room) and the phone's track is sent
    with that key."""

    kind: Literal["StartLiveKit"] = "StartLiveKit"
    call_ref: str
    url: str
    token: str
    identities: list[str]
    own_key: MediaKey | None = None


class LiveKitKey(Message):
    """A key for frames: a member's, to read theirs; or `own`, the phone's new key (a
    rotation), to send with from now on."""

    kind: Literal["LiveKitKey"] = "LiveKitKey"
    call_ref: str
    key: MediaKey
    own: bool = False


class LiveKitMembers(Message):
    """The participants the phone may hear now (memberships came or went)."""

    kind: Literal["LiveKitMembers"] = "LiveKitMembers"
    call_ref: str
    identities: list[str]


class SendDtmf(Message):
    kind: Literal["SendDtmf"] = "SendDtmf"
    call_ref: str
    digits: str = Field(pattern=r"^[0-9*#A-Da-d]{1,32}$")


class Drain(Message):
    """Refuse new INVITEs with 503 and Retry-After; let live calls run on."""

    kind: Literal["Drain"] = "Drain"
    retry_after: int


class Stop(Message):
    """Hang up every call and exit."""

    kind: Literal["Stop"] = "Stop"


# ---- worker → controller ---------------------------------------------------------------


class WorkerReady(Message):
    kind: Literal["WorkerReady"] = "WorkerReady"
    worker_id: int
    pid: int
    sip_host: str
    sip_port: int
    capacity: int
    sip_start_seconds: float


class SipRequestSeen(Message):
    """Any SIP request that reached the worker's stack, including ones it answers itself."""

    kind: Literal["SipRequestSeen"] = "SipRequestSeen"
    method: str
    source: str
    transport: str
    sip_call_id: str | None = None


class IncomingCall(Message):
    kind: Literal["IncomingCall"] = "IncomingCall"
    call_ref: str
    sip_call_id: str
    request_uri: str
    from_uri: str
    from_display: str | None
    to_uri: str
    source: str
    transport: str
    via_edge: bool = False
    peer: str | None = None  # the edge authenticated this phone (digest user name)


class CallProgress(Message):
    kind: Literal["CallProgress"] = "CallProgress"
    call_ref: str
    state: Literal["ringing", "early", "answered"]
    sip_code: int


class CallEnded(Message):
    kind: Literal["CallEnded"] = "CallEnded"
    call_ref: str
    sip_code: int
    reason: str
    q850_cause: int | None = None
    by_remote: bool
    # A 3xx the worker did not follow: where it pointed (the controller decides).
    redirect_to: str | None = None


class CallRefusedByStack(Message):
    """The SIP stack refused an INVITE itself (no free slot, unusable SDP) before we saw it."""

    kind: Literal["CallRefusedByStack"] = "CallRefusedByStack"
    sip_call_id: str
    source: str
    from_uri: str
    to_uri: str
    sip_code: int
    reason: str


class TrunkRegistration(Message):
    kind: Literal["TrunkRegistration"] = "TrunkRegistration"
    trunk: str
    state: Literal["registered", "unregistered", "failed", "registering"]
    code: int
    reason: str
    expires: int


class WebRtcDescription(Message):
    kind: Literal["WebRtcDescription"] = "WebRtcDescription"
    call_ref: str
    type: Literal["offer", "answer"]
    sdp: str


class WebRtcState(Message):
    kind: Literal["WebRtcState"] = "WebRtcState"
    call_ref: str
    state: str  # aiortc's connectionState: connecting, connected, failed, closed
    detail: str = ""


class LiveKitState(Message):
    kind: Literal["LiveKitState"] = "LiveKitState"
    call_ref: str
    state: Literal["connected", "failed", "closed"]
    detail: str = ""


class DtmfReceived(Message):
    kind: Literal["DtmfReceived"] = "DtmfReceived"
    call_ref: str
    digit: str
    method: Literal["rfc4733", "info"]


class InDialogRefused(Message):
    """The worker refused something inside a live call (a REFER, a stranger's request)."""

    kind: Literal["InDialogRefused"] = "InDialogRefused"
    call_ref: str
    method: str
    sip_code: int
    detail: str


class RtpDropped(Message):
    """Packets to a call's media ports from someone other than its peer, dropped so far."""

    kind: Literal["RtpDropped"] = "RtpDropped"
    call_ref: str
    packets: int


class WorkerStats(Message):
    kind: Literal["WorkerStats"] = "WorkerStats"
    active_calls: int
    capacity: int
    draining: bool
    frames_underrun: int = 0
    frames_overrun: int = 0


ToWorker = Annotated[
    WorkerSettings
    | AnswerCall
    | RejectCall
    | MakeCall
    | HangupCall
    | StartWebRtc
    | RemoteDescription
    | RemoteCandidates
    | StartLiveKit
    | LiveKitMembers
    | LiveKitKey
    | SendDtmf
    | Drain
    | Stop,
    Field(discriminator="kind"),
]
FromWorker = Annotated[
    WorkerReady
    | SipRequestSeen
    | IncomingCall
    | CallProgress
    | CallEnded
    | CallRefusedByStack
    | TrunkRegistration
    | WebRtcDescription
    | WebRtcState
    | LiveKitState
    | DtmfReceived
    | InDialogRefused
    | RtpDropped
    | WorkerStats,
    Field(discriminator="kind"),
]

# mypy reads a long Annotated union as a value here (and a short one not); pydantic takes both.
_to_worker: TypeAdapter[ToWorker] = TypeAdapter(ToWorker)  # type: ignore[arg-type,unused-ignore]
_from_worker: TypeAdapter[FromWorker] = TypeAdapter(FromWorker)  # type: ignore[arg-type,unused-ignore]


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode() + b"\n"


def decode_to_worker(line: bytes) -> ToWorker:
    try:
        return _to_worker.validate_json(line)
    except ValidationError as e:
        raise ProtocolError(f"bad message for the worker: {e.errors()[0]['msg']}") from e


def decode_from_worker(line: bytes) -> FromWorker:
    try:
        return _from_worker.validate_json(line)
    except ValidationError as e:
        raise ProtocolError(f"bad message from a worker: {e.errors()[0]['msg']}") from e
