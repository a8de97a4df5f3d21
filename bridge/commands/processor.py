"""Turns a message into a command run: parse, check permission, run, reply."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable

from ..config import PermissionLevel
from .registry import CommandContext, CommandRegistry

log = logging.getLogger(__name__)

NOT_PERMITTED = "You are not permitted to use this bridge. Ask its administrator for access."


class CommandProcessor:
    def __init__(
        self,
        registry: CommandRegistry,
        prefix: str,
        permission_of: Callable[[str], PermissionLevel],
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.permission_of = permission_of

    def is_command(self, body: str) -> bool:
        first = body.strip().split(maxsplit=1)[0] if body.strip() else ""
        return first.lower() == self.prefix.lower()

    async def run(self, sender: str, room_id: str, event_id: str, body: str) -> str:
        """The reply to send for a command message."""
        level = self.permission_of(sender)
        if level is PermissionLevel.NONE:
            log.info("refused command from %s in %s: no permission", sender, room_id)
            return NOT_PERMITTED
        try:
            words = shlex.split(body.strip())[1:]
        except ValueError as e:
            return f"Could not read that command ({e}). Try `{self.prefix} help`."
        name = words[0].lower() if words else "help"
        command = self.registry.get(name)
        if command is None:
            return f"Unknown command `{name}`. Try `{self.prefix} help`."
        if level.rank < command.level.rank:
            log.info("refused %s from %s: needs %s", name, sender, command.level.value)
            return f"`{self.prefix} {name}` needs {command.level.value} permission."
        context = CommandContext(sender, room_id, event_id, words[1:], level, self.prefix)
        try:
            return await command.handler(context)
        except Exception as e:
            log.exception("command %s from %s failed", name, sender)
            return f"`{self.prefix} {name}` failed: {e.__class__.__name__}: {e}"
