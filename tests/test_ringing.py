"""What makes a phone's call ring a Matrix user's phone: Synapse's MSC4075 push rules
applied to the ghost's ring (the push a locked Element X would get), checked in Synapse."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.matrix.rtc import RTC_NOTIFICATION
from tests.conftest import BridgeStack
from tests.test_inbound_calls import CALLER, GHOST, NUMBER, linked_room, phone
from teststack.bridge_process import BridgeProcess
from teststack.matrix_client import MatrixUser
from teststack.rtc_user import is_ring_from
from teststack.sipp import phone_call_cancelled

RING_RULE = ".org.matrix.msc4075.rule.rtc.invite_for_me"


async def notifications(user: MatrixUser) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await user.request("GET", "/v3/notifications"))["notifications"]
    return found


async def test_the_ghosts_ring_is_pushed_to_the_user_as_a_ringing_call(
    stack: BridgeStack,
    start_bridge: Callable[..., BridgeProcess],
    alice: MatrixUser,
    tmp_path: Path,
) -> None:
    # Synapse has the rule only with `experimental_features: {msc4075_enabled: true}`.
    rule = await alice.request("GET", f"/v3/pushrules/global/override/{RING_RULE}")
    assert rule["enabled"] is True
    assert {"kind": "event_match", "key": "type", "pattern": RTC_NOTIFICATION} in rule["conditions"]
    start_bridge()
    room = await linked_room(stack, alice)
    sipp = phone(stack, tmp_path, phone_call_cancelled(6000, caller=CALLER), NUMBER)
    ring = await alice.wait_for_event(room, is_ring_from(GHOST))
    for _ in range(20):
        pushed = [
            n for n in await notifications(alice) if n["event"]["event_id"] == ring["event_id"]
        ]
        if pushed:
            break
        await asyncio.sleep(0.25)
    assert pushed, "Synapse pushed no notification for the ring"
    actions = pushed[0]["actions"]
    assert "notify" in actions
    assert {"set_tweak": "sound", "value": "ring"} in actions, actions
    result = await asyncio.to_thread(sipp.wait)
    assert result.ok, result.output
