"""Typed configuration: YAML file + environment overrides, validated at start.

Every problem is reported as one line naming the key, the value and what was expected,
so that a homeserver admin can fix it without reading code.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

ENV_PREFIX = "SIPBRIDGE_"
GENERATE = "generate"
# Values shipped in example-config.yaml that must never reach a running bridge.
PLACEHOLDER_MARKERS = ("example.com", "example.org", "CHANGE_ME")
SECRET_KEY_WORDS = ("token", "password", "secret")

Port = Annotated[int, Field(ge=1, le=65535)]


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class PermissionLevel(StrEnum):
    NONE = "none"
    USER = "user"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {PermissionLevel.NONE: 0, PermissionLevel.USER: 1, PermissionLevel.ADMIN: 2}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(:\d+)?(/\S*)?", value):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


def _check_bind_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("expected an IP address to bind to") from None
    return value


def _check_unique(names: list[str], what: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(repeated)}")


class HomeserverConfig(Section):
    address: str = Field(description="URL the bridge uses to reach the homeserver")
    domain: str = Field(description="the homeserver's server_name")
    verify_tls: bool = True
    # Back-off doubles from 4 s, so 6 retries ride out about four minutes of outage.
    retries: Annotated[int, Field(ge=0, le=10)] = 6

    _url = field_validator("address")(_check_http_url)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", value):
            raise ValueError("expected a server name such as matrix.org or localhost:8448")
        return value


class AppserviceConfig(Section):
    address: str = Field("http://127.0.0.1:29360", description="URL the homeserver calls us at")
    hostname: str = "127.0.0.1"
    port: Port = 29360
    id: str = "sip"
    as_token: str = GENERATE
    hs_token: str = GENERATE

    _url = field_validator("address")(_check_http_url)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
            raise ValueError("expected letters, digits, '_', '.' or '-'")
        return value


class BotConfig(Section):
    username: str = "sipbot"
    displayname: str = "SIP bridge"

    @field_validator("username")
    @classmethod
    def _localpart(cls, value: str) -> str:
        return _check_localpart(value)


def _check_localpart(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9._=\-/+]+", value):
        raise ValueError("expected a Matrix localpart: a-z, 0-9, '.', '_', '=', '-', '/', '+'")
    return value


class BridgeConfig(Section):
    bot: BotConfig = BotConfig()
    username_template: str = Field("sip_{number}", description="ghost localpart; {number}")
    displayname_template: str = Field("{name}", description="{name} is caller name or number")
    command_prefix: str = "!sip"
    permissions: dict[str, PermissionLevel] = Field(default_factory=dict)
    # off: encrypted rooms are not read; allow: the bot reads and answers in them.
    encryption: Literal["off", "allow"] = "off"

    @field_validator("username_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if value.count("{number}") != 1:
            raise ValueError("expected exactly one '{number}' in the template")
        _check_localpart(value.replace("{number}", "+1"))
        return value

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: dict[str, PermissionLevel]) -> dict[str, PermissionLevel]:
        for key in value:
            if key != "*" and not re.fullmatch(r"@[^:\s]+:\S+|[A-Za-z0-9.\-]+(:\d+)?", key):
                raise ValueError(f"'{key}' is neither a user id (@user:server), a domain nor '*'")
        return value


class DatabaseConfig(Section):
    url: str = "sqlite+aiosqlite:///sip-bridge.db"
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "expected sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db"
            )
        return value


Transport = Literal["udp", "tcp", "tls"]
ListenTransport = Literal["udp", "tcp"]
Codec = Literal["PCMU", "PCMA", "G722"]


def _all_listen_transports() -> list[ListenTransport]:
    return ["udp", "tcp"]


def _all_codecs() -> list[Codec]:
    return ["PCMU", "PCMA", "G722"]


class DialPlanConfig(Section):
    """How dialled numbers become E.164, and which destinations may be called."""

    country_code: str = Field("", pattern=r"^\d{0,3}$")
    national_prefix: str = Field("0", pattern=r"^\d{0,2}$")
    international_prefix: str = Field("00", pattern=r"^\d{0,4}$")
    allow: list[str] = Field(default_factory=lambda: [r"^\+"])
    deny: list[str] = Field(default_factory=list)

    @field_validator("allow", "deny")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"'{pattern}' is not a regular expression: {e}") from None
        return value


class TrunkConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    host: str
    port: Port = 5060
    transport: Transport = "udp"
    username: str | None = None
    password: str | None = None
    auth_realm: str = Field("*", description="digest realm the credentials are for")
    # The number trunk calls come from, and per-user numbers (sent as P-Asserted-Identity).
    caller_id: str | None = None
    caller_id_by_user: dict[str, str] = Field(default_factory=dict)
    dial_plan: DialPlanConfig = DialPlanConfig()
    # "register" would shadow a pydantic method, so the attribute has another name.
    send_register: bool = Field(False, alias="register")
    register_interval: Annotated[int, Field(ge=30, le=86400)] = 300
    allowed_sources: list[str] = Field(default_factory=list)

    @field_validator("allowed_sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or CIDR network") from None
        return value


class SipConfig(Section):
    listen_host: str = "127.0.0.1"
    port: Port = Field(5060, description="first worker's port; worker N uses port + N - 1")
    public_host: str | None = None
    transports: list[ListenTransport] = Field(default_factory=_all_listen_transports)
    decision_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    # RFC 4028: a dialog nobody refreshes within this is dead and gets a BYE (90 is the floor).
    session_expires: Annotated[int, Field(ge=90, le=86400)] = 1800
    trunks: list[TrunkConfig] = Field(default_factory=list)

    _host = field_validator("listen_host")(_check_bind_address)

    @field_validator("trunks")
    @classmethod
    def _unique_trunks(cls, value: list[TrunkConfig]) -> list[TrunkConfig]:
        _check_unique([t.name for t in value], "trunk names")
        return value


class WorkersConfig(Section):
    count: Annotated[int, Field(ge=1, le=64)] = 1
    max_calls: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="calls per worker at most; the measured capacity may be lower"
    )
    drain_timeout: Annotated[float, Field(ge=0)] = 300.0
    drain_retry_after: Annotated[int, Field(ge=1, le=3600)] = 60
    restart_delay_max: Annotated[float, Field(gt=0, le=600)] = 30.0


class EdgePeerConfig(Section):
    """A phone that may call in through the edge after digest authentication."""

    username: str = Field(pattern=r"^[A-Za-z0-9_.+\-]{1,64}$")
    password: str = Field(min_length=12, description="at least 12 characters")


class EdgeConfig(Section):
    """Kamailio in front of the workers (deploy/kamailio); off: the one worker listens."""

    enabled: bool = False
    listen_host: str = "127.0.0.1"
    port: Port = 5060
    transports: list[ListenTransport] = Field(default_factory=_all_listen_transports)
    # The address phones and trunks reach (NAT); default: listen_host:port.
    advertised_host: str | None = None
    # Where `python -m bridge edge-config` writes Kamailio's files, and its control socket.
    config_dir: Path = Path("edge")
    realm: str | None = Field(None, description="digest realm; default: the homeserver domain")
    digest_algorithm: Literal["SHA-256", "MD5"] = "SHA-256"
    # Per source outside the trunks: more requests than this per window is a flood.
    flood_requests: Annotated[int, Field(ge=2, le=10000)] = 40
    flood_window: Annotated[int, Field(ge=1, le=60)] = 2
    # New calls per second each worker is given at most, from anyone (trunks too); more
    # get 503 with Retry-After. pjsua2 aborts under bursts of ~50 INVITEs/s per worker.
    calls_per_second_per_worker: Annotated[int, Field(ge=1, le=40)] = 20
    # Failed authentications from one source before it is ignored for block_seconds.
    auth_failures: Annotated[int, Field(ge=1, le=100)] = 5
    block_seconds: Annotated[int, Field(ge=10, le=86400)] = 600
    peers: list[EdgePeerConfig] = Field(default_factory=list)

    _host = field_validator("listen_host")(_check_bind_address)

    @field_validator("peers")
    @classmethod
    def _unique_peers(cls, value: list[EdgePeerConfig]) -> list[EdgePeerConfig]:
        _check_unique([p.username for p in value], "peer usernames")
        return value


class IceServerConfig(Section):
    urls: list[str]
    username: str | None = None
    credential: str | None = None

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^(stun|stuns|turn|turns):", url):
                raise ValueError(f"'{url}' is not a stun: or turn: URL")
        return value


WebRtcCodec = Literal["opus", "G722", "PCMU", "PCMA"]


def _webrtc_codecs() -> list[WebRtcCodec]:
    return ["G722", "opus", "PCMU", "PCMA"]


class MediaConfig(Section):
    rtp_port: Port = 20000
    rtp_ports_per_worker: Annotated[int, Field(ge=8, le=10000)] = 200
    codecs: list[Codec] = Field(default_factory=_all_codecs)
    # WebRTC (legacy 1:1 calls): STUN/TURN servers (none by default: no public server is
    # contacted), the local addresses offered as ICE host candidates (empty: all), and the
    # codecs in order of preference (G.722 first: wideband like the phone leg, and cheap).
    # The SIP side's adaptive jitter buffer starts at, and never goes below, this many ms.
    sip_jitter_ms: Annotated[int, Field(ge=20, le=500)] = 40
    # A call whose phone sends no RTP for this long is ended (0: never).
    rtp_timeout: Annotated[float, Field(ge=0, le=3600)] = 30.0
    # Media only from the call's own peer: the address its SDP names, or (a phone behind
    # NAT) the first packets from its signalling host, then fixed. False lets pjmedia switch
    # to any source that sends enough packets, which lets a stranger take the call's audio.
    strict_rtp: bool = True
    ice_servers: list[IceServerConfig] = Field(default_factory=list)
    webrtc_host_addresses: list[str] = Field(default_factory=list)
    webrtc_codecs: list[WebRtcCodec] = Field(default_factory=_webrtc_codecs)
    # Packets the WebRTC receiver holds before playing (20 ms each): latency against jitter.
    webrtc_jitter_frames: Annotated[int, Field(ge=1, le=15)] = 2

    @field_validator("webrtc_host_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"'{address}' is not an IP address") from None
        return value


class MatrixRtcConfig(Section):
    # The MatrixRTC/LiveKit service sent in our memberships' foci_preferred, when the bridge
    # starts a session. A ghost joining a session uses the oldest member's focus instead.
    livekit_service_url: str = ""
    # How long a ring lasts (clients cap it at 2 minutes).
    ring_lifetime: Annotated[float, Field(ge=5, le=120)] = 60.0
    membership_expires: Annotated[int, Field(ge=60, le=86400)] = 14400
    # A ghost's membership is removed by the homeserver this long after the bridge goes quiet.
    delayed_leave: Annotated[float, Field(ge=2, le=120)] = 10.0
    delayed_leave_refresh: Annotated[float, Field(ge=1, le=60)] = 5.0
    # Also send org.matrix.msc4075.call.notify, for clients older than rtc.notification.
    send_call_notify: bool = False
    # What the phone hears when a Matrix user declines: 603 Decline or 486 Busy Here.
    decline_code: Literal[603, 486] = 603
    # In an encrypted room: how long a member may take to send the ghost their media key
    # before the room is told the phone cannot hear them.
    media_key_timeout: Annotated[float, Field(ge=1, le=120)] = 10.0

    @field_validator("livekit_service_url")
    @classmethod
    def _service(cls, value: str) -> str:
        return _check_http_url(value) if value else value


class LiveKitConfig(Section):
    """The SFU (LiveKit). With the API key and secret the bridge mints its own tokens;
    without them it asks the MatrixRTC auth service named in each call's focus."""

    url: str = ""
    api_key: str | None = None
    api_secret: str | None = None

    @field_validator("url")
    @classmethod
    def _ws(cls, value: str) -> str:
        if value and not re.fullmatch(r"wss?://\S+", value):
            raise ValueError("expected a ws:// or wss:// URL")
        return value


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sip_messages: bool = Field(False, description="log every SIP message at DEBUG")


