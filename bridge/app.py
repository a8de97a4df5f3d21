"""Builds the bridge from its config and runs it: the one place that wires the parts."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import timedelta
from typing import Any

from mautrix.errors import MatrixConnectionError, MatrixError, MatrixRequestError, MUnknownToken

from .calls.effects import CallServices, SipSender
from .calls.manager import CallManager
from .calls.records import RecordKeeper
from .commands.builtin import register_builtin
from .commands.processor import CommandProcessor
from .commands.registry import CommandRegistry
from .commands.telephony import register_telephony
from .config import Config
from .crypto.devices import Devices
from .crypto.keys import Device
from .crypto.olm_machine import ToDevice
from .edge.sync import EdgeSync
from .matrix.appservice import BridgeAppService
from .matrix.events import MatrixEventRouter
from .matrix.ghosts import GhostDirectory
from .matrix.inbox import InboxProcessor
from .matrix.livekit_auth import LiveKitTokens
from .matrix.rooms import RoomAccess
from .metrics import Metrics, MetricsServer
from .status import BridgeStatus, StatusCollector
from .storage.calls import CallStore
from .storage.crypto import CryptoStore
from .storage.database import Database, StorageError
from .storage.ghosts import GhostStore
from .storage.inbox import InboxStore
from .storage.numbers import NumberStore
from .storage.portals import PortalStore
from .storage.trunks import TrunkStateStore
from .workers.pool import WorkerPool, WorkerPoolError

log = logging.getLogger(__name__)

HOMESERVER_ATTEMPTS = 20
HOMESERVER_RETRY_SECONDS = 3.0
INBOX_RETENTION = timedelta(days=7)


class StartupError(Exception):
    """The bridge cannot start; `exit_code` tells scripts which part failed."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_DATABASE = 11
EXIT_HOMESERVER = 12
EXIT_WORKERS = 13
EXIT_LISTEN = 14


