"""What the bridge answers to a request inside an established call (pure; no SIP stack).

pjsua2 acts on in-dialog requests by itself: it follows a REFER and dials the target,
answers MESSAGE with 200 and drops the text, and answers INFO, OPTIONS, NOTIFY or an unknown
method with `500 Unhandled by dialog usages` (docs/security.md, "Inside an answered call").
The engine asks `decide` first and answers with its verdict; only what is left to the stack (`None`)
reaches pjsua2's own handling: BYE, ACK, CANCEL, PRACK, DTMF in INFO, and media offers,
which `offer_answer` checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What a call of the bridge takes in its dialog (advertised in Allow).
ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK")
ALLOW = ", ".join(ALLOWED_METHODS)
DTMF_RELAY = "application/dtmf-relay"
# Handled inside pjsip's INVITE session before any application callback.
STACK_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "PRACK"})


@dataclass(frozen=True)
class Verdict:
    """The bridge's own answer to an in-dialog request."""

    code: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    # Kept in the call record: what was refused that a person may want to know about.
    note: str | None = None


def decide(
    method: str, content_type: str | None, has_body: bool, from_peer: bool, source: str
) -> Verdict | None:
    """The answer to an in-dialog request, or None to let the SIP stack answer it.

    `from_peer`: the request came from the dialog's own signalling peer."""
    method = method.upper()
    if method in STACK_METHODS:
        return None
    if not from_peer:
        return Verdict(
            403,
            "Forbidden",
            note=f"{method} from {source}, which is not this call's peer, was refused",
        )
    if method == "REFER":
        return Verdict(
            403,
            "Forbidden",
            note="a REFER (call transfer) was refused: the bridge does not transfer calls",
        )
    if method == "INFO":
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if not has_body:
            return Verdict(200, "OK")  # a keep-alive, or an INFO with nothing to act on
        if media_type == DTMF_RELAY:
            return None  # pjsua2 reads the digit and answers 200 (or 400 if malformed)
        return Verdict(415, "Unsupported Media Type", (("Accept", DTMF_RELAY),))
    if method == "OPTIONS":
        return Verdict(200, "OK", (("Allow", ALLOW), ("Accept", "application/sdp")))
    if method == "NOTIFY":
        # The bridge never subscribes (it sends no REFER or SUBSCRIBE), so no NOTIFY matches.
        return Verdict(481, "Subscription Does Not Exist")
    if method in ("MESSAGE", "SUBSCRIBE", "PUBLISH"):
        note = "a text message (MESSAGE) in the call was refused" if method == "MESSAGE" else None
        return Verdict(405, "Method Not Allowed", (("Allow", ALLOW),), note)
    return Verdict(501, "Not Implemented", (("Allow", ALLOW),))


_MEDIA_LINE = re.compile(r"^m=audio\s+(\d+)\s+(\S+)\s+([\d ]+)\s*$", re.M)
_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([^/\s]+)/(\d+)", re.M)
# Static payload types (RFC 3551) that need no rtpmap.
_STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}


def offered_codecs(sdp: str) -> set[str] | None:
    """The audio codec names an SDP offers (upper case), or None if it offers no audio."""
    media = _MEDIA_LINE.search(sdp)
    if media is None:
        return None
    if int(media.group(1)) == 0:
        return set()  # a rejected stream
    mapped = {int(pt): name.upper() for pt, name, _rate in _RTPMAP.findall(sdp)}
    names = set()
    for token in media.group(3).split():
        pt = int(token)
        name = mapped.get(pt) or (_STATIC[pt][0] if pt in _STATIC else None)
        if name is not None:
            names.add(name)
    return names


def offer_answer(offer_sdp: str, codecs: list[str], from_peer: bool) -> tuple[int, str]:
    """Whether to take a re-INVITE's or UPDATE's media offer: (200 or 488, why).

    pjsua2 answers an offer with no common codec with `500 SDP negotiation failed`; RFC 3261
    §14.2 wants 488, and the call goes on with the media it had."""
    if not from_peer:
        return 488, "a media change from an address that is not the call's peer"
    names = offered_codecs(offer_sdp)
    if names is None:
        return 488, "an offer without an audio stream"
    if not names & {c.upper() for c in codecs}:
        listed = ", ".join(sorted(names)) or "none"
        return 488, f"an offer with no codec the bridge takes ({listed})"
    return 200, "a media renegotiation"
