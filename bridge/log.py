"""Logging set-up: one format for controller and workers, and no secrets in any line."""

from __future__ import annotations

import logging
import re
import sys

_SECRET_PATTERNS = [
    # access tokens in query strings and Authorization headers
    (re.compile(r"(access_token=)[^&\s\"']+"), r"\1<redacted>"),
    (re.compile(r"(?i)(authorization:\s*bearer\s+)\S+"), r"\1<redacted>"),
    # SIP digest credentials
    (re.compile(r"(?im)^((?:proxy-)?authorization:\s*digest).*$"), r"\1 <redacted>"),
    (re.compile(r"(?i)(response=\")[0-9a-f]+"), r"\1<redacted>"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str, process_name: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter(
            f"%(asctime)s %(levelname)-7s {process_name} %(name)s: %(message)s",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-statement chatter from the database driver drowns everything else.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # aiohttp's access log repeats every transaction; keep it for DEBUG only.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING
    )
