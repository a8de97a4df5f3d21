"""Phone → Matrix: every inbound row of the call mapping, with a real Synapse and SIPp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.matrix.rtc import CALL_MEMBER, CALL_NOTIFY, RTC_MEMBER, RTC_SLOT, SLOT_ID
from tests.conftest import BridgeStack, records
from tests.test_matrix_bot import notice_from
from teststack.bridge_process import BridgeProcess
from teststack.js_sdk import rtc_view
from teststack.matrix_client import Event, MatrixUser
from teststack.rtc_user import decline, is_membership_of, is_ring_from, join_call, leave_call
from teststack.sipp import (
    SippProcess,
    invite_expecting,
    phone_call_answered,
    phone_call_cancelled,
    phone_call_with_info_dtmf,
    responses,
    start_sipp,
)

NUMBER = "+4930123456"
CALLER = "+4940111222"
GHOST = f"@sip_{CALLER}:localhost"


async def linked_room(
    stack: BridgeStack,
    admin: MatrixUser,
    number: str = NUMBER,
    invite: list[str] | None = None,
    legacy: bool = False,
) -> str:
    """A room the admin made with the bot, and linked the number to (for 1:1 calls, if
    `legacy`)."""
    room = await admin.create_room(
        invite=[stack.bot, *(invite or [])],
        # Synapse makes v12 rooms, whose creator is above the power levels and not in them.
        power_level_content_override={"users": {stack.bot: 100}},
    )
    await admin.wait_for_membership(room, stack.bot, "join")
    await admin.send_text(room, f"!sip link {number}" + (" legacy" if legacy else ""))
    await admin.wait_for_event(room, notice_from(stack.bot, "now ring this room"))
    return room


def phone(stack: BridgeStack, tmp_path: Path, scenario: str, number: str = NUMBER) -> SippProcess:
    return start_sipp(tmp_path / "phone", scenario, f"127.0.0.1:{stack.ports.sip}", service=number)


async def ended_record(tmp_path: Path, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = records(tmp_path)
        if rows and rows[-1]["state"] == "ended":
            return rows[-1]
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no ended call record: {records(tmp_path)}")


def notice_text(text: str) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        content = event.get("content", {})
        return bool(content.get("msgtype") == "m.notice" and content.get("body") == text)

    return match


async def test_phone_call_rings_the_room_is_answered_and_the_phone_hangs_up(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    sipp = phone(
        stack,
        tmp_path,
        phone_call_answered(hang_up_after_ms=2000, caller=CALLER, caller_name="Erika Muster"),
    )
    membership = await alice.wait_for_event(room, is_membership_of(GHOST))
    key = membership["state_key"]
    content = membership["content"]
    assert key.startswith(f"_{GHOST}_SIP") and key.endswith("_m.call")
    assert content["application"] == "m.call" and content["call_id"] == ""
    assert content["scope"] == "m.room" and content["m.call.intent"] == "audio"
    assert content["membershipID"] == f"{GHOST}:{content['device_id']}"
    assert content["expires"] == 14_400_000 and isinstance(content["created_ts"], int)
    assert content["focus_active"] == {"type": "livekit", "focus_selection": "oldest_membership"}
    assert content["foci_preferred"] == [
        {
            "type": "livekit",
            "livekit_alias": room,
            "livekit_service_url": stack.auth.url,
        }
    ]
    notification = await alice.wait_for_event(room, is_ring_from(GHOST))
    ring_content = notification["content"]
    assert ring_content["notification_type"] == "ring"
    assert ring_content["m.relates_to"] == {
        "rel_type": "m.reference",
        "event_id": membership["event_id"],
    }
    assert ring_content["m.mentions"] == {"user_ids": ["@alice:localhost"]}
    assert ring_content["lifetime"] == 20_000 and isinstance(ring_content["sender_ts"], int)
    slot = await alice.state(room, RTC_SLOT, SLOT_ID)
    assert slot == {"status": "open", "application": {"type": "m.call"}}
    profile = await alice.request("GET", f"/v3/profile/{GHOST}")
    assert profile["displayname"] == "Erika Muster"
    # What Element Web and Element Call make of it, with matrix-js-sdk's own code.
    view = await asyncio.to_thread(rtc_view, stack.synapse.url, alice.user_id, "pw", room)
    assert view.members() == {GHOST}
    assert view.ring(notification["event_id"]) == {
        "eventId": notification["event_id"],
        "sender": GHOST,
        "valid": True,
        "type": "ring",
    }

    await join_call(alice, room, service=stack.auth.url)
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert responses(result.messages) == [100, 180, 200, 200]
    left = await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    assert left["state_key"] == key
    assert await alice.state(room, CALL_MEMBER, key) == {}
    view = await asyncio.to_thread(rtc_view, stack.synapse.url, alice.user_id, "pw", room)
    assert view.members() == {"@alice:localhost"}
    assert not view.ring(notification["event_id"])["valid"]  # answered: no longer rings
    await alice.wait_for_event(room, notice_text("Call with Erika Muster (+4940111222) — 0:02"))
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed" and record["matrix_user"] == "@alice:localhost"
    assert record["room_id"] is None or record["room_id"] == room
    assert record["answered_at"] is not None and record["trunk"] == "local"


async def test_last_matrix_member_leaving_sends_bye(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, phone_call_answered(hang_up_after_ms=None, caller=CALLER))
    await alice.wait_for_event(room, is_ring_from(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    await asyncio.sleep(1.5)
    await leave_call(alice, room)
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert "BYE sip:" in result.messages
    membership = await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    assert membership["content"] == {}
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed"


async def test_phone_cancel_before_answer_is_a_missed_call(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, phone_call_cancelled(cancel_after_ms=2000, caller=CALLER))
    await alice.wait_for_event(room, is_ring_from(GHOST))
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert responses(result.messages) == [100, 180, 200, 487]
    await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    await alice.wait_for_event(room, notice_text("Missed call from SIPp (+4940111222)"))
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["sip_code"]) == ("cancelled", 487)


async def test_matrix_decline_gives_603(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, invite_expecting(603, caller=CALLER))
    notification = await alice.wait_for_event(room, is_ring_from(GHOST))
    await decline(alice, room, notification["event_id"])
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert responses(result.messages) == [100, 180, 603]
    await alice.wait_for_event(room, is_membership_of(GHOST, joined=False))
    await alice.wait_for_event(room, notice_text("Declined call from SIPp (+4940111222)"))
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["sip_code"]) == ("declined", 603)


async def test_unanswered_ring_gives_480_after_its_lifetime(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge({"SIPBRIDGE_MATRIXRTC__RING_LIFETIME": "5"})
    room = await linked_room(stack, alice)
    started = time.monotonic()
    sipp = phone(stack, tmp_path, invite_expecting(480, caller=CALLER))
    notification = await alice.wait_for_event(room, is_ring_from(GHOST))
    assert notification["content"]["lifetime"] == 5000
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert responses(result.messages) == [100, 180, 480]
    assert 4.5 < time.monotonic() - started < 12
    await alice.wait_for_event(room, notice_text("Missed call from SIPp (+4940111222)"))
    record = await ended_record(tmp_path)
    assert (record["outcome"], record["sip_code"]) == ("no_answer", 480)


async def test_a_call_in_progress_is_joined_and_answered_without_ringing(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    await join_call(alice, room, service=stack.auth.url)
    sipp = phone(stack, tmp_path, phone_call_answered(hang_up_after_ms=1000, caller=CALLER))
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert responses(result.messages) == [100, 200, 200]
    events = await alice.messages(room)
    assert not any(is_ring_from(GHOST)(e) for e in events)
    record = await ended_record(tmp_path)
    assert record["outcome"] == "completed"


async def test_two_members_answering_at_once_the_first_wins_the_second_joins(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice, invite=[bob.user_id])
    await bob.join(room)
    sipp = phone(stack, tmp_path, phone_call_answered(hang_up_after_ms=None, caller=CALLER))
    notification = await alice.wait_for_event(room, is_ring_from(GHOST))
    # Two people in the room: a notification, mentioning both, not a 1:1 ring.
    assert notification["content"]["notification_type"] == "notification"
    assert notification["content"]["m.mentions"]["user_ids"] == sorted(
        ["@alice:localhost", "@bob:localhost"]
    )
    await asyncio.gather(
        join_call(alice, room, service=stack.auth.url), join_call(bob, room, service=stack.auth.url)
    )
    await asyncio.sleep(1.5)
    await leave_call(alice, room)
    await asyncio.sleep(1.0)
    assert sipp.proc.poll() is None  # Bob is still in the call with the phone
    await leave_call(bob, room)
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert responses(result.messages).count(200) == 1  # exactly one answer (then the BYE)
    record = await ended_record(tmp_path)
    assert record["matrix_user"] in ("@alice:localhost", "@bob:localhost")


async def test_strangers_and_unknown_numbers_are_refused(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    tmp_path: Path,
) -> None:
    trunks = '[{name: far, host: 192.0.2.1, allowed_sources: ["192.0.2.0/24"]}]'
    start_bridge({"SIPBRIDGE_SIP__TRUNKS": trunks})
    result = await asyncio.to_thread(
        phone(stack, tmp_path, invite_expecting(403, caller=CALLER)).wait
    )
    assert result.ok, result.output
    assert responses(result.messages) == [100, 403]
    record = await ended_record(tmp_path)
    assert (
        record["reason"]
        == "127.0.0.1:" + record["source"].split(":")[1] + " is not a trunk's address"
    )
    assert record["outcome"] == "rejected"


async def test_newer_clients_answer_with_a_sticky_rtc_member_and_old_ones_get_call_notify(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge({"SIPBRIDGE_MATRIXRTC__SEND_CALL_NOTIFY": "true"})
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, phone_call_answered(hang_up_after_ms=1000, caller=CALLER))
    await alice.wait_for_event(room, is_ring_from(GHOST))
    notify = await alice.wait_for_event(
        room, lambda e: e.get("type") == CALL_NOTIFY and e.get("sender") == GHOST
    )
    assert notify["content"] == {
        "application": "m.call",
        "call_id": "",
        "notify_type": "ring",
        "m.mentions": {"user_ids": ["@alice:localhost"], "room": False},
    }
    await alice.send(
        room,
        RTC_MEMBER,
        {
            "slot_id": SLOT_ID,
            "application": {"type": "m.call"},
            "member": {"user_id": alice.user_id, "device_id": "NEWCLIENT", "id": "m1"},
            "transports": {"published": [{"type": "livekit"}], "can_subscribe": ["livekit"]},
            "versions": [],
            "msc4354_sticky_key": "k1",
        },
    )
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
    assert responses(result.messages) == [100, 180, 200, 200]


async def test_rooms_where_the_bridge_lacks_power_are_reported(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await alice.create_room(invite=[stack.bot])  # the bot gets no power here
    await alice.wait_for_membership(room, stack.bot, "join")
    await alice.send_text(room, f"!sip link {NUMBER}")
    reply = await alice.wait_for_event(room, notice_from(stack.bot, "now ring this room"))
    assert "I may not change power levels here" in reply["content"]["body"]
    assert "current clients will not ring" in reply["content"]["body"]
    await alice.send_text(room, "!sip status")
    status = await alice.wait_for_event(room, notice_from(stack.bot, "Call workers"))
    assert f"Room {room}: no bridge user may send {RTC_SLOT}" in status["content"]["body"]


async def test_link_unlink_and_numbers(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    bob: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice, "030 123 456")  # normalised with the trunk's plan
    await alice.send_text(room, "!sip numbers")
    listing = await alice.wait_for_event(room, notice_from(stack.bot, "Linked numbers:"))
    assert f"+4930123456 → {room}" in listing["content"]["body"]
    # Linking is for admins only.
    dm = await bob.create_room(invite=[stack.bot], is_direct=True)
    await bob.wait_for_membership(dm, stack.bot, "join")
    await bob.send_text(dm, "!sip link +4930111111")
    await bob.wait_for_event(dm, notice_from(stack.bot, "needs admin permission"))
    await alice.send_text(room, "!sip unlink +4930123456")
    await alice.wait_for_event(room, notice_from(stack.bot, "is no longer linked"))
    result = await asyncio.to_thread(phone(stack, tmp_path, invite_expecting(404)).wait)
    assert result.ok, result.output


async def test_sip_info_digits_from_the_phone_are_posted(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    start_bridge()
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, phone_call_with_info_dtmf("90", caller=CALLER))
    await alice.wait_for_event(room, is_ring_from(GHOST))
    await join_call(alice, room, service=stack.auth.url)
    await alice.wait_for_event(room, notice_text("The phone dialled 90"))
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
