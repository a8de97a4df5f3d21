"""SIPp, the SIP traffic generator, with scenarios written for the behaviour under test."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .procs import free_port_pair

HEADERS = """\
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{caller_name}" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      Max-Forwards: 70"""

SDP = """\
      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=sendrecv"""


def options_scenario() -> str:
    return """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS">
  <send retrans="500"><![CDATA[
      OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      Max-Forwards: 70
      CSeq: 1 OPTIONS
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
</scenario>
"""


def invite_expecting(final: int, caller: str = "+4940111222", caller_name: str = "SIPp") -> str:
    """An INVITE that must end with `final` (a 4xx-6xx, which SIPp then ACKs)."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="INVITE expecting {final}">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{HEADERS.format(caller=caller, caller_name=caller_name)}
      CSeq: 1 INVITE
      Contact: <sip:{caller}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

{SDP}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="{final}"/>
  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
</scenario>
"""


def _invite(caller: str, caller_name: str, extra_headers: tuple[str, ...] = ()) -> str:
    extra = "".join(f"      {header}\n" for header in extra_headers)
    return f"""  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{HEADERS.format(caller=caller, caller_name=caller_name)}
      CSeq: 1 INVITE
{extra}      Contact: <sip:{caller}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

{SDP}
    ]]></send>
"""


ACK = """  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
"""

BYE_OUT = """  <send retrans="500"><![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
"""

# Through a proxy that record-routes (the SIP edge), in-dialog requests go to the callee's
# Contact along the recorded route set (SIPp: rrs on the 200, then [next_url] and [routes]).
ACK_ROUTED = ACK.replace("ACK sip:[service]@[remote_ip]:[remote_port]", "ACK [next_url]").replace(
    "      CSeq: 1 ACK\n", "      CSeq: 1 ACK\n      [routes]\n"
)
BYE_OUT_ROUTED = BYE_OUT.replace(
    "BYE sip:[service]@[remote_ip]:[remote_port]", "BYE [next_url]"
).replace("      CSeq: 2 BYE\n", "      CSeq: 2 BYE\n      [routes]\n")

OK_TO_LAST = """  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]></send>
"""


def _scenario(name: str, body: str) -> str:
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
{body}</scenario>
"""


def phone_call_answered(
    hang_up_after_ms: int | None,
    answer_timeout_ms: int = 30_000,
    caller: str = "+4940111222",
    caller_name: str = "SIPp",
    routed: bool = False,
    invite_headers: tuple[str, ...] = (),
    bye_timeout_ms: int = 60_000,
) -> str:
    """A phone calls, waits to be answered, then hangs up itself or waits for the BYE.

    `routed`: the call goes through a record-routing proxy (the SIP edge)."""
    bye = BYE_OUT_ROUTED if routed else BYE_OUT
    end = (
        f'  <pause milliseconds="{hang_up_after_ms}"/>\n{bye}'
        if hang_up_after_ms is not None
        else f'  <recv request="BYE" timeout="{bye_timeout_ms}"/>\n{OK_TO_LAST}'
    )
    rrs = ' rrs="true"' if routed else ""
    return _scenario(
        "phone call, answered",
        _invite(caller, caller_name, invite_headers)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true"/>\n'
        + f'  <recv response="200" timeout="{answer_timeout_ms}"{rrs}/>\n'
        + (ACK_ROUTED if routed else ACK)
        + end,
    )


def phone_call_with_info_dtmf(
    digits: str, caller: str = "+4940111222", caller_name: str = "SIPp"
) -> str:
    """A phone calls, is answered, presses keys sent as SIP INFO (dtmf-relay), hangs up."""
    infos = ""
    for n, digit in enumerate(digits, start=2):
        body = f"Signal={digit}\nDuration=160\n"
        infos += f"""  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {n} INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

{body}
    ]]></send>
  <recv response="200"/>
