"""Strict RTP against the real kernel: socket filters on real UDP sockets."""

import socket
import time
from collections.abc import Iterator

import pytest

from bridge.sip.rtp_guard import (
    RtpGuard,
    RtpGuardError,
    attach_filter,
    filter_program,
    parse_address,
    udp_sockets,
)


def udp(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


@pytest.fixture
def sockets() -> Iterator[dict[str, socket.socket]]:
    made = {
        "media": udp(),
        "peer": udp(),
        "same_host": udp(),
        "stranger": udp("127.0.0.2"),
    }
    made["media"].settimeout(0.2)
    yield made
    for sock in made.values():
        sock.close()


def heard(media: socket.socket, senders: dict[str, socket.socket]) -> set[str]:
    for name, sock in senders.items():
        sock.sendto(name.encode(), media.getsockname())
    got = set()
    while True:
        try:
            got.add(media.recv(64).decode())
        except TimeoutError:
            return got


def test_parse_address() -> None:
    assert parse_address("1.2.3.4:5000") == ("1.2.3.4", 5000)
    assert parse_address("[::1]:5000") == ("::1", 5000)
    for unset in ("", "0.0.0.0:0", "1.2.3.4:0", "nonsense"):
        assert parse_address(unset) is None


def test_a_filter_passes_the_exact_peer_or_a_host_and_drops_the_rest(
    sockets: dict[str, socket.socket],
) -> None:
    media, peer = sockets["media"], sockets["peer"]
    others = {k: v for k, v in sockets.items() if k != "media"}
    attach_filter(media.fileno(), filter_program([peer.getsockname()]))
    assert heard(media, others) == {"peer"}
    attach_filter(media.fileno(), filter_program([], ["127.0.0.1"]))
    assert heard(media, others) == {"peer", "same_host"}
    with pytest.raises(RtpGuardError):
        filter_program([("::1", 5000)])


def test_the_guard_latches_once_to_the_signalling_host_and_counts_drops(
    sockets: dict[str, socket.socket],
) -> None:
    media, peer = sockets["media"], sockets["peer"]
    others = {k: v for k, v in sockets.items() if k != "media"}
    guard = RtpGuard()
    # The SDP named an address nobody sends from (a phone behind NAT).
    guard.guard("c1", [media.getsockname()[1]], [("10.0.0.9", 4000)], "127.0.0.1")
    assert heard(media, others) == {"peer", "same_host"}
    assert guard.settle("c1", [peer.getsockname()]) == [peer.getsockname()]
    assert guard.settle("c1", [sockets["same_host"].getsockname()]) == []  # fixed already
    assert heard(media, others) == {"peer"}
    time.sleep(0.05)
    assert guard.count_drops() == {"c1": 3}  # the stranger's one, and two after the fix
    assert guard.count_drops() == {}  # nothing new
    guard.release("c1")
    assert guard.calls == {}


def test_a_port_without_a_socket_of_ours_is_an_error() -> None:
    taken = {row.port for row in udp_sockets()}
    free = next(p for p in range(40000, 60000) if p not in taken)
    with pytest.raises(RtpGuardError):
        RtpGuard().guard("c1", [free], [None], None)
