"""SIPp, the SIP traffic generator, with scenarios written for the behaviour under test."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
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


def run_sipp(
    workdir: Path,
    target: str,
    scenario_xml: str | None = None,
    builtin: str | None = None,
    service: str = "+4930123456",
    calls: int = 1,
    rate: float = 10,
    timeout: float = 30,
    transport: str = "u1",
    extra: list[str] | None = None,
) -> SippResult:
    """Run SIPp to completion; its message trace is returned for assertions."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        "sipp",
        target,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port_pair()),
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
        "-trace_stat",
        "-stf",
        str(workdir / "stats.csv"),
    ]
    if scenario_xml is not None:
        path = workdir / "scenario.xml"
        path.write_text(scenario_xml)
        argv += ["-sf", str(path)]
    else:
        argv += ["-sn", builtin or "uac"]
    argv += extra or []
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout + 15)
    output = done.stdout + done.stderr
    messages = (
        (workdir / "messages.log").read_text(errors="replace")
        if (workdir / "messages.log").exists()
        else ""
    )
    successful = _last_count(output, "Successful call")
    failed = _last_count(output, "Failed call")
    return SippResult(done.returncode, successful, failed, output, messages)


def _last_count(output: str, label: str) -> int:
    matches = re.findall(rf"{label}\s*\|\s*(\d+)\s*\|\s*(\d+)", output)
    return int(matches[-1][1]) if matches else 0


def responses(messages: str) -> list[int]:
    """Status codes of the responses SIPp received, in order."""
    return [int(code) for code in re.findall(r"^SIP/2\.0 (\d{3})", messages, re.M)]
