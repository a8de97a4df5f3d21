"""Strict RTP: a call's media sockets take packets only from the call's own peer.

pjmedia switches a stream's remote address to whoever sends it enough packets, and then
sends the call's audio there ("RTP bleed", docs/security.md). pjsua2 has no switch for that,
so the kernel does the check: each call's RTP and RTCP sockets get a classic BPF socket
filter that passes only the negotiated address (or, for a peer behind NAT, the signalling
peer's host until its first packets fix the address). Packets from anyone else never
reach pjmedia; the kernel counts them as the socket's drops (/proc/net/udp), which is where
the count comes from. Linux only; IPv4 media only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>; not in Python's socket module
SKF_NET_OFF = -0x100000  # loads relative to the IP header (linux/filter.h)
_LD_W_ABS, _LD_H_ABS, _JEQ_K, _RET_K = 0x20, 0x28, 0x15, 0x06
_ACCEPT, _DROP = 0xFFFFFFFF, 0

Address = tuple[str, int]


class RtpGuardError(Exception):
    """A call's media sockets could not be restricted to its peer."""


def parse_address(text: str) -> Address | None:
    """'1.2.3.4:5000' (pjsua2's notation) → ('1.2.3.4', 5000); None when empty or unset."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    if not host or host in ("0.0.0.0", "::") or int(port) == 0:
        return None
    return host, int(port)


def _ipv4(host: str) -> int:
    try:
        return int(ipaddress.IPv4Address(host))
    except ValueError:
        raise RtpGuardError(f"{host} is not an IPv4 address (strict RTP is IPv4 only)") from None


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def filter_program(exact: Sequence[Address], hosts: Sequence[str] = ()) -> bytes:
    """A UDP socket filter passing packets from `exact` addresses, or from any port of
    `hosts`, and dropping the rest. (For UDP sockets the filter sees the UDP header at
    offset 0, so the source port is the half-word there.)"""
    program = []
    for host, port in exact:
        program += [
            _op(_LD_W_ABS, SKF_NET_OFF + 12),  # IPv4 source address
            _op(_JEQ_K, _ipv4(host), 0, 3),
            _op(_LD_H_ABS, 0),  # UDP source port
            _op(_JEQ_K, port, 0, 1),
            _op(_RET_K, _ACCEPT),
        ]
    for host in hosts:
        program += [
            _op(_LD_W_ABS, SKF_NET_OFF + 12),
            _op(_JEQ_K, _ipv4(host), 0, 1),
            _op(_RET_K, _ACCEPT),
        ]
    program.append(_op(_RET_K, _DROP))
    return b"".join(program)


def attach_filter(fd: int, program: bytes) -> None:
    """Replace the socket filter of the socket behind `fd` (which stays pjmedia's)."""
    code = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(code))
    with socket.socket(fileno=os.dup(fd)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@dataclass(frozen=True)
class UdpSocketRow:
    port: int
    inode: int
    drops: int


def udp_sockets(path: str = "/proc/net/udp") -> list[UdpSocketRow]:
    """The host's IPv4 UDP sockets: local port, inode, packets dropped."""
    rows = []
    with open(path) as table:
        next(table, None)
        for line in table:
            fields = line.split()
            if len(fields) < 13:
                continue
            rows.append(
                UdpSocketRow(int(fields[1].rsplit(":", 1)[1], 16), int(fields[9]), int(fields[12]))
            )
    return rows


def fd_of_inode(inode: int) -> int | None:
    """This process's descriptor for the socket with this inode."""
    target = f"socket:[{inode}]"
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == target:
                return int(name)
    return None


@dataclass
class _Leg:
    """One socket (RTP or RTCP) of a call, and who may send to it."""

    inode: int
    fd: int
    negotiated: Address | None
    fixed: Address | None = None  # the source it latched to

    def program(self, latch_host: str | None) -> bytes:
        if self.fixed is not None:
            return filter_program([self.fixed])
        exact = [self.negotiated] if self.negotiated else []
        return filter_program(exact, [latch_host] if latch_host else [])


@dataclass
class _Guarded:
    legs: list[_Leg]
    latch_host: str | None
    dropped: int = 0


@dataclass
class RtpGuard:
    """The strict-RTP state of every guarded call of one worker (SIP thread only)."""

    calls: dict[str, _Guarded] = field(default_factory=dict)

    def guard(
        self,
        ref: str,
        local_ports: Sequence[int],
        negotiated: Sequence[Address | None],
        latch_host: str | None,
    ) -> None:
        """Restrict the call's sockets (RTP, then RTCP) to their negotiated sources, or to
        any port of `latch_host` until `settle` fixes what was heard from it. Called again
        after a renegotiation, with the new addresses."""
        rows = {row.port: row for row in udp_sockets()}
        legs = []
        previous = self.calls.get(ref)
        for index, (port, address) in enumerate(zip(local_ports, negotiated, strict=True)):
            row = rows.get(port)
            fd = fd_of_inode(row.inode) if row else None
            if row is None or fd is None:
                raise RtpGuardError(f"no media socket of this worker on port {port}")
            leg = _Leg(row.inode, fd, address)
            if previous and index < len(previous.legs) and previous.legs[index].inode == row.inode:
                old = previous.legs[index]
                # A renegotiation that kept the address keeps what was latched.
                leg.fixed = old.fixed if old.negotiated == address else None
            legs.append(leg)
        guarded = _Guarded(legs, latch_host, previous.dropped if previous else 0)
        for leg in legs:
            attach_filter(leg.fd, leg.program(latch_host))
        self.calls[ref] = guarded

    def settle(self, ref: str, heard: Sequence[Address | None]) -> list[Address]:
        """Fix each socket to the source pjmedia heard, if it is one it may hear; returns
        the addresses newly fixed."""
        guarded = self.calls.get(ref)
        if guarded is None:
            return []
        fixed = []
        for leg, source in zip(guarded.legs, heard, strict=False):
            if leg.fixed is not None or source is None:
                continue
            if source == leg.negotiated or source[0] == guarded.latch_host:
                leg.fixed = source
                attach_filter(leg.fd, leg.program(guarded.latch_host))
                fixed.append(source)
        return fixed

    def count_drops(self) -> dict[str, int]:
        """Calls whose sockets dropped packets since the last count: ref → all so far."""
        drops = {row.inode: row.drops for row in udp_sockets()}
        changed = {}
        for ref, guarded in self.calls.items():
            total = sum(drops.get(leg.inode, 0) for leg in guarded.legs)
            if total > guarded.dropped:
                guarded.dropped = total
                changed[ref] = total
        return changed

    def release(self, ref: str) -> None:
        self.calls.pop(ref, None)
