"""What `!sip status` and /health report, gathered from each part of the bridge."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mautrix.errors import MatrixError

from .calls.records import RecordKeeper
from .config import Config
from .matrix.appservice import BridgeAppService
from .matrix.rooms import RoomAccess
from .storage.database import Database, StorageError
from .storage.inbox import InboxStore
from .storage.trunks import TrunkStateStore
from .workers.pool import WorkerPool


@dataclass(frozen=True)
class WorkerLine:
    id: int
    state: str
    pid: int | None
    sip_port: int
    capacity: int
    active_calls: int
    restarts: int
    frames_underrun: int = 0
    frames_overrun: int = 0


@dataclass(frozen=True)
class TrunkLine:
    name: str
    registration: str
    detail: str


@dataclass(frozen=True)
class BridgeStatus:
    homeserver_ok: bool
    homeserver: str
    database_ok: bool
    database: str
    workers: list[WorkerLine]
    trunks: list[TrunkLine]
    inbox: dict[str, int] = field(default_factory=dict)
    rooms_lacking_power: dict[str, str] = field(default_factory=dict)
    unsaved_records: int = 0

    @property
    def healthy(self) -> bool:
        return self.database_ok and any(w.state in ("ready", "draining") for w in self.workers)


class StatusCollector:
    def __init__(
        self,
        config: Config,
        az: BridgeAppService,
        db: Database,
        pool: WorkerPool,
        trunks: TrunkStateStore,
        inbox: InboxStore,
        rooms: RoomAccess,
        records: RecordKeeper,
    ) -> None:
        self.config = config
        self.az = az
        self.db = db
        self.pool = pool
        self.trunks = trunks
        self.inbox = inbox
        self.rooms = rooms
        self.records = records

    async def homeserver(self) -> tuple[bool, str]:
        started = time.monotonic()
        try:
            await self.az.intent.whoami()
        except (MatrixError, OSError) as e:
            return False, f"unreachable from the bridge ({e.__class__.__name__}: {e})"
        took = (time.monotonic() - started) * 1000
        try:
            ping_ms = await self.az.ping_self()
        except (MatrixError, OSError) as e:
            return False, f"reachable ({took:.0f} ms), but it cannot reach the bridge: {e}"
        return True, f"reachable both ways ({took:.0f} ms; its ping to the bridge {ping_ms} ms)"

    async def collect(self, check_homeserver: bool = True) -> BridgeStatus:
        hs_ok, hs_text = await self.homeserver() if check_homeserver else (True, "not checked")
        try:
            await self.db.ping()
            trunk_rows = {t.name: t for t in await self.trunks.all()}
            inbox = await self.inbox.count_by_status()
            db_ok, db_text = True, "reachable"
        except StorageError as e:
            trunk_rows, inbox = {}, {}
            db_ok, db_text = False, str(e)
        trunks = []
        for trunk in self.config.sip.trunks:
            row = trunk_rows.get(trunk.name)
            if not trunk.send_register:
                trunks.append(
                    TrunkLine(trunk.name, "not registering", f"{trunk.host}:{trunk.port}")
                )
            elif row is None:
                trunks.append(TrunkLine(trunk.name, "unknown", "no report from a worker yet"))
            else:
                detail = f"{row.status_code or ''} {row.reason or ''}".strip()
                trunks.append(TrunkLine(trunk.name, row.registration, detail))
        workers = [
            WorkerLine(
                w.id,
                w.state,
                w.pid,
                w.sip_port,
                w.capacity,
                w.active_calls,
                w.restarts,
                w.frames_underrun,
                w.frames_overrun,
            )
            for w in self.pool.workers.values()
        ]
        return BridgeStatus(
            hs_ok,
            hs_text,
            db_ok,
            db_text,
            workers,
            trunks,
            inbox,
            dict(self.rooms.lacking_power),
            self.records.pending,
        )
