"""A phone over raw UDP that, once its call is up, sends whatever a test wants inside the
dialog (REFER, re-INVITE, INFO…), and an RTP endpoint that talks and counts what it hears.

Requests follow the route set of the 200 (the edge's Record-Route), as RFC 3261 §12.2 says.
"""

from __future__ import annotations

import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .rawsip import Reply, UdpPeer

PHONE_NUMBER = "+4940111222"


def ulaw(samples: np.ndarray[Any, Any]) -> bytes:
    """G.711 µ-law of 16-bit samples."""
    x = np.clip(samples.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    x = np.abs(x) + 0x84
    exponent = np.floor(np.log2(x)).astype(np.int32) - 7
    mantissa = (x >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8))


@dataclass
class RtpEndpoint:
    """An RTP (and RTCP, port + 1) socket pair that sends a tone while `talking` and
    counts the RTP it receives."""

    host: str = "127.0.0.1"
    tone_hz: float = 440.0
    talking: bool = False
    received: int = 0
    target: tuple[str, int] | None = None
    rtp: socket.socket = field(init=False)
    rtcp: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        for _ in range(20):  # an even port with a free odd one above it
            self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.rtp.bind((self.host, 0))
            port = self.rtp.getsockname()[1]
            self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                if port % 2:
                    raise OSError("odd")
                self.rtcp.bind((self.host, port + 1))
                break
            except OSError:
                self.rtp.close()
                self.rtcp.close()
        self.port = self.rtp.getsockname()[1]
        self.rtp.settimeout(0.05)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._receive, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        seq, ts, ssrc = 0, 0, secrets.randbits(32)
        start = time.monotonic()
        while not self._stop.is_set():
            time.sleep(max(0.0, start + seq * 0.02 - time.monotonic()))
            seq += 1
            if not self.talking or self.target is None:
                continue
            t = (np.arange(160) + ts) / 8000
            payload = ulaw(8000 * np.sin(2 * np.pi * self.tone_hz * t))
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            self.rtp.sendto(header + payload, self.target)
            ts += 160

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                self.rtp.recv(2048)
            except (TimeoutError, OSError):
                continue
            self.received += 1

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1)
        self.rtp.close()
        self.rtcp.close()


def sdp(host: str, port: int, version: int = 1, payloads: str = "0 8") -> str:
    maps = {"0": "PCMU/8000", "8": "PCMA/8000", "18": "G729/8000", "101": "telephone-event/8000"}
    lines = [
        "v=0",
        f"o=phone 1 {version} IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {payloads}",
        *(f"a=rtpmap:{pt} {maps[pt]}" for pt in payloads.split() if pt in maps),
        "a=sendrecv",
    ]
    return "\r\n".join(lines) + "\r\n"


