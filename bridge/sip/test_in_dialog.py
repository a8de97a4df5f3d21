from bridge.sip.in_dialog import ALLOW, Verdict, decide, offer_answer, offered_codecs

PEER = "127.0.0.1:5060"


def answer(
    method: str, content_type: str | None = None, body: bool = False, peer: bool = True
) -> Verdict | None:
    return decide(method, content_type, body, peer, PEER)


def test_the_stack_keeps_what_its_invite_session_must_handle() -> None:
    for method in ("INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "PRACK", "bye"):
        assert answer(method) is None
    assert answer("INFO", "application/dtmf-relay", True) is None  # a digit for pjsua


def test_a_refer_is_refused_and_noted_whatever_its_target() -> None:
    verdict = answer("REFER")
    assert verdict is not None and verdict.code == 403
    assert verdict.note and "transfer" in verdict.note


def test_a_stranger_gets_403_for_anything_the_bridge_decides() -> None:
    for method in ("REFER", "INFO", "OPTIONS", "MESSAGE", "FOO"):
        verdict = answer(method, peer=False)
        assert verdict is not None and verdict.code == 403
        assert verdict.note and PEER in verdict.note


def test_each_method_gets_the_rfc_answer_with_its_headers() -> None:
    cases = {
        ("INFO", None, False): (200, ()),
        ("INFO", "text/plain", True): (415, (("Accept", "application/dtmf-relay"),)),
        ("INFO", "application/media_control+xml", True): (
            415,
            (("Accept", "application/dtmf-relay"),),
        ),
        ("OPTIONS", None, False): (200, (("Allow", ALLOW), ("Accept", "application/sdp"))),
        ("NOTIFY", "message/sipfrag", True): (481, ()),
        ("MESSAGE", "text/plain", True): (405, (("Allow", ALLOW),)),
        ("SUBSCRIBE", None, False): (405, (("Allow", ALLOW),)),
        ("PUBLISH", None, False): (405, (("Allow", ALLOW),)),
        ("FOO", None, False): (501, (("Allow", ALLOW),)),
    }
    for (method, ctype, body), (code, headers) in cases.items():
        verdict = answer(method, ctype, body)
        assert verdict is not None and (verdict.code, verdict.headers) == (code, headers), method
    assert "REFER" not in ALLOW and "MESSAGE" not in ALLOW and "BYE" in ALLOW


SDP = (
    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP {pts}\r\n{maps}a=sendrecv\r\n"
)


def offer(pts: str, maps: str = "") -> str:
    return SDP.format(pts=pts, maps=maps)


def test_offered_codecs_read_static_and_mapped_payload_types() -> None:
    assert offered_codecs(offer("0 8 101", "a=rtpmap:101 telephone-event/8000\r\n")) == {
        "PCMU",
        "PCMA",
        "TELEPHONE-EVENT",
    }
    assert offered_codecs(offer("96", "a=rtpmap:96 opus/48000/2\r\n")) == {"OPUS"}
    assert offered_codecs("v=0\r\nm=video 4000 RTP/AVP 96\r\n") is None
    assert offered_codecs(offer("0").replace("audio 4000", "audio 0")) == set()


def test_a_media_offer_needs_the_peer_and_a_common_codec() -> None:
    codecs = ["G722", "PCMU", "PCMA"]
    assert offer_answer(offer("0 8"), codecs, True)[0] == 200
    assert offer_answer(offer("9"), codecs, True)[0] == 200  # G.722, static type 9
    code, why = offer_answer(offer("18", "a=rtpmap:18 G729/8000\r\n"), codecs, True)
    assert code == 488 and "G729" in why
    assert offer_answer(offer("0 8"), codecs, False)[0] == 488
    assert offer_answer("v=0\r\n", codecs, True)[0] == 488