class MetricsConfig(Section):
    enabled: bool = True
    hostname: str = "127.0.0.1"
    port: Port = 9400


class Config(Section):
    homeserver: HomeserverConfig
    appservice: AppserviceConfig = AppserviceConfig()
    bridge: BridgeConfig = BridgeConfig()
    database: DatabaseConfig = DatabaseConfig()
    sip: SipConfig = SipConfig()
    edge: EdgeConfig = EdgeConfig()
    workers: WorkersConfig = WorkersConfig()
    media: MediaConfig = MediaConfig()
    matrixrtc: MatrixRtcConfig = MatrixRtcConfig()
    livekit: LiveKitConfig = LiveKitConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()

    @model_validator(mode="after")
    def _edge_port_free(self) -> Config:
        first, last = self.sip.port, self.sip.port + self.workers.count - 1
        if self.edge.enabled and first <= self.edge.port <= last:
            raise ValueError(
                f"edge.port {self.edge.port} is one of the workers' SIP ports "
                f"({first}-{last}); give the edge or sip.port another port"
            )
        return self

    @property
    def bot_mxid(self) -> str:
        return f"@{self.bridge.bot.username}:{self.homeserver.domain}"

    def permission_of(self, user_id: str) -> PermissionLevel:
        """The most specific rule wins: user id, then domain, then '*'; default none."""
        rules = self.bridge.permissions
        domain = user_id.split(":", 1)[1] if ":" in user_id else ""
        for key in (user_id, domain, "*"):
            if key in rules:
                return rules[key]
        return PermissionLevel.NONE


