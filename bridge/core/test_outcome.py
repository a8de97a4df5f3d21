import pytest

from bridge.core.outcome import Outcome, outcome_of_sip_end


@pytest.mark.parametrize(
    ("code", "answered", "expected"),
    [
        (200, True, Outcome.COMPLETED),
        (487, True, Outcome.COMPLETED),
        (487, False, Outcome.CANCELLED),
        (487, False, Outcome.CANCELLED),
        (486, False, Outcome.BUSY),
        (600, False, Outcome.BUSY),
        (603, False, Outcome.DECLINED),
        (480, False, Outcome.NO_ANSWER),
        (408, False, Outcome.NO_ANSWER),
        (503, False, Outcome.UNAVAILABLE),
        (404, False, Outcome.REJECTED),
        (403, False, Outcome.REJECTED),
        (500, False, Outcome.FAILED),
    ],
)
def test_outcome_of_sip_end(code: int, answered: bool, expected: Outcome) -> None:
    assert outcome_of_sip_end(code, answered) is expected