"""
    bye = BYE_OUT.replace("CSeq: 2 BYE", f"CSeq: {len(digits) + 2} BYE")
    return _scenario(
        "phone call with SIP INFO digits",
        _invite(caller, caller_name)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true"/>\n'
        + '  <recv response="200" timeout="30000"/>\n'
        + ACK
        + infos
        + '  <pause milliseconds="2500"/>\n'
        + bye,
    )


def phone_call_cancelled(
    cancel_after_ms: int, caller: str = "+4940111222", caller_name: str = "SIPp"
) -> str:
    """A phone calls, hears ringing, and hangs up before anybody answers.

    The 200 for the CANCEL may come after the 487 when a proxy relays both."""
    cancel = f"""  <pause milliseconds="{cancel_after_ms}"/>
  <send><![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "{caller_name}" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200" optional="true"/>
  <recv response="487"/>
"""
    return _scenario(
        "phone call, cancelled",
        _invite(caller, caller_name)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" timeout="15000"/>\n'
        + cancel
        + ACK,
    )


# ---- the trunk side: the bridge calls out and SIPp is the far end -------------------------


def _uas_invite(for_bye: bool = False) -> str:
    """Receive the bridge's INVITE, keeping what later messages need (SIPp refuses to keep
    variables it never uses, and wants each action on one line)."""
    dialog = (
        '      <ereg regexp="Contact: *&lt;([^&gt;]*)&gt;" search_in="msg" check_it="true" '
        'assign_to="contact_line,contact"/>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" '
        'assign_to="from_hdr"/>\n'
        '      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" '
        'assign_to="to_hdr"/>\n'
        if for_bye
        else ""
    )
    unused = "cseq_line,contact_line" if for_bye else "cseq_line"
    return (
        # rrs: the route set (a proxy's Record-Route) is kept for the BYE ([routes]).
        '  <recv request="INVITE" rrs="true">\n    <action>\n'
        '      <ereg regexp="CSeq: *([0-9]+) INVITE" search_in="msg" check_it="true" '
        'assign_to="cseq_line,cseq"/>\n'
        f"{dialog}    </action>\n  </recv>\n"
        f'  <Reference variables="{unused}"/>\n'
    )


def _uas_response(code: int, reason: str, sdp: bool = False) -> str:
    body = f"\n{SDP}" if sdp else ""
    length = "[len]" if sdp else "0"
    ctype = "      Content-Type: application/sdp\n" if sdp else ""
    tag = ";tag=[pid]SIPpTag01[call_number]"
    return f"""  <send><![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:]{tag if code != 100 else ""}
      [last_Call-ID:]
      [last_Record-Route:]
      CSeq: [$cseq] INVITE
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
{ctype}      Content-Length: {length}
{body}
    ]]></send>
"""


def trunk_answers(
    ring_ms: int = 500, hang_up_after_ms: int | None = None, early_media: bool = False
) -> str:
    """The far end rings, answers, then hangs up itself or waits for the bridge's BYE."""
    provisional = _uas_response(183, "Session Progress", sdp=True) if early_media else ""
    end = (
        f'  <pause milliseconds="{hang_up_after_ms}"/>\n' + BYE_UAS
        if hang_up_after_ms is not None
        else '  <recv request="BYE" timeout="60000"/>\n' + OK_TO_LAST
    )
    return _scenario(
        "trunk answers",
        _uas_invite(for_bye=hang_up_after_ms is not None)
        + _uas_response(100, "Trying")
        + provisional
        + _uas_response(180, "Ringing")
        + f'  <pause milliseconds="{ring_ms}"/>\n'
        + _uas_response(200, "OK", sdp=True)
        + '  <recv request="ACK" timeout="10000"/>\n'
        + end,
    )


BYE_UAS = """  <send retrans="500"><![CDATA[
      BYE [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$to_hdr];tag=[pid]SIPpTag01[call_number]
      To: [$from_hdr]
      Call-ID: [call_id]
      CSeq: 101 BYE
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
"""


def trunk_refuses(code: int, reason: str, provisional: int | None = 180) -> str:
    """The far end refuses with `code`, after a provisional response if given."""
    early = ""
    if provisional == 180:
        early = _uas_response(180, "Ringing")
    elif provisional == 183:
        early = _uas_response(183, "Session Progress", sdp=True)
    return _scenario(
        f"trunk refuses {code}",
        _uas_invite()
        + _uas_response(100, "Trying")
        + early
        + '  <pause milliseconds="300"/>\n'
        + _uas_response(code, reason)
        + '  <recv request="ACK" timeout="10000"/>\n',
    )


