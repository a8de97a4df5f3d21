"""A phone that calls the bridge and sends back whatever it hears (up to 4 calls).

    python -m bench.echo_phone HOST:PORT RTP_PORT NUMBER [NUMBER ...]

Prints CONNECTED <number> once a call's audio is looped; hangs up when stdin closes.
"""

from __future__ import annotations

import select
import sys
import time
from collections import deque

import pjsua2 as pj

from bridge.media.frames import SILENCE
from bridge.media.pjport import audio_format, read_frame, write_frame


class Quiet(pj.LogWriter):  # type: ignore[misc]
    def write(self, entry: pj.LogEntry) -> None:
        if entry.level <= 1:
            print(entry.msg, file=sys.stderr)


class Loop(pj.AudioMediaPort):  # type: ignore[misc]
    """Plays back what it hears, one frame later (pjmedia's bridge cannot loop a port)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: deque[bytes] = deque(maxlen=5)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        self.frames.append(read_frame(frame))

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        write_frame(frame, self.frames.popleft() if self.frames else SILENCE)


class EchoCall(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account, number: str) -> None:
        super().__init__(account)
        self.number = number
        self.looped = False
        self.loop = Loop()

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        if self.looped:
            return
        info = self.getInfo()  # keep it: its media list points into it
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(media.index)
                self.loop.createPort(f"loop-{self.number}", audio_format())
                audio.startTransmit(self.loop)
                self.loop.startTransmit(audio)
                self.looped = True
                print(f"CONNECTED {self.number}", flush=True)


def main() -> None:
    target, rtp_port, numbers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    writer = Quiet()
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.maxCalls = 4
    cfg.logConfig.writer = writer
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.sndAutoCloseTime = -1
    cfg.medConfig.ecTailLen = 0
    # As small as loopback allows, so the round trip measures the bridge, not this phone.
    cfg.medConfig.jbInit = 20
    cfg.medConfig.jbMinPre = 20
    cfg.medConfig.jbMaxPre = 40
    ep.libInit(cfg)
    transport = pj.TransportConfig()
    transport.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    ep.audDevManager().setNullDev()
    ep.libStart()
    account = pj.Account()
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:echo@127.0.0.1"
    acfg.mediaConfig.transportConfig.port = rtp_port
    acfg.mediaConfig.transportConfig.portRange = 40
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account.create(acfg)
    calls = [EchoCall(account, number) for number in numbers]
    for call in calls:
        call.makeCall(f"sip:{call.number}@{target}", pj.CallOpParam(True))
    del call  # no pjsua2 object may outlive libDestroy
    while True:
        ep.libHandleEvents(10)
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if ready and not sys.stdin.readline():
            break
    ep.hangupAllCalls()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        ep.libHandleEvents(10)
    calls.clear()
    account.shutdown()
    del account
    ep.libDestroy()


if __name__ == "__main__":
    main()
