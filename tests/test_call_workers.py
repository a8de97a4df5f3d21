"""Call workers as a SIP peer sees them, and as the controller supervises them."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import BridgeStack
from teststack.bridge_process import BridgeProcess
from teststack.procs import pid_alive
from teststack.sipp import invite_expecting, options_scenario, responses, run_sipp


def call_records(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM calls ORDER BY started_at")]


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")


def test_sip_options_reaches_the_controller(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], tmp_path: Path
) -> None:
    bridge = start_bridge()
    target = f"127.0.0.1:{stack.ports.sip}"
    before = bridge.metric("bridge_sip_requests_total", method="OPTIONS")
    result = run_sipp(tmp_path / "sipp", target, options_scenario(), calls=3)
    assert result.ok, result.output
    assert responses(result.messages) == [200, 200, 200]
    wait_until(lambda: bridge.metric("bridge_sip_requests_total", method="OPTIONS") == before + 3)


def test_invite_to_an_unlinked_number_reaches_the_controller_and_gets_404(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], tmp_path: Path
) -> None:
    bridge = start_bridge()
    result = run_sipp(
        tmp_path / "sipp",
        f"127.0.0.1:{stack.ports.sip}",
        invite_expecting(404, caller="+4940111222", caller_name="Erika Muster"),
        service="+4930999888",
    )
    assert result.ok, result.output
    assert responses(result.messages) == [100, 404]
    assert bridge.metric("bridge_sip_requests_total", method="INVITE") >= 1
    wait_until(lambda: bool(call_records(tmp_path / "bridge.db")))
    wait_until(lambda: call_records(tmp_path / "bridge.db")[0]["state"] == "ended")
    record = call_records(tmp_path / "bridge.db")[0]
    assert record["direction"] == "inbound"
    assert record["caller"] == "+4940111222"
    assert record["caller_name"] == "Erika Muster"
    assert record["callee"] == "+4930999888"
    assert record["outcome"] == "rejected"
    assert record["sip_code"] == 404
    assert record["worker_id"] == 1
    assert record["reason"] == "+4930999888 is not linked to a room"


def test_a_killed_worker_is_restarted_and_takes_calls_again(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess], tmp_path: Path
) -> None:
    bridge = start_bridge({"SIPBRIDGE_WORKERS__COUNT": "2"})
    first = {w["id"]: w["pid"] for w in bridge.health()["workers"]}
    assert set(first) == {1, 2}
    os.kill(first[1], signal.SIGKILL)

    def restarted() -> bool:
        workers = {w["id"]: w for w in bridge.health()["workers"]}
        w1 = workers[1]
        return bool(w1["state"] == "ready" and w1["pid"] != first[1] and w1["restarts"] == 1)

    wait_until(restarted, timeout=20)
    bridge.worker_pids()
    assert not pid_alive(first[1])
    workers = {w["id"]: w for w in bridge.health()["workers"]}
    assert workers[2]["pid"] == first[2] and workers[2]["restarts"] == 0
    assert bridge.metric("bridge_worker_restarts_total") == 1
    # The new worker process answers on the same SIP port.
    result = run_sipp(tmp_path / "sipp", f"127.0.0.1:{stack.ports.sip}", invite_expecting(404))
    assert result.ok, result.output
    assert "call worker 1 stopped (killed by signal 9); restarting" in bridge.log()


def test_workers_exit_when_the_controller_is_killed(
    stack: BridgeStack, start_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = start_bridge()
    workers = bridge.worker_pids()
    bridge.process.kill()
    wait_until(lambda: not any(pid_alive(p) for p in workers), timeout=10)
