from dataclasses import dataclass, field

from bridge.core.routing import caller_label, ghost_number, source_ip, trunk_for_source


@dataclass
class Trunk:
    name: str
    allowed_sources: list[str] = field(default_factory=list)


TRUNKS = [Trunk("a", ["192.0.2.0/24"]), Trunk("b", ["198.51.100.7", "2001:db8::/32"])]


def test_source_ip() -> None:
    assert source_ip("192.0.2.1:5060") == "192.0.2.1"
    assert source_ip("[2001:db8::1]:5060") == "2001:db8::1"
    assert source_ip("192.0.2.1") == "192.0.2.1"


def test_trunk_for_source() -> None:
    assert trunk_for_source("192.0.2.77:5060", TRUNKS).name == "a"  # type: ignore[union-attr]
    assert trunk_for_source("198.51.100.7:5080", TRUNKS).name == "b"  # type: ignore[union-attr]
    assert trunk_for_source("[2001:db8::5]:5060", TRUNKS).name == "b"  # type: ignore[union-attr]
    assert trunk_for_source("198.51.100.8:5060", TRUNKS) is None
    assert trunk_for_source("not-an-ip:5060", TRUNKS) is None
    assert trunk_for_source("192.0.2.1:5060", []) is None


def test_ghost_number_and_label() -> None:
    assert ghost_number("+4930123") == "+4930123"
    assert ghost_number("Anonymous") == "anonymous"
    assert ghost_number("<>!") == "unknown"
    assert caller_label("+4930", "Erika") == "Erika (+4930)"
    assert caller_label("+4930", "+4930") == "+4930"
    assert caller_label("+4930", None) == "+4930"
