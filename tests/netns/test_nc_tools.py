"""Every netcat Debian packages, run for real, pasted as a terminal shows it (issue 10, item 10).

A client namespace runs OpenBSD nc, nmap's ncat, busybox nc and netcat-traditional against a
peer whose ports are open (a listener), refused (iptables REJECT tcp-reset), unreachable
(REJECT icmp-host-unreachable) and dropped (DROP: a timeout). Each run is pasted the way people
paste it: the prompt and command line, then what the tool printed (stdout and stderr), and
read with the paste pre-pass (shared.analysis.paste) and `netcat.analyze`. What must hold:

- each run's result is attributed to the target its command line names, also when the tool
  does not name it (ncat's `Ncat: TIMEOUT.`, busybox's `nc: timed out`), and all runs pasted
  one after another each keep their own target and outcome;
- a silent `nc -z` followed by `echo $?` (on its own prompt or after `;`) is open for 0 and
  "failed" for 1;
- a name with an IPv4 address (dropped) and an IPv6 one the client has no route to: the target
  is a timeout, not "unreachable", and each address family's outcome is reported.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.analysis import netcat
from shared.analysis.paste import clean
from tests.conftest import require_tools
from tests.lab.netns import Host, Lab
from tests.skips import cannot_run

pytestmark = pytest.mark.netns

PEER, PEER_V6 = "10.250.0.20", "fd00:250::20"
OPEN, REFUSED, UNREACHABLE, TIMEOUT = 10250, 10251, 10252, 10253
EXPECTED = {OPEN: "open", REFUSED: "refused", UNREACHABLE: "unreachable", TIMEOUT: "timeout"}
# Each tool's command for one target, as people type it (busybox nc has neither -v nor -z).
# -w 2, not 1: Linux reports an ICMP host-unreachable to connect() only at the first SYN
# retransmission, after a second; before that it looks like a timeout.
TOOLS = {
    "openbsd": ("nc", "nc -vz -w 2 {host} {port}"),
    "ncat": ("ncat", "ncat -vz -w 2 {host} {port}"),
    # silent when it connects: only its exit status says so
    "busybox": ("busybox", "busybox nc -w 2 {host} {port} </dev/null; echo $?"),
    "traditional": ("nc.traditional", "nc.traditional -vnz -w 2 {host} {port}"),
}
SILENT = {
    "openbsd": "nc -z -w 2 {host} {port}",
    "ncat": "ncat -z -w 2 {host} {port}",
    "traditional": "nc.traditional -z -w 2 {host} {port}",
}
PROMPTS = ["$ ", "root@aks-nodepool1-0:~# ", "[root@node ~]# "]


@dataclass
class Client:
    host: Host
    hosts_file: Path

    def run(self, command: str) -> str:
        """What a terminal shows for this command: stdout and stderr, in order."""
        return self.host.exec(["sh", "-c", f"exec 2>&1; {command}"], check=False, timeout=20).stdout


@pytest.fixture(scope="module")
def client(netns_ok: None) -> Iterator[Client]:
    require_tools("iptables")
    with Lab() as lab:
        node = lab.add_host(["10.250.0.10"])
        peer = lab.add_host([PEER])
        peer.listen([OPEN])
        # Every REJECT answers at once (the default rate limit would drop some ICMP errors
        # of back-to-back runs, and the client would time out instead).
        peer.exec(["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
        for port, target in (
            (REFUSED, ["REJECT", "--reject-with", "tcp-reset"]),
            (UNREACHABLE, ["REJECT", "--reject-with", "icmp-host-unreachable"]),
            (TIMEOUT, ["DROP"]),
        ):
            rule = ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", *target]
            peer.exec(rule)
        # `node1` has an IPv4 address (the peer) and an IPv6 one the client has no route to.
        etc = Path("/etc/netns") / node.name
        etc.mkdir(parents=True, exist_ok=False)
        hosts = etc / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{PEER} node1\n{PEER_V6} node1\n")
        try:
            yield Client(node, hosts)
        finally:
            shutil.rmtree(etc, ignore_errors=True)


def _tool(name: str) -> str:
    program, command = TOOLS[name]
    if shutil.which(program) is None:
        cannot_run(f"needs {program} (make test installs it as root)")
    return command


def _results(paste_text: str) -> dict[str, netcat.TargetResult]:
    paste = clean(paste_text)
    report = netcat.analyze(paste.text, "paste", commands=paste.commands)
    return {r.target.label(): r for r in report.results}


@pytest.mark.parametrize("tool", list(TOOLS))
def test_each_run_is_attributed_to_the_target_its_prompt_names(client: Client, tool: str) -> None:
    command = _tool(tool)
    pasted = []
    for i, port in enumerate(EXPECTED):
        typed = command.format(host=PEER, port=port)
        pasted.append(f"{PROMPTS[i % len(PROMPTS)]}{typed}\n{client.run(typed)}")
    # Each run alone, and all of them in one paste.
    for text in [*pasted, "".join(pasted)]:
        got = {label: r.status.value for label, r in _results(text).items()}
        want = {f"{PEER}:{p}": s for p, s in EXPECTED.items() if f"{PEER} {p}" in text}
        assert got == want, text


@pytest.mark.parametrize("tool", list(SILENT))
def test_silent_z_then_echo_status(client: Client, tool: str) -> None:
    _tool(tool)
    command = SILENT[tool]
    pasted = []
    for port in (OPEN, TIMEOUT):
        typed = command.format(host=PEER, port=port)
        assert client.run(typed) == ""  # silent, whatever the outcome
        code = client.run(f"{typed}; echo $?")
        pasted.append(f"$ {typed}\n$ echo $?\n{code}")
        pasted.append(f"root@node:~# {typed}; echo $?\n{code}")
    results = _results("".join(pasted))
    assert {k: r.status.value for k, r in results.items()} == {
        f"{PEER}:{OPEN}": "open",
        f"{PEER}:{TIMEOUT}": "failed",
    }
    assert len(results[f"{PEER}:{TIMEOUT}"].attempts) == 2  # both pastes of it


@pytest.mark.parametrize("tool", ["openbsd", "ncat"])
def test_ipv4_timeout_and_ipv6_unreachable_are_reported_apart(client: Client, tool: str) -> None:
    typed = _tool(tool).format(host="node1", port=TIMEOUT)
    output = client.run(typed)
    assert "unreachable" in output.lower()  # the IPv6 attempt: no route on the client
    [result] = _results(f"$ {typed}\n{output}").values()
    assert result.target.label() == f"node1:{TIMEOUT}"
    assert result.status is netcat.Status.TIMEOUT, output
    statuses = {f.family: f.status for f in result.families}
    assert statuses[4] is netcat.Status.TIMEOUT
    # OpenBSD nc names the IPv6 address; ncat only says it tried the next one.
    other = 6 if tool == "openbsd" else None
    assert statuses[other] is netcat.Status.UNREACHABLE, output
