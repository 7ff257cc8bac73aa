"""The lab itself: two hosts on the bridge reach each other; the kernel's answers are told apart."""

from __future__ import annotations

import pytest

from tests.conftest import require_tools
from tests.lab.netns import Lab

pytestmark = pytest.mark.netns


def test_open_refused_timeout_are_told_apart(netns_ok: None) -> None:
    require_tools("iptables-restore")
    with Lab() as lab:
        node = lab.add_host(["10.250.0.10"])
        peer = lab.add_host(["10.250.0.20", "10.250.0.21"])
        node.listen([10250])
        ruleset = (
            "*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -s 10.250.0.21/32 -p tcp --dport 10250 -j DROP\n"
            "-A INPUT -p tcp --dport 10251 -j REJECT\nCOMMIT\n"
        )
        node.exec(["iptables-restore"], input=ruleset)
        got = peer.connect(
            [
                {"src": "10.250.0.20", "dst": "10.250.0.10", "port": 10250},
                {"src": "10.250.0.21", "dst": "10.250.0.10", "port": 10250},
                {"src": "10.250.0.20", "dst": "10.250.0.10", "port": 10251},
            ],
            timeout=0.5,
        )
        assert got == ["open", "timeout", "refused"]
