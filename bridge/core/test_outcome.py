import pytest

from bridge.core.outcome import Outcome, outcome_of_sip_end


@pytest.mark.parametrize(
    ("code", "answered", "by_remote", "expected"),
    [
        (200, True, True, Outcome.COMPLETED),
        (487, True, False, Outcome.COMPLETED),
        (487, False, True, Outcome.CANCELLED),
        (487, False, False, Outcome.FAILED),
        (486, False, False, Outcome.BUSY),
        (600, False, True, Outcome.BUSY),
        (603, False, False, Outcome.DECLINED),
        (480, False, False, Outcome.NO_ANSWER),
        (408, False, True, Outcome.NO_ANSWER),
        (503, False, False, Outcome.UNAVAILABLE),
        (404, False, False, Outcome.REJECTED),
        (403, False, False, Outcome.REJECTED),
        (500, False, True, Outcome.FAILED),
    ],
)
def test_outcome_of_sip_end(code: int, answered: bool, by_remote: bool, expected: Outcome) -> None:
    assert outcome_of_sip_end(code, answered, by_remote) is expected