def _is_secret_key(path: str) -> bool:
    last = path.rsplit(".", 1)[-1].lower()
    return any(word in last for word in SECRET_KEY_WORDS)


def _shown(path: str, value: Any) -> str:
    if _is_secret_key(path):
        return "<hidden>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _env_overrides(environ: dict[str, str] | os._Environ[str]) -> list[tuple[str, Any]]:
    """SIPBRIDGE_SECTION__KEY=value → ("section.key", parsed value); values are YAML."""
    yaml = YAML(typ="safe")
    result = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        try:
            value = yaml.load(raw) if raw.strip() else ""
        except YAMLError as e:
            raise ConfigError(f"{name}: value is not valid YAML ({e.__class__.__name__})") from e
        result.append((path, value))
    return result


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: cannot override inside '{part}', which is not a section")
        node = child
    node[parts[-1]] = value


def _find_placeholders(tree: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            child = f"{path}.{key}" if path else str(key)
            if any(m in str(key) for m in PLACEHOLDER_MARKERS):
                found.append(
                    f"{child}: this key is the example config's placeholder; "
                    "replace it with your own"
                )
            found += _find_placeholders(value, child)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += _find_placeholders(value, f"{path}[{i}]")
    elif isinstance(tree, str) and any(m in tree for m in PLACEHOLDER_MARKERS):
        found.append(
            f"{path} = {_shown(path, tree)}: this is the example config's placeholder; "
            "set your own value"
        )
    return found


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        if item["type"] == "missing":
            lines.append(f"{source}: {path}: missing; this key is required")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{source}: {path}: unknown key (check its spelling and section)")
        elif not path:  # a rule across sections
            lines.append(f"{source}: {item['msg'].removeprefix('Value error, ')}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {path} = {_shown(path, item['input'])}: {message}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from e
    try:
        tree = YAML(typ="safe").load(text)
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from e
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return tree


def parse_config(
    tree: dict[str, Any],
    source: str = "config",
    environ: dict[str, str] | os._Environ[str] | None = None,
    require_tokens: bool = True,
) -> Config:
    """Validate a config tree, after applying environment overrides."""
    for path, value in _env_overrides(os.environ if environ is None else environ):
        _set_path(tree, path, value)
    problems = _find_placeholders(tree)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    try:
        config = Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None
    if require_tokens:
        for key in ("as_token", "hs_token"):
            if getattr(config.appservice, key) == GENERATE:
                raise ConfigError(
                    f"{source}: appservice.{key} is still '{GENERATE}': run "
                    "`python -m bridge -g -c CONFIG -r registration.yaml` to create the tokens "
                    "and the registration file"
                )
    return config


def load_config(path: Path, require_tokens: bool = True) -> Config:
    return parse_config(read_yaml(path), str(path), require_tokens=require_tokens)
