import pytest

from bridge.core.dialplan import DialPlan, NumberError, normalise_incoming

GERMANY = DialPlan(country_code="49", allow=(r"^\+49",), deny=(r"^\+49900", r"^\+49137"))


@pytest.mark.parametrize(
    ("dialled", "e164"),
    [
        ("+49 30 123456", "+4930123456"),
        ("030/123-456", "+4930123456"),
        ("0049 (30) 123456", "+4930123456"),
        ("sip:+4930123456@trunk;user=phone", "+4930123456"),
        ("tel:+1-202-555-0100", "+12025550100"),
    ],
)
def test_normalise(dialled: str, e164: str) -> None:
    assert GERMANY.normalise(dialled) == e164


@pytest.mark.parametrize(
    ("dialled", "message"),
    [
        ("", "empty"),
        ("123456", "not an international number"),
        ("+49 30 12x", "characters other than digits"),
        ("+1", "E.164 allows 3 to 15"),
        ("+1234567890123456", "E.164 allows 3 to 15"),
    ],
)
def test_normalise_refuses(dialled: str, message: str) -> None:
    with pytest.raises(NumberError, match=message):
        GERMANY.normalise(dialled)


def test_without_country_code_national_numbers_are_refused() -> None:
    with pytest.raises(NumberError):
        DialPlan().normalise("030123456")


def test_deny_wins_over_allow() -> None:
    assert GERMANY.refusal("+4930123456") is None
    assert "blocked pattern" in str(GERMANY.refusal("+49900123456"))
    assert "not in the allowed destinations" in str(GERMANY.refusal("+4420123456"))


def test_normalise_incoming_keeps_what_it_cannot_read() -> None:
    assert normalise_incoming("030123456", GERMANY) == "+4930123456"
    assert normalise_incoming("alice", GERMANY) == "alice"
