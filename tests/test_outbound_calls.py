"""Matrix → phone: `!sip call`, rings in portal rooms, and every outbound SIP outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

from bridge.matrix.rtc import CALL_MEMBER, RTC_DECLINE, RTC_SLOT
from bridge.sip.message import headers, parse_name_addr
from tests.conftest import BridgeStack
from tests.test_inbound_calls import ended_record, notice_text
from tests.test_matrix_bot import notice_from
from teststack.bridge_process import BridgeProcess
from teststack.js_sdk import rtc_view
from teststack.matrix_client import Event, MatrixUser
from teststack.rtc_user import is_membership_of, is_ring_from, join_call, leave_call, ring
from teststack.sipp import (
    SippProcess,
    requests,
    start_sipp,
    trunk_answers,
    trunk_refuses,
    trunk_rings_until_cancelled,
)

NUMBER = "+4930777888"
GHOST = f"@sip_{NUMBER}:localhost"


def far_end(stack: BridgeStack, tmp_path: Path, scenario: str) -> SippProcess:
    """SIPp as the trunk the bridge dials out to."""
    return start_sipp(tmp_path / "trunk", scenario, local_port=stack.ports.trunk, timeout=60)


async def bot_dm(stack: BridgeStack, user: MatrixUser) -> str:
    room = await user.create_room(invite=[stack.bot], is_direct=True)
    await user.wait_for_membership(room, stack.bot, "join")
    return room


async def portal_by_invite(user: MatrixUser, number: str = NUMBER, encrypted: bool = False) -> str:
    """A user opens a DM with the number's ghost, as a client's 'start chat' does (encrypted,
    as Element makes DMs, if `encrypted`)."""
    ghost = f"@sip_{number}:localhost"
    encryption = {
        "type": "m.room.encryption",
        "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }
    room = await user.create_room(
        invite=[ghost],
        is_direct=True,
        power_level_content_override={"events": {CALL_MEMBER: 0, RTC_SLOT: 0}},
        initial_state=[encryption] if encrypted else [],
    )
    await user.wait_for_membership(room, ghost, "join")
    await user.send_state(
        room, RTC_SLOT, "m.call#ROOM", {"status": "open", "application": {"type": "m.call"}}
    )
    return room


async def wait_for_invite(
    user: MatrixUser, inviter: str, room_id: str, timeout: float = 20
) -> None:
    """Until `inviter` has invited `user` to `room_id` (earlier tests may have left other
    invites from the same ghost)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sync = await user.request("GET", "/v3/sync", params={"timeout": "0"})
        room = sync.get("rooms", {}).get("invite", {}).get(room_id, {})
        if any(e.get("sender") == inviter for e in room.get("invite_state", {}).get("events", [])):
            return
        await asyncio.sleep(0.3)
    raise TimeoutError(f"no invite from {inviter} to {room_id}")


def invite_of(result_messages: str) -> str:
    invites = [m for m in requests(result_messages) if m.startswith("INVITE ")]
    assert invites, result_messages[-2000:]
    return invites[0]