def trunk_rings_until_cancelled() -> str:
    return _scenario(
        "trunk rings until cancelled",
        _uas_invite()
        + _uas_response(100, "Trying")
        + _uas_response(180, "Ringing")
        + '  <recv request="CANCEL" timeout="60000"/>\n'
        + OK_TO_LAST
        + _uas_response(487, "Request Terminated")
        + '  <recv request="ACK" timeout="10000"/>\n',
    )


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str
    messages: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class SippProcess:
    """SIPp in the background, for scenarios that wait on what a test does in Matrix."""

    def __init__(self, workdir: Path, argv: list[str], timeout: float) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.proc = subprocess.Popen(
            argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait(self, timeout: float | None = None) -> SippResult:
        try:
            output, _ = self.proc.communicate(timeout=timeout or self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        log = self.workdir / "messages.log"
        messages = log.read_text(errors="replace") if log.exists() else ""
        return SippResult(
            self.proc.returncode,
            _last_count(output, "Successful call"),
            _last_count(output, "Failed call"),
            output,
            messages,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def start_sipp(
    workdir: Path,
    scenario_xml: str,
    target: str | None = None,
    service: str = "+4930123456",
    local_port: int | None = None,
    calls: int = 1,
    rate: float = 10,
    timeout: float = 60,
    transport: str = "u1",
    extra_args: tuple[str, ...] = (),
) -> SippProcess:
    """Start SIPp as a caller (with a target) or as the far end of a trunk (without)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "scenario.xml"
    path.write_text(scenario_xml)
    argv = (
        ["sipp"]
        + ([target] if target else [])
        + [
            "-sf",
            str(path),
            "-i",
            "127.0.0.1",
            "-p",
            str(local_port or free_port_pair()),
            "-s",
            service,
            "-m",
            str(calls),
            "-r",
            str(rate),
            "-nostdin",
            "-timeout",
            f"{int(timeout)}s",
            "-t",
            transport,
            "-trace_msg",
            "-message_file",
            str(workdir / "messages.log"),
            *extra_args,
        ]
    )
    return SippProcess(workdir, argv, timeout)


def run_sipp(
    workdir: Path,
    target: str,
    scenario_xml: str,
    service: str = "+4930123456",
    calls: int = 1,
    rate: float = 10,
    timeout: float = 30,
    transport: str = "u1",
) -> SippResult:
    """Run SIPp to completion; its message trace is returned for assertions."""
    return start_sipp(
        workdir, scenario_xml, target, service, None, calls, rate, timeout, transport
    ).wait()


def _last_count(output: str, label: str) -> int:
    matches = re.findall(rf"{label}\s*\|\s*(\d+)\s*\|\s*(\d+)", output)
    return int(matches[-1][1]) if matches else 0


def timed_messages(messages: str) -> list[tuple[float, str, str]]:
    """(unix time, "sent" or "received", message) for each message in a -trace_msg log."""
    found = []
    for match in re.finditer(
        r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n\w+ message (sent|received)"
        r"[^\n]*\n\n(.*?)(?=^-{20,} |\Z)",
        messages,
        re.M | re.S,
    ):
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        found.append((stamp, match.group(2), match.group(3).strip()))
    return found


def received(messages: str) -> list[str]:
    """The messages SIPp received, in order, from its -trace_msg log."""
    blocks = re.split(r"^-{20,}.*$", messages, flags=re.M)
    return [
        block.split("\n\n", 1)[1].strip() if "\n\n" in block else ""
        for block in blocks
        if re.search(r"message received", block)
    ]


def headers_of(message: str) -> dict[str, str]:
    from bridge.sip.message import headers

    return headers(message.replace("\n", "\r\n"))


def responses(messages: str) -> list[int]:
    """Status codes of the responses SIPp received, in order."""
    return [int(m[8:11]) for m in received(messages) if m.startswith("SIP/2.0 ")]


def requests(messages: str) -> list[str]:
    """The requests SIPp received (whole text), in order."""
    return [m for m in received(messages) if m and not m.startswith("SIP/2.0 ")]


def registrar(username: str, password: str, realm: str = "trunk.test") -> str:
    """A registrar that challenges with MD5 digest and accepts only the right credentials."""

    def response(code: int, reason: str, extra: str = "") -> str:
        return f"""  <send><![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
{extra}      Content-Length: 0

    ]]></send>
"""

    challenge = (
        f'      WWW-Authenticate: Digest realm="{realm}", nonce="[pid]n[call_number]", '
        'algorithm=MD5, qop="auth"\n'
    )
    return _scenario(
        "registrar",
        '  <recv request="REGISTER"/>\n'
        + response(401, "Unauthorized", challenge)
        + '  <recv request="REGISTER">\n    <action>\n'
        + f'      <verifyauth assign_to="authvalid" username="{username}" password="{password}"/>\n'
        + "    </action>\n  </recv>\n"
        + '  <nop test="authvalid" next="good"/>\n'
        + response(403, "Forbidden").replace("<send>", '<send next="done">', 1)
        + '  <label id="good"/>\n'
        + response(200, "OK", "      [last_Contact:];expires=300\n      Expires: 300\n")
        + '  <label id="done"/>\n',
    )
