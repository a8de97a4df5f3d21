"""Line-framed message channel over a Unix socket pair, shared by both ends."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Generic, TypeVar

from .protocol import Message, ProtocolError, encode

T = TypeVar("T")
MAX_LINE = 1 << 20


class Channel(Generic[T]):
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decode: Callable[[bytes], T],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._decode = decode

    @classmethod
    async def open(cls, sock: socket.socket, decode: Callable[[bytes], T]) -> Channel[T]:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        return cls(reader, writer, decode)

    def send(self, message: Message) -> None:
        """Queue a message; never blocks (the transport buffers)."""
        if not self._writer.is_closing():
            self._writer.write(encode(message))

    async def receive(self) -> T | None:
        """The next message, or None when the other end has gone."""
        try:
            line = await self._reader.readline()
        except ConnectionError:
            return None  # the other end died: reading again would only fail again
        except (asyncio.LimitOverrunError, ValueError) as e:
            raise ProtocolError(f"channel broken: {e}") from e
        if not line:
            return None
        return self._decode(line)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()
