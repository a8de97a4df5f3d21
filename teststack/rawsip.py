"""Raw SIP over UDP for tests: send exactly these bytes, collect what comes back."""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    reason: str
    text: str

    def header(self, name: str) -> str | None:
        for line in self.text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None


def parse_reply(data: bytes) -> Reply | None:
    text = data.decode("utf-8", "replace")
    first = text.split("\r\n", 1)[0].split(" ", 2)
    if len(first) < 2 or not first[0].startswith("SIP/") or not first[1].isdigit():
        return None
    return Reply(int(first[1]), first[2] if len(first) > 2 else "", text)


class UdpPeer:
    """One UDP socket, as a phone or a scanner would have.

    Strangers use another loopback address (127.0.0.2) than the trunk (127.0.0.1).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpPeer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(self, target: tuple[str, int], data: bytes) -> None:
        self.sock.sendto(data, target)

    def replies(self, timeout: float, until_final: bool = True) -> list[Reply]:
        """Replies until a final one (or, with until_final False, until quiet)."""
        got: list[Reply] = []
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                break
            reply = parse_reply(data)
            if reply is None:
                continue
            got.append(reply)
            if until_final and reply.code >= 200:
                break
        return got

    def request(
        self,
        target: tuple[str, int],
        method: str,
        uri: str,
        extra: str = "",
        body: str = "",
        from_user: str = "scanner",
        to_user: str | None = None,
        call_id: str | None = None,
        cseq: int = 1,
    ) -> str:
        """A well-formed request from this socket (Via, tags, Call-ID filled in)."""
        to = f"sip:{to_user}@{target[0]}" if to_user else uri
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{from_user}@{self.host}>;tag={secrets.token_hex(4)}",
            f"To: <{to}>",
            f"Call-ID: {call_id or secrets.token_hex(12)}@{self.host}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{from_user}@{self.host}:{self.port}>",
        ]
        if extra:
            lines.extend(extra.strip("\r\n").split("\r\n"))
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def ask(
        self, target: tuple[str, int], message: str | bytes, timeout: float = 3.0
    ) -> list[Reply]:
        self.send(target, message.encode() if isinstance(message, str) else message)
        return self.replies(timeout)


def challenge_params(header: str) -> dict[str, str]:
    """'Digest realm="x", nonce="y", algorithm=SHA-256' → {'realm': 'x', ...}."""
    _, _, rest = header.partition(" ")
    return {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', rest)}


def digest_credentials(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """The Authorization value answering a challenge, with qop=auth if offered (RFC 7616)."""
    params = challenge_params(challenge)
    algorithm = params.get("algorithm", "MD5")
    digest = hashlib.sha256 if algorithm.upper() == "SHA-256" else hashlib.md5

    def h(text: str) -> str:
        return digest(text.encode()).hexdigest()

    ha1 = h(f"{user}:{params['realm']}:{password}")
    ha2 = h(f"{method}:{uri}")
    fields = f'username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}"'
    if "auth" in params.get("qop", "").split(","):
        cnonce, count = secrets.token_hex(8), "00000001"
        response = h(f"{ha1}:{params['nonce']}:{count}:{cnonce}:auth:{ha2}")
        fields += f', qop=auth, nc={count}, cnonce="{cnonce}"'
    else:
        response = h(f"{ha1}:{params['nonce']}:{ha2}")
    return f'Digest {fields}, response="{response}", algorithm={algorithm}'


def _header_lines(message: str, names: tuple[str, ...]) -> list[str]:
    head = message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    return [line for line in head if line.split(":", 1)[0].strip().lower() in names]


def cancel_of(invite: str) -> str:
    """The CANCEL for an INVITE we sent (same Request-URI, Via branch, tags, CSeq number)."""
    uri = invite.split(" ", 2)[1]
    cseq = next(line for line in _header_lines(invite, ("cseq",)))
    number = cseq.split(":", 1)[1].split()[0]
    lines = [f"CANCEL {uri} SIP/2.0", *_header_lines(invite, ("via", "from", "to", "call-id"))]
    lines += ["Max-Forwards: 70", f"CSeq: {number} CANCEL", "Content-Length: 0"]
    return "\r\n".join(lines) + "\r\n\r\n"


def ack_of(invite: str, reply: Reply) -> str:
    """The ACK for a final non-2xx answer to an INVITE we sent (RFC 3261 §17.1.1.3)."""
    uri = invite.split(" ", 2)[1]
    cseq = next(line for line in _header_lines(invite, ("cseq",)))
    number = cseq.split(":", 1)[1].split()[0]
    lines = [f"ACK {uri} SIP/2.0", *_header_lines(invite, ("via", "from", "call-id"))]
    lines += [f"To: {reply.header('To')}", "Max-Forwards: 70", f"CSeq: {number} ACK"]
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


SDP_OFFER = (
    "v=0\r\no=phone 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def response_to(request: str, code: int, reason: str, extra: str = "") -> str:
    """A UAS's response to a request it received (its Via, From, To with a tag, Call-ID,
    CSeq), with `extra` header lines."""
    lines = [f"SIP/2.0 {code} {reason}"]
    for line in _header_lines(request, ("via", "v", "from", "f", "call-id", "i", "cseq")):
        lines.append(line)
    to = next(iter(_header_lines(request, ("to", "t"))), "To: <sip:unknown@invalid>")
    lines.append(to if ";tag=" in to or code == 100 else f"{to};tag=far{secrets.token_hex(3)}")
    if extra:
        lines.extend(extra.strip("\r\n").split("\r\n"))
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"
