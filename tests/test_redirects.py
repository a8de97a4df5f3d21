"""A 3xx from the far end of an outbound call: its target is dialled only as a number the
dial plan takes, over a trunk, never at the host the redirect names."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import BridgeStack, ended_records
from tests.test_outbound_calls import bot_dm
from teststack.bridge_process import BridgeProcess
from teststack.matrix_client import MatrixUser
from teststack.rawsip import response_to


class RedirectingTrunk:
    """The trunk: the first INVITE of each number in `redirects` gets a 302 to its target,
    every other INVITE 486. Keeps the Request-URI of each INVITE it gets."""

    def __init__(self, port: int, redirects: dict[str, str]) -> None:
        self.redirects = redirects
        self.invites: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        answered: set[str] = set()
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            if not text.startswith("INVITE "):
                continue
            uri = text.split(" ", 2)[1]
            call_id = next(
                line for line in text.split("\r\n") if line.lower().startswith("call-id")
            )
            if call_id in answered:
                continue  # a retransmission
            answered.add(call_id)
            self.invites.append(uri)
            self.sock.sendto(response_to(text, 100, "Trying").encode(), source)
            target = next((t for n, t in self.redirects.items() if f"sip:{n}@" in uri), None)
            if target is not None and sum(uri == u for u in self.invites) == 1:
                reply = response_to(text, 302, "Moved Temporarily", f"Contact: <{target}>")
            else:
                reply = response_to(text, 486, "Busy Here")
            self.sock.sendto(reply.encode(), source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def elsewhere() -> Iterator[socket.socket]:
    """The host a redirect names: nothing may ever reach it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    yield sock
    sock.close()


async def test_a_redirect_is_dialled_only_as_a_number_the_dial_plan_takes(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    elsewhere: socket.socket,
    tmp_path: Path,
) -> None:
    host = f"127.0.0.1:{elsewhere.getsockname()[1]}"
    trunk = RedirectingTrunk(
        stack.ports.trunk,
        {
            "+4930666001": f"sip:+4990012345@{host}",  # a premium number: blocked
            "+4930666002": f"sip:+4930777999@{host}",  # an ordinary one: dialled
        },
    )
    try:
        start_bridge()
        dm = await bot_dm(stack, bob)
        await bob.send_text(dm, "!sip call +4930666001")
        rows = await ended_records(tmp_path, 1)
        await bob.send_text(dm, "!sip call +4930666002")
        rows = await ended_records(tmp_path, 2)
    finally:
        trunk.close()
    blocked, followed = sorted(rows, key=lambda r: r["callee"])
    assert (blocked["outcome"], blocked["sip_code"]) == ("failed", 302), blocked
    assert "not followed" in blocked["reason"] and "blocked pattern" in blocked["reason"]
    assert (followed["outcome"], followed["sip_code"]) == ("busy", 486), followed
    assert "dialled +4930777999" in (followed["notes"] or "")
    trunk_port = stack.ports.trunk
    assert trunk.invites == [
        f"sip:+4930666001@127.0.0.1:{trunk_port}",
        f"sip:+4930666002@127.0.0.1:{trunk_port}",
        f"sip:+4930777999@127.0.0.1:{trunk_port}",  # at the trunk, not the named host
    ]
    with pytest.raises(TimeoutError):
        elsewhere.recv(65535)  # nothing was ever sent to the host the redirects named
