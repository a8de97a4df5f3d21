"""Numbers: normalising what people and phones send to E.164, and which may be dialled."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SEPARATORS = re.compile(r"[\s\-./()]")


class NumberError(ValueError):
    """Not a phone number we can use; the message says why."""


@dataclass(frozen=True)
class DialPlan:
    country_code: str = ""  # e.g. "49": numbers with the national prefix get +49
    national_prefix: str = "0"
    international_prefix: str = "00"
    allow: tuple[str, ...] = field(default=(r"^\+",))
    deny: tuple[str, ...] = ()

    def normalise(self, dialled: str) -> str:
        """'030 1234-56' → '+49301234 56' without spaces; raises NumberError."""
        raw = _SEPARATORS.sub("", dialled.strip())
        if raw.lower().startswith(("sip:", "tel:")):
            raw = raw.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
        if not raw:
            raise NumberError("the number is empty")
        if raw.startswith("+"):
            digits = raw[1:]
        elif self.international_prefix and raw.startswith(self.international_prefix):
            digits = raw[len(self.international_prefix) :]
        elif self.country_code and self.national_prefix and raw.startswith(self.national_prefix):
            digits = self.country_code + raw[len(self.national_prefix) :]
        else:
            raise NumberError(
                f"'{dialled}' is not an international number (start it with + or "
                f"{self.international_prefix or '+'})"
            )
        if not digits.isdigit():
            raise NumberError(f"'{dialled}' contains characters other than digits")
        if not 3 <= len(digits) <= 15:
            raise NumberError(f"'{dialled}' has {len(digits)} digits; E.164 allows 3 to 15")
        return "+" + digits

    def refusal(self, e164: str) -> str | None:
        """Why this normalised number may not be dialled, or None if it may."""
        for pattern in self.deny:
            if re.search(pattern, e164):
                return f"{e164} matches the blocked pattern {pattern}"
        if not any(re.search(pattern, e164) for pattern in self.allow):
            return f"{e164} is not in the allowed destinations"
        return None


def normalise_incoming(user: str, plan: DialPlan) -> str:
    """The number of a SIP URI user part as E.164 where possible, else as it came."""
    try:
        return plan.normalise(user)
    except NumberError:
        return user
