"""How a call ended, in words for the call record, from the SIP facts."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    COMPLETED = "completed"  # answered, then hung up by either side
    CANCELLED = "cancelled"  # the caller gave up before an answer
    REJECTED = "rejected"  # refused by the bridge (unknown number, not permitted, …)
    DECLINED = "declined"  # refused by the callee
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNAVAILABLE = "unavailable"  # no capacity, draining, dependency down
    FAILED = "failed"  # the bridge lost the call (worker died, restart)


def outcome_of_sip_end(sip_code: int, answered: bool) -> Outcome:
    if answered:
        return Outcome.COMPLETED
    if sip_code == 487:  # the caller's side gave up, whichever side that was
        return Outcome.CANCELLED
    if sip_code in (486, 600):
        return Outcome.BUSY
    if sip_code == 603:
        return Outcome.DECLINED
    if sip_code in (408, 480):
        return Outcome.NO_ANSWER
    if sip_code == 503:
        return Outcome.UNAVAILABLE
    if 400 <= sip_code < 500:
        return Outcome.REJECTED
    return Outcome.FAILED
