"""A real Matrix user talks to the bridge bot through a real Synapse."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import BridgeStack
from teststack.bridge_process import BridgeProcess
from teststack.matrix_client import Event, MatrixUser


def notice_from(bot: str, containing: str) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        content = event.get("content", {})
        return (
            event.get("sender") == bot
            and content.get("msgtype") == "m.notice"
            and containing in content.get("body", "")
        )

    return match


async def test_bridge_registers_and_answers_help_in_a_dm(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], alice: MatrixUser
) -> None:
    bridge = start_bridge()
    room = await alice.create_room(invite=[stack.bot], is_direct=True)
    await alice.wait_for_membership(room, stack.bot, "join")
    await alice.send_text(room, "!sip help")
    reply = await alice.wait_for_event(room, notice_from(stack.bot, "Commands (admin"))
    assert "!sip status" in reply["content"]["body"]
    assert "!sip help" in reply["content"]["body"]
    assert bridge.process.running()


async def test_status_reports_homeserver_workers_and_capacity(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], bob: MatrixUser
) -> None:
    start_bridge()
    room = await bob.create_room(invite=[stack.bot], is_direct=True)
    await bob.wait_for_membership(room, stack.bot, "join")
    await bob.send_text(room, "!sip status")
    reply = await bob.wait_for_event(room, notice_from(stack.bot, "Call workers"))
    body = reply["content"]["body"]
    assert "Homeserver: reachable both ways" in body
    assert "Database: reachable" in body
    assert "Call workers: 1 of 1 ready, 0 of 4 call slots in use" in body


async def test_user_without_permission_is_refused(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    mallory: MatrixUser,
) -> None:
    start_bridge()
    # Mallory's own invite is declined.
    dm = await mallory.create_room(invite=[stack.bot], is_direct=True)
    await mallory.wait_for_membership(dm, stack.bot, "leave")
    # In a room Alice set up, Mallory's commands get a refusal and no help.
    room = await alice.create_room(invite=[stack.bot, mallory.user_id])
    await alice.wait_for_membership(room, stack.bot, "join")
    await mallory.join(room)
    await mallory.send_text(room, "!sip status")
    await alice.wait_for_event(room, notice_from(stack.bot, "not permitted"))
    events = await alice.messages(room)
    assert not any("Call workers" in e.get("content", {}).get("body", "") for e in events)


async def test_user_level_cannot_run_admin_commands_or_unknown_ones(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], bob: MatrixUser
) -> None:
    start_bridge()
    room = await bob.create_room(invite=[stack.bot], is_direct=True)
    await bob.wait_for_membership(room, stack.bot, "join")
    await bob.send_text(room, "!sip frobnicate")
    await bob.wait_for_event(room, notice_from(stack.bot, "Unknown command `frobnicate`"))