class Bridge:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.db = Database(config.database.url, config.database.pool_size)
        self.call_store = CallStore(self.db)
        self.inbox_store = InboxStore(self.db)
        self.numbers = NumberStore(self.db)
        self.trunk_states = TrunkStateStore(self.db)
        self.portals = PortalStore(self.db)
        self.inbox: InboxProcessor | None = None
        self.devices: Devices | None = None
        self.az = BridgeAppService(
            inbox=self.inbox_store,
            on_stored=self._wake_inbox,
            on_device_messages=self._device_messages if config.bridge.encryption != "off" else None,
            hs_token=config.appservice.hs_token,
            server=config.homeserver.address,
            domain=config.homeserver.domain,
            as_token=config.appservice.as_token,
            bot_localpart=config.bridge.bot.username,
            id=config.appservice.id,
            verify_ssl=config.homeserver.verify_tls,
            bridge_name="sip",
        )
        if config.bridge.encryption != "off":
            self.devices = Devices(
                self.az,
                CryptoStore(self.db),
                config.appservice.as_token,
                self._room_key,
                self._device_message,
            )
        self.rooms = RoomAccess(self.az, self.devices)
        self.ghosts = GhostDirectory(config, self.az, GhostStore(self.db), self.devices)
        self.records = RecordKeeper(self.call_store)
        self.sip = SipSender()
        services = CallServices(
            config,
            self.sip,
            self.ghosts,
            self.rooms,
            self.records,
            self.metrics,
            LiveKitTokens(config.livekit),
        )
        self.calls = CallManager(
            config, services, self.call_store, self.numbers, self.portals, self.trunk_states
        )
        self.pool = WorkerPool(config, self.calls.on_worker_event, self.calls.on_worker_lost)
        self.sip.pool = self.pool
        self.edge_sync = EdgeSync(config, self.pool) if config.edge.enabled else None
        self.status = StatusCollector(
            config,
            self.az,
            self.db,
            self.pool,
            self.trunk_states,
            self.inbox_store,
            self.rooms,
            self.records,
        )
        self.metrics_server = MetricsServer(
            self.metrics,
            self._local_status,
            config.metrics.hostname,
            config.metrics.port,
        )
        self.commands = CommandRegistry()
        register_builtin(self.commands, self.status.collect)
        register_telephony(self.commands, config, self.numbers, self.rooms, self.calls)
        self._stopping = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None

    async def _device_messages(self, body: dict[str, Any]) -> None:
        if self.devices is not None:
            await self.devices.on_transaction(body)

    async def _room_key(self, session_id: str) -> None:
        if await self.inbox_store.key_arrived(session_id):
            self._wake_inbox()

    async def _device_message(
        self, recipient: str, message: ToDevice, sender: Device | None
    ) -> None:
        await self.calls.on_device_message(recipient, message, sender)

    def _wake_inbox(self) -> None:
        if self.inbox is not None:
            self.inbox.wake()

    async def _local_status(self) -> BridgeStatus:
        return await self.status.collect(check_homeserver=False)

    async def start(self) -> None:
        started = time.monotonic()
        try:
            await self.db.upgrade()
        except StorageError as e:
            raise StartupError(
                f"{e} (is database.url right and the server running?)", EXIT_DATABASE
            ) from e
        try:
            await self.az.start(self.config.appservice.hostname, self.config.appservice.port)
        except OSError as e:
            raise StartupError(
                f"cannot listen on {self.config.appservice.hostname}:"
                f"{self.config.appservice.port} for the homeserver: {e.strerror}",
                EXIT_LISTEN,
            ) from e
        await self._check_homeserver()
        # From now on ride out homeserver outages (start-up itself fails fast). Ghosts'
        # APIs, all made after this, copy the count from the bot's.
        self.az.intent.api.default_retry_count = self.config.homeserver.retries
        if self.devices is not None:
            await self._start_bot_device(self.devices)
        closed = await self.calls.reconcile_after_restart()
        if closed:
            log.warning("closed %d calls left open by the previous run", closed)
        router = MatrixEventRouter(
            self.config,
            self.az.intent,
            CommandProcessor(
                self.commands, self.config.bridge.command_prefix, self.config.permission_of
            ),
            self.calls,
            self.ghosts,
            self.portals,
            self.rooms,
        )
        self.inbox = InboxProcessor(self.inbox_store, router.handle)
        try:
            await self.pool.start()
        except WorkerPoolError as e:
            raise StartupError(str(e), EXIT_WORKERS) from e
        if self.edge_sync is not None:
            self.edge_sync.start()
        await self.inbox.start()
        if self.config.metrics.enabled:
            try:
                await self.metrics_server.start()
            except OSError as e:
                raise StartupError(
                    f"cannot listen on {self.config.metrics.hostname}:{self.config.metrics.port}"
                    f" for metrics: {e.strerror}",
                    EXIT_LISTEN,
                ) from e
        self._housekeeping = asyncio.create_task(self._prune_periodically())
        self.az.ready = True
        log.info(
            "bridge ready in %.1f s: %d call workers, %d call slots",
            time.monotonic() - started,
            len(self.pool.workers),
            self.pool.capacity,
        )

    async def _start_bot_device(self, devices: Devices) -> None:
        try:
            device = await devices.of(self.az.intent)
        except MatrixError as e:
            raise StartupError(
                f"bridge.encryption is on but the homeserver refused the bot's encryption "
                f"device ({e}); see docs/encryption.md for what Synapse needs",
                EXIT_HOMESERVER,
            ) from e
        log.info("encryption on: the bot's device is %s", device.ready.device_id)

    async def _check_homeserver(self) -> None:
        intent = self.az.intent
        for attempt in range(1, HOMESERVER_ATTEMPTS + 1):
            try:
                await intent.whoami()
                break
            except MUnknownToken as e:
                raise StartupError(
                    "the homeserver did not accept the as_token: is the registration file "
                    "installed on the homeserver (app_service_config_files) and was it "
                    "restarted after the last `-g`?",
                    EXIT_HOMESERVER,
                ) from e
            except (MatrixConnectionError, OSError, MatrixRequestError) as e:
                if attempt == HOMESERVER_ATTEMPTS:
                    raise StartupError(
                        f"cannot reach the homeserver at {self.config.homeserver.address}: {e}",
                        EXIT_HOMESERVER,
                    ) from e
                log.warning(
                    "homeserver not reachable yet (%s); retrying in %.0f s",
                    e,
                    HOMESERVER_RETRY_SECONDS,
                )
                await asyncio.sleep(HOMESERVER_RETRY_SECONDS)
        await intent.ensure_registered()
        try:
            await intent.set_displayname(self.config.bridge.bot.displayname)
        except MatrixRequestError as e:
            log.warning("could not set the bot's display name: %s", e)
        try:
            await self.az.ping_self()
        except (MatrixRequestError, MatrixConnectionError) as e:
            log.warning(
                "the homeserver cannot reach the bridge at %s (%s): is appservice.address "
                "right in the registration?",
                self.config.appservice.address,
                e,
            )

    async def _prune_periodically(self) -> None:
        while True:
            try:
                await self.inbox_store.prune(INBOX_RETENTION)
            except StorageError as e:
                log.warning("pruning the inbox failed: %s", e)
            await asyncio.sleep(3600)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self._stopping.wait()
        log.info("stopping: draining calls")
        await self.drain()

    async def drain(self) -> None:
        """New INVITEs get 503 + Retry-After; live calls get drain_timeout to end."""
        await self.pool.drain(self.config.workers.drain_retry_after)
        deadline = time.monotonic() + self.config.workers.drain_timeout
        while time.monotonic() < deadline:
            active = sum(w.active_calls for w in self.pool.workers.values())
            if active == 0 and self.calls.live_calls == 0:
                break
            await asyncio.sleep(0.5)
        else:
            log.warning("drain timeout passed; hanging up the remaining calls")

    async def stop(self) -> None:
        await self.calls.hang_up_all("the bridge is shutting down")
        if self.edge_sync is not None:
            await self.edge_sync.stop()
        await self.pool.stop()
        if self.edge_sync is not None:
            await self.edge_sync.sync_once()  # every worker is stopped: the edge says 503
        await self.records.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self.inbox is not None:
            await self.inbox.stop()
        await self.metrics_server.stop()
        await self.az.stop()
        await self.db.close()
        log.info("stopped")
