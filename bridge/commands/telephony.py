"""Commands about numbers and calls: link, unlink, numbers, call."""

from __future__ import annotations

import logging
from dataclasses import replace

from mautrix.errors import MatrixError

from ..calls.manager import CallManager, dial_plan
from ..config import Config, PermissionLevel
from ..core.dialplan import NumberError
from ..matrix.rooms import RoomAccess
from ..storage.numbers import NumberStore
from .registry import Command, CommandContext, CommandRegistry

log = logging.getLogger(__name__)


def register_telephony(
    registry: CommandRegistry,
    config: Config,
    numbers: NumberStore,
    rooms: RoomAccess,
    calls: CallManager,
) -> None:
    plan = dial_plan(config.sip.trunks[0] if config.sip.trunks else None)

    def number_arg(ctx: CommandContext, usage: str) -> str:
        if not ctx.args:
            raise NumberError(f"Usage: `{ctx.prefix} {usage}`")
        return plan.normalise("".join(ctx.args))

    async def link(ctx: CommandContext) -> str:
        mode = "rtc"
        if ctx.args and ctx.args[-1].lower() in ("legacy", "rtc"):
            mode = ctx.args[-1].lower()
            ctx = replace(ctx, args=ctx.args[:-1])
        try:
            number = number_arg(ctx, "link +4930123456 [legacy]")
        except NumberError as e:
            return str(e)
        current = await numbers.room_for(number)
        await numbers.link(number, ctx.room_id, ctx.sender, mode)
        log.info("%s linked %s to %s", ctx.sender, number, ctx.room_id)
        moved = f" (it was linked to {current})" if current and current != ctx.room_id else ""
        how = " as 1:1 calls (legacy VoIP)" if mode == "legacy" else ""
        lines = [f"Calls to {number} now ring this room{how}{moved}."]
        try:
            problems = await rooms.allow_calls(ctx.room_id, await rooms.state(ctx.room_id))
        except MatrixError as e:
            problems = [f"I could not check this room's power levels: {e}"]
        lines += [f"Warning: {p}." for p in problems]
        return "\n".join(lines)

    async def unlink(ctx: CommandContext) -> str:
        try:
            number = number_arg(ctx, "unlink +4930123456")
        except NumberError as e:
            return str(e)
        if await numbers.unlink(number):
            return f"{number} is no longer linked; calls to it get 404."
        return f"{number} was not linked."

    async def list_numbers(ctx: CommandContext) -> str:
        links = await numbers.all()
        if not links:
            return f"No numbers are linked. Link one with `{ctx.prefix} link +4930123456`."
        here = [link.number for link in links if link.room_id == ctx.room_id]
        lines = ["Linked numbers:"]
        lines += [f"  {link.number} → {link.room_id}" for link in links]
        if here:
            lines.append(f"This room: {', '.join(here)}")
        return "\n".join(lines)

    async def call(ctx: CommandContext) -> str:
        if not ctx.args:
            return f"Usage: `{ctx.prefix} call +4930123456`"
        dialled = "".join(ctx.args)
        choice = calls.choose_trunk(dialled, ctx.sender)
        if isinstance(choice, str):
            return choice
        _trunk, number = choice
        room_id = await calls.portal_for(ctx.sender, number)
        problem = await calls.dial(ctx.sender, dialled, room_id=room_id)
        if problem is not None:
            return problem
        return (
            f"Calling {number}. Join the call in https://matrix.to/#/{room_id} — "
            "your client will ring when they answer."
        )

    async def dtmf(ctx: CommandContext) -> str:
        digits = "".join(ctx.args)
        if not digits or any(d not in "0123456789*#ABCDabcd" for d in digits):
            return f"Usage: `{ctx.prefix} dtmf 123#` (digits, *, #, A-D)"
        if calls.send_dtmf(ctx.room_id, digits):
            return f"Sent {digits} to the phone."
        return "There is no call in this room."

    registry.add(
        Command(
            "dtmf",
            "send touch tones to the phone in this room's call",
            "dtmf 123#",
            PermissionLevel.USER,
            dtmf,
        )
    )
    registry.add(
        Command(
            "link",
            "ring this room for calls to a number",
            "link +4930123456 [legacy]",
            PermissionLevel.ADMIN,
            link,
        )
    )
    registry.add(
        Command(
            "unlink",
            "stop ringing a room for a number",
            "unlink +4930123456",
            PermissionLevel.ADMIN,
            unlink,
        )
    )
    registry.add(
        Command("numbers", "list linked numbers", "numbers", PermissionLevel.ADMIN, list_numbers)
    )
    registry.add(
        Command("call", "call a phone number", "call +4930123456", PermissionLevel.USER, call)
    )