async def test_sip_call_command_dials_rings_the_user_and_matrix_hangs_up(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    trunk = far_end(stack, tmp_path, trunk_answers(ring_ms=500))
    dm = await bot_dm(stack, bob)
    await bob.send_text(dm, "!sip call 030 777 888")
    reply = await bob.wait_for_event(dm, notice_from(stack.bot, "Calling +4930777888"))
    # The reply names the portal, and the number's ghost has invited the caller there.
    named = re.search(r"matrix\.to/#/(!\S+)", reply["content"]["body"])
    assert named is not None, reply["content"]["body"]
    portal = named.group(1)
    await wait_for_invite(bob, GHOST, portal)
    await bob.join(portal)
    members = await bob.request("GET", f"/v3/rooms/{portal}/joined_members")
    assert set(members["joined"]) == {GHOST, "@bob:localhost"}  # a real DM: no bot
    membership = await bob.wait_for_event(portal, is_membership_of(GHOST))
    notification = await bob.wait_for_event(portal, is_ring_from(GHOST))
    assert notification["content"]["notification_type"] == "ring"
    assert notification["content"]["m.mentions"] == {"user_ids": ["@bob:localhost"]}
    assert notification["content"]["m.relates_to"]["event_id"] == membership["event_id"]
    view = await asyncio.to_thread(rtc_view, stack.synapse.url, bob.user_id, "pw", portal)
    assert view.members() == {GHOST}
    assert view.ring(notification["event_id"])["valid"] is True
    await join_call(bob, portal, service=stack.auth.url)
    await asyncio.sleep(1.0)
    await leave_call(bob, portal)
    result = await asyncio.to_thread(trunk.wait)
    assert result.ok, result.output
    invite = invite_of(result.messages)
    assert invite.startswith(f"INVITE sip:{NUMBER}@127.0.0.1:{stack.ports.trunk} SIP/2.0")
    caller = parse_name_addr(headers(invite)["from"])
    assert caller.uri == "sip:+4930555000@127.0.0.1"  # the trunk's caller id
    assert any(m.startswith("BYE ") for m in requests(result.messages))
    await bob.wait_for_event(portal, is_membership_of(GHOST, joined=False))
    record = await ended_record(tmp_path)
    assert (record["direction"], record["outcome"], record["callee"]) == (
        "outbound",
        "completed",
        NUMBER,
    )
    assert record["matrix_user"] == "@bob:localhost" and record["trunk"] == "local"


async def test_ringing_a_portal_dials_and_busy_declines_the_ring(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    portal = await portal_by_invite(bob)
    trunk = far_end(stack, tmp_path, trunk_refuses(486, "Busy Here"))
    membership = await join_call(bob, portal, service=stack.auth.url)
    bob_ring = await ring(bob, portal, membership, GHOST)
    result = await asyncio.to_thread(trunk.wait)
    assert result.ok, result.output

    def decline_of_bobs_ring(event: Event) -> bool:
        return (
            event.get("type") == RTC_DECLINE
            and event.get("sender") == GHOST
            and event["content"].get("m.relates_to")
            == {"rel_type": "m.reference", "event_id": bob_ring}
        )

    await bob.wait_for_event(portal, decline_of_bobs_ring)
    await bob.wait_for_event(portal, notice_text(f"{NUMBER} is busy (486 Busy Here)"))
    events = await bob.messages(portal)
    assert not any(is_membership_of(GHOST)(e) for e in events)
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["sip_code"]) == ("busy", 486)


async def test_failed_outbound_call_says_why_and_the_ghost_never_joins(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    portal = await portal_by_invite(bob)
    trunk = far_end(stack, tmp_path, trunk_refuses(404, "Not Found", provisional=183))
    membership = await join_call(bob, portal, service=stack.auth.url)
    await ring(bob, portal, membership, GHOST)
    result = await asyncio.to_thread(trunk.wait)
    assert result.ok, result.output
    await bob.wait_for_event(portal, notice_text(f"Call to {NUMBER} failed: 404 Not Found"))
    events = await bob.messages(portal)
    assert not any(is_membership_of(GHOST)(e) for e in events)
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["sip_code"]) == ("rejected", 404)


async def test_caller_leaving_before_the_answer_cancels(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    portal = await portal_by_invite(bob)
    trunk = far_end(stack, tmp_path, trunk_rings_until_cancelled())
    membership = await join_call(bob, portal, service=stack.auth.url)
    await ring(bob, portal, membership, GHOST)
    await asyncio.sleep(2.0)
    await leave_call(bob, portal)
    result = await asyncio.to_thread(trunk.wait)
    assert result.ok, result.output
    assert [m.split(" ", 1)[0] for m in requests(result.messages)] == ["INVITE", "CANCEL", "ACK"]
    await bob.wait_for_event(portal, notice_text(f"Cancelled call to {NUMBER}"))
    record = await ended_record(tmp_path)
    assert record["outcome"] == "cancelled"


async def test_early_media_answer_and_the_phone_hangs_up(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    portal = await portal_by_invite(bob)
    trunk = far_end(
        stack, tmp_path, trunk_answers(ring_ms=300, hang_up_after_ms=1500, early_media=True)
    )
    membership = await join_call(bob, portal, service=stack.auth.url)
    await ring(bob, portal, membership, GHOST)
    joined = await bob.wait_for_event(portal, is_membership_of(GHOST))
    # The ghost joins the caller's session on the caller's own focus (oldest membership).
    assert joined["content"]["foci_preferred"] == [
        {
            "type": "livekit",
            "livekit_service_url": stack.auth.url,
            "livekit_alias": portal,
        }
    ]
    result = await asyncio.to_thread(trunk.wait)
    assert result.ok, result.output
    await bob.wait_for_event(portal, is_membership_of(GHOST, joined=False))
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed"
    assert record["answered_at"] is not None


async def test_refused_destinations_and_users_send_no_invite(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    mallory: MatrixUser,
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", stack.ports.trunk))
    listener.settimeout(0.5)
    try:
        dm = await bot_dm(stack, bob)
        for dialled, answer in [
            ("+49900123456", "matches the blocked pattern"),
            ("+881234567", "matches the blocked pattern"),
            ("12345", "not an international number"),
            ("+49 30 abc", "characters other than digits"),
        ]:
            await bob.send_text(dm, f"!sip call {dialled}")
            await bob.wait_for_event(dm, notice_from(stack.bot, answer))
        # Mallory has no permission: her commands are refused, her portal invites declined.
        room = await alice.create_room(invite=[stack.bot, mallory.user_id])
        await alice.wait_for_membership(room, stack.bot, "join")
        await mallory.join(room)
        await mallory.send_text(room, "!sip call +4930777888")
        await alice.wait_for_event(room, notice_from(stack.bot, "not permitted"))
        ghost_dm = await mallory.create_room(invite=[GHOST], is_direct=True)
        await mallory.wait_for_membership(ghost_dm, GHOST, "leave")
        got = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                got.append(listener.recv(4096))
        assert got == []
    finally:
        listener.close()


async def test_users_own_caller_id_goes_in_p_asserted_identity(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    trunk_config = dict(stack.config["sip"]["trunks"][0])
    trunk_config["caller_id_by_user"] = {"@bob:localhost": "+4930555111"}
    start_bridge({"SIPBRIDGE_SIP__TRUNKS": json.dumps([trunk_config])})
    trunk = far_end(stack, tmp_path, trunk_refuses(486, "Busy Here"))
    dm = await bot_dm(stack, bob)
    await bob.send_text(dm, f"!sip call {NUMBER}")
    result = await asyncio.to_thread(trunk.wait)
    assert result.ok, result.output
    invite = headers(invite_of(result.messages).replace("\n", "\r\n"))
    assert parse_name_addr(invite["from"]).uri == "sip:+4930555000@127.0.0.1"
    assert parse_name_addr(invite["p-asserted-identity"]).uri == "sip:+4930555111@127.0.0.1"
