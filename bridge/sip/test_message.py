from bridge.sip.message import headers, parse_logged_request, parse_name_addr, request_uri, uri_user

INVITE = (
    "INVITE sip:+4930123456@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1\r\n"
    'f: "Alice \\"A\\" Smith" <sip:+4940999@trunk.test>;tag=abc\r\n'
    "To: <sip:+4930123456@127.0.0.1>\r\n"
    "Call-ID: 1-2@127.0.0.1\r\n"
    "Subject: a long\r\n subject\r\n"
    "\r\n"
    "v=0\r\n"
)


def test_headers_use_long_names_and_unfold_lines() -> None:
    parsed = headers(INVITE)
    assert parsed["call-id"] == "1-2@127.0.0.1"
    assert parsed["from"].startswith('"Alice')
    assert parsed["subject"] == "a long subject"
    assert "v=0" not in parsed


def test_request_uri_only_for_requests() -> None:
    assert request_uri(INVITE) == "sip:+4930123456@127.0.0.1:5060"
    assert request_uri("SIP/2.0 200 OK\r\n\r\n") is None


def test_name_addr_with_quoted_display_and_escapes() -> None:
    addr = parse_name_addr(headers(INVITE)["from"])
    assert addr.display == 'Alice "A" Smith'
    assert addr.uri == "sip:+4940999@trunk.test"
    assert addr.user == "+4940999"


def test_name_addr_forms() -> None:
    assert parse_name_addr("Bob <sip:bob@h>").display == "Bob"
    assert parse_name_addr("<sip:bob@h>").display is None
    assert parse_name_addr("sip:bob@h;tag=1").uri == "sip:bob@h"


def test_uri_user() -> None:
    assert uri_user("sip:+49301;phone-context=x@h;user=phone") == "+49301"
    assert uri_user("tel:+4930123;ext=1") == "+4930123"
    assert uri_user("sip:host.only") == ""
    assert uri_user("mailto:a@b") == ""


def test_parse_logged_request() -> None:
    log = (
        "RX 305 bytes Request msg OPTIONS/cseq=1 (rdata0x55) from UDP 127.0.0.1:5081:\n"
        "OPTIONS sip:ping@127.0.0.1:5070 SIP/2.0\r\nCall-ID: xyz\r\n\r\n\n--end msg--"
    )
    seen = parse_logged_request(log)
    assert seen is not None
    assert (seen.method, seen.transport, seen.source, seen.sip_call_id) == (
        "OPTIONS",
        "udp",
        "127.0.0.1:5081",
        "xyz",
    )
    assert (
        parse_logged_request("TX 682 bytes Response msg 200/OPTIONS/cseq=1 (t) to UDP x:\n") is None
    )


def test_q850_cause() -> None:
    from bridge.sip.message import q850_cause

    assert q850_cause('Q.850;cause=16;text="Normal call clearing"') == 16
    assert q850_cause('SIP;cause=200;text="x", Q.850 ; cause=17') == 17
    assert q850_cause("SIP;cause=487") is None
    assert q850_cause(None) is None
