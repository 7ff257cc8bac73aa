"""Rules on the client's source port and LIMIT rules, against real ufw and real connects.

Issue 10, defect 7. Real ufw (tests/lab/ufwlab.py) in a node namespace, with samba's own
application profile, is given the rules people paste (`ufw allow from any app Samba` prints
`Anywhere ALLOW IN 139,445/tcp (Samba)`; `ufw deny proto tcp from any port 139,445`; `ufw
allow proto tcp from any port 1024:65535 to any port 10251`), and a peer namespace connects
for real with the kernel's own source ports (its ip_local_port_range, 32768-60999 by
default). Each listing format must decide what the kernel did, and say it assumed that range;
a connection from source port 139 (nc -p 139) is what `--src-port-range 139-139` predicts.

A LIMIT rule accepts a single connection but refuses the 6th new one within 30 s from one
address: a burst from the peer shows it, `tunnelwatch analyze ufw` answers exit 1 with a fix
that speaks of rate-limiting, and that fix, run on the node, lets the whole burst through.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.analysis import ufw
from shared.analysis.findings import Subject
from shared.cli.main import main
from tests.conftest import require_tools
from tests.lab.netns import Host, Lab
from tests.lab.ufwlab import UfwHost, machine_ufw_snapshot, ufw_unavailable_reason
from tests.skips import cannot_run

pytestmark = pytest.mark.netns

NODE, PEER = "10.250.0.10", "10.250.0.20"
SAMBA = (
    "[Samba]\ntitle=LanManager-like file and printer server\ndescription=samba's profile\n"
    "ports=137,138/udp|139,445/tcp\n"
)
SOURCE_PORT_RULES = [
    ["allow", "from", "any", "app", "Samba"],
    ["allow", "from", "10.250.0.0/24", "app", "Samba"],
    ["deny", "proto", "tcp", "from", "any", "port", "139,445"],
    ["allow", "proto", "tcp", "from", "any", "port", "1024:65535", "to", "any", "port", "10251"],
    ["allow", "Samba"],
]
FORMATS = {
    "verbose": ["status", "verbose"],
    "numbered": ["status", "numbered"],
    "plain": ["status"],
}
BURST = 8


@dataclass
class Rig:
    node: UfwHost
    peer: Host
    tmp: Path


@pytest.fixture(scope="module")
def rig(netns_ok: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_tools("ufw", "iptables", "nc")
    if reason := ufw_unavailable_reason():
        cannot_run(f"needs ufw with its packaged files: {reason}")
    before = machine_ufw_snapshot()
    with ExitStack() as stack:
        lab = stack.enter_context(Lab())
        node = UfwHost(lab.add_host([NODE]))
        stack.callback(node.close)
        peer = lab.add_host([PEER])
        node.host.listen([10250, 10251])
        node.add_app_profile("samba", SAMBA)
        yield Rig(node, peer, tmp_path_factory.mktemp("ufw-sport"))
    assert machine_ufw_snapshot() == before, "the machine's /etc/ufw or /etc/default/ufw changed"


def _configure(node: UfwHost, rules: list[list[str]]) -> dict[str, str]:
    node.reset()
    node.ufw("default", "deny", "incoming")
    for argv in rules:
        node.ufw(*argv)
    node.ufw("--force", "enable")
    node.clear_rate_limits()
    return {fmt: node.ufw(*argv).stdout for fmt, argv in FORMATS.items()}


def _verdict(
    text: str, port: int, src_ports: tuple[int, int] = ufw.EPHEMERAL_PORTS
) -> ufw.UfwVerdict:
    status = ufw.parse_status(text, "capture")
    src = ipaddress.ip_address(PEER)
    policy = ufw.Policy.DENY  # plain `ufw status` omits it, as --default-incoming gives it
    return ufw.evaluate(status, port, src=src, default_incoming=policy, src_ports=src_ports)


def test_source_port_rules_decided_as_the_kernel_does(rig: Rig) -> None:
    low, high = map(
        int, rig.peer.exec(["cat", "/proc/sys/net/ipv4/ip_local_port_range"]).stdout.split()
    )
    if (low, high) != ufw.EPHEMERAL_PORTS:
        cannot_run(f"the peer's ip_local_port_range is {low}-{high}, not Linux's default")
    captures = _configure(rig.node, SOURCE_PORT_RULES)
    assert "139,445/tcp (Samba)" in captures["verbose"]  # the shape of the defect's paste
    seen = rig.peer.connect(
        [{"src": PEER, "dst": NODE, "port": 10250}, {"src": PEER, "dst": NODE, "port": 10251}],
        timeout=1.0,
    )
    assert seen == ["timeout", "open"]  # the kernel: default deny; 1024:65535 covers the range
    for fmt, text in captures.items():
        kubelet, other = _verdict(text, 10250), _verdict(text, 10251)
        assert kubelet.verdict is ufw.UfwFlowVerdict.DENY and kubelet.rule is None, (
            fmt,
            kubelet.reason,
        )
        assert other.verdict is ufw.UfwFlowVerdict.ALLOW, (fmt, other.reason)
        assert any("32768-60999" in n for n in kubelet.notes), (fmt, kubelet.notes)
    # From source port 139 the Samba rule matches: nc -p 139 gets through, and so says the
    # analyzer told that source port.
    probe = rig.peer.exec(
        ["nc", "-z", "-w", "2", "-p", "139", "-s", PEER, NODE, "10250"], check=False
    )
    assert probe.returncode == 0, probe.stderr
    for fmt, text in captures.items():
        v = _verdict(text, 10250, src_ports=(139, 139))
        assert v.verdict is ufw.UfwFlowVerdict.ALLOW and v.rule is not None, (fmt, v.reason)
        assert "Samba" in v.rule.text


def test_limit_refuses_a_burst_and_the_fix_lets_it_through(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    captures = _configure(rig.node, [["limit", "10250/tcp"]])
    burst = [{"src": PEER, "dst": NODE, "port": 10250}] * BURST
    seen = rig.peer.connect(burst, timeout=1.0)
    assert seen.count("open") == 5 and seen.count("refused") == BURST - 5, seen
    capture = rig.tmp / "limit.txt"
    capture.write_text(captures["numbered"])
    code = main(["analyze", "ufw", str(capture), "--src", PEER, "--default-incoming", "deny"])
    out = capsys.readouterr().out
    assert code == 1 and ": LIMIT" in out, out
    assert "rate-limits it" in out and "blocks" not in out, out
    [finding] = ufw.findings_for(_verdict(captures["numbered"], 10250), Subject())
    assert finding.remediation is not None
    for fix in finding.remediation.commands:
        argv = shlex.split(fix)
        assert argv[0] == "ufw", fix
        rig.node.ufw(*argv[1:])
    rig.node.clear_rate_limits()
    assert rig.peer.connect(burst, timeout=1.0) == ["open"] * BURST
