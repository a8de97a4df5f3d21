"""Commands are registered explicitly by whoever builds the bridge, never by import."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config import PermissionLevel


@dataclass(frozen=True)
class CommandContext:
    sender: str
    room_id: str
    event_id: str
    args: list[str]
    level: PermissionLevel
    prefix: str


Reply = str
CommandHandler = Callable[[CommandContext], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    usage: str
    level: PermissionLevel
    handler: CommandHandler


class CommandRegistry:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, command: Command) -> None:
        if command.name in self._commands:
            raise ValueError(f"command {command.name!r} is registered twice")
        self._commands[command.name] = command

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def available_to(self, level: PermissionLevel) -> list[Command]:
        return [c for c in self._commands.values() if level.rank >= c.level.rank]