class DialogPhone:
    """One call from `host`, then requests inside its dialog."""

    def __init__(self, target: tuple[str, int], number: str, host: str = "127.0.0.1") -> None:
        self.target = target
        self.number = number
        self.sip = UdpPeer(host)
        self.media = RtpEndpoint(host)
        self.call_id = f"{secrets.token_hex(10)}@{host}"
        self.from_tag = secrets.token_hex(4)
        self.to_tag = ""
        self.cseq = 1
        self.remote_target = f"sip:{number}@{target[0]}:{target[1]}"
        self.routes: list[str] = []
        self.answer: Reply | None = None
        self.advertised_media: tuple[str, int] | None = None  # what the SDP says, if not ours

    @property
    def bridge_media(self) -> tuple[str, int]:
        """The bridge's RTP address from its SDP answer."""
        assert self.answer is not None
        body = self.answer.text.split("\r\n\r\n", 1)[1]
        host = re.search(r"^c=IN IP4 (\S+)", body, re.M)
        port = re.search(r"^m=audio (\d+)", body, re.M)
        assert host and port, body
        return host.group(1), int(port.group(1))

    def _message(
        self,
        method: str,
        uri: str,
        cseq: int,
        extra: str = "",
        body: str = "",
        branch: str | None = None,
    ) -> str:
        peer = self.sip
        to_tag = f";tag={self.to_tag}" if self.to_tag else ""
        branch = branch or f"z9hG4bK{secrets.token_hex(8)}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {peer.host}:{peer.port};branch={branch};rport",
            "Max-Forwards: 70",
            f'From: "Phone" <sip:{PHONE_NUMBER}@{peer.host}>;tag={self.from_tag}',
            f"To: <sip:{self.number}@{self.target[0]}>{to_tag}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{PHONE_NUMBER}@{peer.host}:{peer.port}>",
            *(
                f"Route: {route}"
                for route in (self.routes if method != "INVITE" or self.to_tag else [])
            ),
        ]
        if extra:
            lines.extend(extra.strip("\r\n").split("\r\n"))
        if body and "content-type" not in extra.lower():
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def call(self, timeout: float = 30.0, extra: str = "") -> Reply:
        """INVITE, wait for the final answer (a 200 once Matrix answers), ACK it."""
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        media = self.advertised_media or (self.sip.host, self.media.port)
        invite = self._message("INVITE", self.remote_target, 1, extra, sdp(*media), branch=branch)
        replies = self.sip.ask(self.target, invite, timeout)
        final = replies[-1]
        self.to_tag = (final.header("To") or "").split("tag=", 1)[-1]
        if final.code == 200:
            self.answer = final
            self.routes = [r.strip() for r in reversed(self._all("Record-Route", final))]
            contact = re.search(r"<([^>]+)>", final.header("Contact") or "")
            if contact:
                self.remote_target = contact.group(1)
            self.media.target = self.bridge_media
            self.sip.send(self.target, self._message("ACK", self.remote_target, 1).encode())
        else:  # the ACK of a failed INVITE belongs to its transaction (RFC 3261 §17.1.1.3)
            ack = self._message(
                "ACK", f"sip:{self.number}@{self.target[0]}:{self.target[1]}", 1, branch=branch
            )
            self.sip.send(self.target, ack.encode())
        return final

    @staticmethod
    def _all(name: str, reply: Reply) -> list[str]:
        values: list[str] = []
        for line in reply.text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                values.extend(v for v in value.split(",") if v.strip())
        return values

    def request(
        self,
        method: str,
        extra: str = "",
        body: str = "",
        sender: UdpPeer | None = None,
        wrong_tag: bool = False,
        timeout: float = 5.0,
    ) -> list[Reply]:
        """A request in the call's dialog (from `sender` if given: a stranger who knows the
        dialog's identifiers); an INVITE's final answer is ACKed."""
        self.cseq += 1
        tag, self.to_tag = self.to_tag, ("x" + self.to_tag if wrong_tag else self.to_tag)
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        message = self._message(method, self.remote_target, self.cseq, extra, body, branch)
        peer = sender or self.sip
        if sender is not None:
            message = message.replace(
                f"{self.sip.host}:{self.sip.port}", f"{peer.host}:{peer.port}"
            )
        replies = peer.ask(self.target, message, timeout)
        if method == "INVITE" and replies and replies[-1].code >= 200:
            if replies[-1].code == 200:
                # A re-INVITE without SDP got the bridge's offer: the ACK carries the answer.
                answer = "" if body else sdp(self.sip.host, self.media.port, version=self.cseq)
                ack = self._message("ACK", self.remote_target, self.cseq, body=answer)
            else:
                ack = self._message("ACK", self.remote_target, self.cseq, branch=branch)
            if sender is not None:
                ack = ack.replace(f"{self.sip.host}:{self.sip.port}", f"{peer.host}:{peer.port}")
            peer.send(self.target, ack.encode())
        self.to_tag = tag
        return replies

    def close(self) -> None:
        self.media.close()
        self.sip.close()
