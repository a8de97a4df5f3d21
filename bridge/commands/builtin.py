"""The commands every bridge has: help and status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..config import PermissionLevel
from ..status import BridgeStatus
from .registry import Command, CommandContext, CommandRegistry


def format_status(status: BridgeStatus) -> str:
    lines = [
        f"Homeserver: {status.homeserver}",
        f"Database: {status.database}",
    ]
    ready = [w for w in status.workers if w.state == "ready"]
    total = sum(w.capacity for w in ready)
    busy = sum(w.active_calls for w in ready)
    lines.append(
        f"Call workers: {len(ready)} of {len(status.workers)} ready, "
        f"{busy} of {total} call slots in use"
    )
    for w in status.workers:
        lines.append(
            f"  worker {w.id}: {w.state}, pid {w.pid}, SIP port {w.sip_port}, "
            f"{w.active_calls}/{w.capacity} calls, restarts: {w.restarts}"
        )
    if status.trunks:
        lines.append("Trunks:")
        lines += [f"  {t.name}: {t.registration} {t.detail}".rstrip() for t in status.trunks]
    else:
        lines.append("Trunks: none configured")
    for room_id, reason in sorted(status.rooms_lacking_power.items()):
        lines.append(f"Room {room_id}: {reason}")
    if status.unsaved_records:
        lines.append(f"Call records waiting for the database: {status.unsaved_records}")
    if status.inbox.get("parked"):
        lines.append(f"Matrix events parked after failing: {status.inbox['parked']}")
    return "\n".join(lines)


def register_builtin(
    registry: CommandRegistry, status: Callable[[], Awaitable[BridgeStatus]]
) -> None:
    async def help_command(ctx: CommandContext) -> str:
        lines = [f"Commands ({ctx.level.value} permission):"]
        for command in registry.available_to(ctx.level):
            lines.append(f"  {ctx.prefix} {command.usage} — {command.summary}")
        return "\n".join(lines)

    async def status_command(_ctx: CommandContext) -> str:
        return format_status(await status())

    registry.add(
        Command("help", "list the commands you may use", "help", PermissionLevel.USER, help_command)
    )
    registry.add(
        Command(
            "status",
            "homeserver, database, call workers and trunks",
            "status",
            PermissionLevel.USER,
            status_command,
        )
    )
