"""`make demo` end to end: the driver runs the real `tunnelwatch` command on every example,
scans the demo estate on the ARM simulator with Azurite, and (as root) probes the node lab.
An end-to-end test, not a unit test: it needs Azurite and takes about half a minute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.azurite import azurite_binary
from tests.lab.netns import netns_unavailable_reason
from tests.skips import cannot_run

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_every_verdict_as_expected() -> None:
    if azurite_binary() is None:
        cannot_run("make demo needs Azurite (node_modules/.bin/azurite: run `make demo` once)")
    proc = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "All example verdicts as expected" in out
    # the verdicts a reader comes for, with the exact fixes
    assert "iptables verdict: DROP" in out
    assert "iptables-legacy -D NODE-HARDENING 5" in out
    assert "ufw allow from 10.224.0.4 to any port 10250 proto tcp" in out
    assert "--priority 199" in out
    assert "10.224.0.5:10250 timeout" in out
    # the scan of the demo estate on the ARM simulator, recorded on Azurite
    assert "NSG denies TCP 10250" in out  # cause 1 between pools
    assert "NSG denies TCP 443" in out  # our egress extension of cause 4
    assert "SNAT ports of the outbound load balancer exhausted" in out
    assert "open finding(s) recorded in Table Storage" in out
    assert "private cluster: the API server is in the VNet" in out
    # the node probes on namespace nodes (as root; otherwise the demo says what it skipped)
    if netns_unavailable_reason():
        assert "skipped: the node lab needs root" in out
    else:
        assert "UFW drops TCP 10250" in out  # cause 2, named by the deep probe
        assert "iptables rejects TCP 10250" in out  # cause 3: the REJECT-all after ACCEPTs
        assert "OOM-killed" in out  # cause 6
        assert "TLS-inspecting firewall" in out  # cause 4 (ours)
        assert "run commands this cycle: " in out
        assert "--- aks-lab-healthy (fault: none)\n  no finding" in out
