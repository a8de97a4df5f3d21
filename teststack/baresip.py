"""baresip, a real softphone, headless: plays a WAV as its microphone, records what it hears.

Its aufile source does not resample: the WAV must be at the codec rate (8 kHz for G.711).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from .procs import ManagedProcess, free_port, free_port_pair

MODULES = ["g711", "g722", "aufile", "aubridge", "sndfile", "account", "menu", "ctrl_tcp"]


class Baresip:
    def __init__(self, workdir: Path, play: Path, name: str = "phone", user: str = "phone"):
        self.workdir = workdir
        self.sip_port = free_port_pair()
        self.ctrl_port = free_port()
        self.user = user
        self.recordings = workdir / "recordings"
        self.config_dir = workdir / "baresip"
        self.play = play
        self.process = ManagedProcess(
            name, ["baresip", "-f", str(self.config_dir)], workdir / f"{name}.log", cwd=workdir
        )
        self._events: list[dict[str, object]] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(parents=True, exist_ok=True)
        lines = [
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            f"audio_source aufile,{self.play}",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            "module_path /usr/lib/baresip/modules",
            *(f"module {m}.so" for m in MODULES),
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            f"snd_path {self.recordings}",
            "answermode auto",
            "rtp_ports 40000-40999",
        ]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n")
        (self.config_dir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1:{self.sip_port}>;regint=0;answermode=auto\n"
        )

    async def start(self) -> None:
        self.write_config()
        self.process.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"baresip did not start:\n{self.process.log_tail()}")

    async def command(self, command: str, params: str = "") -> None:
        assert self._writer is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._writer.write(f"{len(body)}:".encode() + body + b",")
        await self._writer.drain()

    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def hangup(self) -> None:
        await self.command("hangup")

    async def _next(self, timeout: float) -> dict[str, object]:
        assert self._reader is not None
        length = await asyncio.wait_for(self._reader.readuntil(b":"), timeout)
        body = await asyncio.wait_for(self._reader.readexactly(int(length[:-1]) + 1), timeout)
        data: dict[str, object] = json.loads(body[:-1])
        return data

    async def wait_event(self, kind: str, timeout: float = 30.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        for event in self._events:
            if event.get("type") == kind:
                self._events.remove(event)
                return event
        while time.monotonic() < deadline:
            event = await self._next(deadline - time.monotonic())
            if event.get("event") and event.get("type") == kind:
                return event
            if event.get("event"):
                self._events.append(event)
        raise TimeoutError(f"baresip: no {kind}")

    def received_audio(self) -> Path:
        """The WAV of what the phone heard (sndfile's '-dec' recording)."""
        files = sorted(self.recordings.glob("*-dec.wav"))
        if not files:
            raise FileNotFoundError(f"no recording in {self.recordings}")
        return files[-1]

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.process.stop(timeout=5)
