"""Pure helpers that read SIP message text (RFC 3261) without any SIP stack."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Compact header forms (RFC 3261 §7.3.3) that matter here.
_COMPACT = {
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "v": "via",
    "l": "content-length",
}
_NAME_ADDR = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^<"]*?))\s*<([^>]*)>')
_LOG_HEADLINE = re.compile(
    r"^RX \d+ bytes Request msg (?P<method>[A-Za-z0-9.!%*_+`'~\-]+)/cseq=\d+ \([^)]*\) "
    r"from (?P<transport>\w+) (?P<source>\S+?):\n"
)


@dataclass(frozen=True)
class NameAddr:
    display: str | None
    uri: str

    @property
    def user(self) -> str:
        """The user part of a sip:/sips:/tel: URI ('' when there is none)."""
        return uri_user(self.uri)


def headers(message: str) -> dict[str, str]:
    """First value of each header, by lower-case long name; folded lines are joined."""
    head = message.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    lines = head.replace("\r\n", "\n").split("\n")[1:]
    result: dict[str, str] = {}
    last = ""
    for line in lines:
        if line[:1] in (" ", "\t") and last:
            result[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key not in result:
            result[key] = value.strip()
            last = key
        else:
            last = ""
    return result


def request_uri(message: str) -> str | None:
    first = message.split("\n", 1)[0].strip()
    parts = first.split(" ")
    if len(parts) == 3 and parts[2].upper().startswith("SIP/"):
        return parts[1]
    return None


def parse_name_addr(value: str) -> NameAddr:
    """`"Alice" <sip:+4930@host>;tag=x` → NameAddr("Alice", "sip:+4930@host")."""
    match = _NAME_ADDR.match(value)
    if match:
        quoted, token, uri = match.groups()
        display = quoted if quoted is not None else (token or "").strip()
        if quoted is not None:
            display = re.sub(r"\\(.)", r"\1", display)
        return NameAddr(display or None, uri.strip())
    return NameAddr(None, value.split(";", 1)[0].strip())


def uri_user(uri: str) -> str:
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    if scheme.lower() not in ("sip", "sips"):
        return ""
    userinfo, at, _host = rest.partition("@")
    if not at:
        return ""
    return userinfo.split(";", 1)[0].split(":", 1)[0]


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    transport: str
    source: str
    sip_call_id: str | None
    text: str


def parse_logged_request(log_text: str) -> LoggedRequest | None:
    """pjsip's message log ('RX … Request msg OPTIONS/cseq=1 … from UDP 1.2.3.4:5060:')."""
    match = _LOG_HEADLINE.match(log_text.lstrip())
    if not match:
        return None
    text = log_text.lstrip()[match.end() :]
    text = text.split("\n--end msg--", 1)[0]
    return LoggedRequest(
        method=match["method"].upper(),
        transport=match["transport"].lower(),
        source=match["source"],
        sip_call_id=headers(text).get("call-id"),
        text=text,
    )


def q850_cause(reason_header: str | None) -> int | None:
    """The cause of a `Reason: Q.850;cause=16;text="..."` header (RFC 3326), if any."""
    if not reason_header:
        return None
    for part in reason_header.split(","):
        protocol, _, params = part.strip().partition(";")
        if protocol.strip().upper() != "Q.850":
            continue
        match = re.search(r"(?i)\bcause\s*=\s*(\d{1,3})\b", params)
        if match:
            return int(match.group(1))
    return None
