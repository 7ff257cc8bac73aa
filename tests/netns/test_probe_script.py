"""The real probe script in a lab node, run the way the run-command extension runs it.

No stand-in crictl here: the script reports crictl absent, which is what is asserted.
"""

from __future__ import annotations

import re

import pytest

from shared.analysis.netcat import Status
from shared.probe import script_text
from shared.probe.output import parse_probe_output
from shared.probe.params import rendered_preamble, validate_probe_parameters
from tests.conftest import require_tools
from tests.lab.netns import Host, Lab

pytestmark = pytest.mark.netns

NODE, OPEN_PEER, DROP_PEER = "10.250.0.10", "10.250.0.20", "10.250.0.21"


def _saves(node: Host) -> tuple[str, str]:
    legacy = node.exec(["iptables-legacy-save"], check=False).stdout
    nft = node.exec(["iptables-nft-save"], check=False).stdout
    return _rules(legacy), _rules(nft)


def _rules(dump: str) -> str:
    # Comments carry a date and chain counters count the probe's own packets: neither is a rule.
    lines = (x for x in dump.splitlines() if not x.startswith("#"))
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", x) for x in lines)


def _run(node: Host, mode: str) -> str:
    params = validate_probe_parameters([OPEN_PEER, DROP_PEER], OPEN_PEER, 10250, mode)
    code = rendered_preamble(params) + script_text()
    proc = node.exec(["/bin/bash", "-c", code], timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_probe_script_in_a_node(netns_ok: None) -> None:
    require_tools("iptables-restore", "iptables-legacy-save", "iptables-nft-save", "nc")
    with Lab() as lab:
        node = lab.add_host([NODE])
        peer1 = lab.add_host([OPEN_PEER])
        peer2 = lab.add_host([DROP_PEER])
        node.listen([10250])
        peer1.listen([10250])
        peer2.listen([10250])
        node.exec(
            ["iptables-restore"],
            input="*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -s 10.250.0.99/32 -p tcp --dport 10250 -j DROP\nCOMMIT\n",
        )
        peer2.exec(
            ["iptables-restore"],
            input=f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s {NODE}/32 -p tcp --dport 10250 "
            "-j DROP\nCOMMIT\n",
        )
        before = _saves(node)

        triage = _run(node, "triage")
        assert triage.startswith("TWPROBE 1 BEGIN triage\n")
        assert triage.splitlines()[-1].startswith("TWPROBE 1 END ")
        assert len(triage.encode()) < 4096
        report = parse_probe_output(triage, "triage")
        assert report.complete and report.errors == ()
        assert report.targets is not None and report.api is not None
        status = {r.target.host: r.status for r in report.targets.results}
        assert status == {OPEN_PEER: Status.OPEN, DROP_PEER: Status.TIMEOUT}
        assert report.api.results[0].status is Status.OPEN
        assert (NODE + "/24") in {a for _, a in report.addresses}
        assert report.crictl_present is False  # no crictl on this machine: reported, not faked

        deep = parse_probe_output(_run(node, "deep"), "deep")
        assert deep.complete and deep.mode == "deep"
        rules = "\n".join(r.text for r in deep.rulesets)
        assert "-s 10.250.0.99/32 -p tcp -m tcp --dport 10250 -j DROP" in rules
        assert _saves(node) == before  # read-only: the node's rulesets are untouched


def test_hostile_environment_is_refused_by_the_script(netns_ok: None) -> None:
    with Lab() as lab:
        node = lab.add_host([NODE])
        # Values a forged call could carry (quoted here: the script must still refuse them).
        code = (
            "export TW_TARGETS='10.250.0.20;touch /tmp/tw-pwned' TW_API_HOST='$(id)' "
            "TW_API_PORT=443 TW_MODE=triage\n" + script_text()
        )
        out = node.exec(["/bin/bash", "-c", code], timeout=90).stdout
        report = parse_probe_output(out, "hostile")
        assert report.complete
        assert {e.subject for e in report.errors} == {"TW_TARGETS", "TW_API_HOST"}
        assert report.targets is None and report.api is None
