"""The call-worker process: a pjsua2 engine driven by the controller over a socket pair."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time

from ..log import setup_logging
from ..media.pumps import PumpRegistry
from ..sip.engine import SipEngine, SipError
from .channel import Channel
from .media_legs import MediaCommand, MediaLegs
from .protocol import (
    CallEnded,
    Drain,
    Message,
    ProtocolError,
    SendDtmf,
    Stop,
    ToWorker,
    WorkerReady,
    WorkerSettings,
    decode_to_worker,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SETTINGS = 3
EXIT_SIP_START = 4
SETTINGS_TIMEOUT = 10.0


async def _first_settings(channel: Channel[ToWorker]) -> WorkerSettings | None:
    try:
        message = await asyncio.wait_for(channel.receive(), SETTINGS_TIMEOUT)
    except (TimeoutError, ProtocolError) as e:
        logging.getLogger(__name__).error("no usable settings from the controller: %s", e)
        return None
    if not isinstance(message, WorkerSettings):
        log.error("expected WorkerSettings first, got %r", message)
        return None
    return message


async def run_worker(ipc_fd: int) -> int:
    started = time.monotonic()
    # The controller owns the terminal's signals; it tells us when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop_requested.set)
    channel = await Channel.open(socket.socket(fileno=ipc_fd), decode_to_worker)
    settings = await _first_settings(channel)
    if settings is None:
        return EXIT_SETTINGS
    setup_logging(settings.log_level, f"worker-{settings.worker_id}")

    pumps = PumpRegistry(loop)
    engine_ref: list[SipEngine] = []

    def dtmf_from_matrix(ref: str, digit: str) -> None:
        # A client's dial pad goes straight on to the phone (RFC 4733 there too).
        log.info("call %s: DTMF %s from the Matrix side", ref, digit)
        engine_ref[0].submit(SendDtmf(call_ref=ref, digits=digit))

    media = MediaLegs(settings, pumps, channel.send, dtmf_from_matrix)

    def deliver(message: Message) -> None:
        if isinstance(message, CallEnded):
            media.call_ended(message.call_ref)
        channel.send(message)

    def emit(message: Message) -> None:
        loop.call_soon_threadsafe(deliver, message)

    engine = SipEngine(settings, emit, pumps)
    engine_ref.append(engine)
    try:
        capacity = await asyncio.to_thread(engine.start)
    except SipError as e:
        log.error("%s (is port %s:%d free?)", e, settings.sip_host, settings.sip_port)
        return EXIT_SIP_START
    log.info(
        "listening on %s:%d (%s), capacity %d calls",
        settings.sip_host,
        settings.sip_port,
        "/".join(settings.transports),
        capacity,
    )
    channel.send(
        WorkerReady(
            worker_id=settings.worker_id,
            pid=os.getpid(),
            sip_host=settings.sip_host,
            sip_port=settings.sip_port,
            capacity=capacity,
            sip_start_seconds=round(time.monotonic() - started, 3),
        )
    )
    try:
        await _serve(channel, engine, media, stop_requested)
    finally:
        await asyncio.to_thread(engine.stop)
        await media.close_all()
        await channel.drain()
        channel.close()
    return EXIT_OK


async def _serve(
    channel: Channel[ToWorker], engine: SipEngine, media: MediaLegs, stop: asyncio.Event
) -> None:
    stop_task = asyncio.create_task(stop.wait())
    tasks: set[asyncio.Task[None]] = set()
    while engine.alive:
        receive = asyncio.create_task(channel.receive())
        done, _ = await asyncio.wait({receive, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if stop_task in done:
            receive.cancel()
            log.info("SIGTERM: hanging up and exiting")
            return
        try:
            message = receive.result()
        except ProtocolError as e:
            log.error("%s; ignoring it", e)
            continue
        if message is None:
            log.warning("the controller has gone; hanging up every call and exiting")
            return
        if isinstance(message, Stop):
            log.info("stopping on the controller's request")
            return
        if isinstance(message, WorkerSettings):
            log.warning("settings can only be given once; ignoring them")
            continue
        if isinstance(message, MediaCommand):
            # Each in its own task: answering an offer gathers ICE candidates, which takes time.
            task = asyncio.create_task(media.handle(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            continue
        if isinstance(message, Drain):
            log.info("draining: new calls get 503, Retry-After %d", message.retry_after)
        engine.submit(message)
    log.error("the SIP thread has stopped; exiting so the controller restarts the worker")
    stop_task.cancel()
