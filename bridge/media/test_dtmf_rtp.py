from aiortc.rtp import RtpPacket

from bridge.media.dtmf_rtp import TelephoneEvents


def event(digit: int, timestamp: int, end: bool = False) -> RtpPacket:
    flags = 0x80 if end else 0
    return RtpPacket(
        payload_type=101, timestamp=timestamp, payload=bytes([digit, flags | 10, 0, 160])
    )


def test_each_event_reported_once_whatever_its_packets() -> None:
    digits: list[str] = []
    events = TelephoneEvents(digits.append)
    for packet in [
        event(5, 1000),
        event(5, 1000),
        event(5, 1000, end=True),
        event(5, 1000, end=True),
        event(11, 2000),
        event(11, 2000, end=True),
        event(10, 3000),
        event(99, 4000),
        RtpPacket(payload=b"\x01"),
    ]:
        events.packet(packet)
    assert digits == ["5", "#", "*"]
