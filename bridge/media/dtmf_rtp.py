"""RFC 4733 telephone-events on WebRTC legs (a client's dial pad), which aiortc lacks.

`enable_telephone_events` teaches aiortc to negotiate audio/telephone-event and hands such
packets to a listener on their receiver instead of to a decoder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.codecs import CODECS
from aiortc.rtp import RtpPacket

MIME = "audio/telephone-event"
DIGITS = "0123456789*#ABCD"
_enabled = False


def is_telephone_event(codec: Any) -> bool:
    return str(getattr(codec, "mimeType", "")).lower() == MIME


def enable_telephone_events() -> None:
    """Once per process: negotiate telephone-event/8000 and route its packets to listeners."""
    global _enabled
    if _enabled:
        return
    _enabled = True
    CODECS["audio"].append(
        RTCRtpCodecParameters(
            mimeType=MIME,
            clockRate=8000,
            channels=1,
            payloadType=101,
            parameters={"0-16": None},
        )
    )
    original: Callable[..., Awaitable[None]] = RTCRtpReceiver._handle_rtp_packet

    async def handle_rtp_packet(
        self: RTCRtpReceiver, packet: RtpPacket, arrival_time_ms: int
    ) -> None:
        codecs = getattr(self, "_RTCRtpReceiver__codecs", {})
        if is_telephone_event(codecs.get(packet.payload_type)):
            listener = getattr(self, "dtmf_listener", None)
            if listener is not None:
                listener(packet)
            return
        await original(self, packet, arrival_time_ms)

    RTCRtpReceiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


class TelephoneEvents:
    """Turns a stream of RFC 4733 packets into digits, each reported once."""

    def __init__(self, on_digit: Callable[[str], None]) -> None:
        self.on_digit = on_digit
        self._last_timestamp: int | None = None

    def packet(self, packet: RtpPacket) -> None:
        if len(packet.payload) < 4:
            return
        event = packet.payload[0]
        # One event keeps its RTP timestamp over all its packets (and repeated ends).
        if packet.timestamp == self._last_timestamp or event >= len(DIGITS):
            return
        self._last_timestamp = packet.timestamp
        self.on_digit(DIGITS[event])
