"""Kamailio's JSON-RPC over its local datagram socket (jsonrpcs module, transport 4)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any


class EdgeRpcError(Exception):
    """The edge did not answer, or answered with an error."""


class EdgeRpc:
    def __init__(self, socket_path: Path, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def call(self, method: str, *params: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(self.call_blocking, method, *params)

    def call_blocking(self, method: str, *params: Any) -> Any:
        request = {"jsonrpc": "2.0", "method": method, "params": list(params)}
        data = json.dumps({**request, "id": next(self._ids)}).encode()
        # Kamailio answers to the sender's address: each exchange binds its own socket.
        with tempfile.TemporaryDirectory(prefix="edge-rpc-") as folder:
            reply_path = os.path.join(folder, "reply.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(reply_path)
                sock.settimeout(self.timeout)
                try:
                    sock.sendto(data, str(self.socket_path))
                    answer = sock.recv(65535)
                except (OSError, TimeoutError) as e:
                    raise EdgeRpcError(f"edge control socket {self.socket_path}: {e}") from None
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(reply_path)
        try:
            reply = json.loads(answer)
        except ValueError:
            raise EdgeRpcError("edge answered something that is not JSON") from None
        if "error" in reply:
            raise EdgeRpcError(f"edge refused the command: {reply['error']}")
        return reply.get("result")
