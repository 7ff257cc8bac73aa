"""`make demo`: run `tunnelwatch analyze` over the bundled example captures and print the verdicts.

Everything runs locally on the files in examples/inputs/; no Azure account is needed. Each step
prints the exact command, so you can run it yourself (add --json for the machine-readable form).
The demo fails if a verdict differs from what the example was built to show.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from examples import demo_nodes, demo_scan

INPUTS = Path(__file__).resolve().parent / "inputs"
EXIT_MEANING = {
    0: "allowed / no problem",
    1: "blocked / problem",
    2: "bad input",
    3: "inconclusive",
}


@dataclass(frozen=True)
class Step:
    title: str
    args: tuple[str, ...]
    expect: int
    label: str = ""  # what the summary shows; default: the input file

    @property
    def shown_input(self) -> str:
        return self.label or self.args[1]


NODE = "10.224.0.5"  # the node being checked
PEER = "10.224.0.4"  # another node of the cluster (where the tunnel agent runs)

STEPS = (
    Step(
        "Cause 3 - a healthy AKS node: the standard kube-proxy rules do not block 10250",
        ("iptables", "aks-node-healthy.iptables-save", "--src", PEER, "--dst", NODE),
        0,
    ),
    Step(
        "Cause 3 - the same node after a hardening DaemonSet added its own chain",
        ("iptables", "aks-node-blocked.iptables-save", "--src", PEER, "--dst", NODE),
        1,
    ),
    Step(
        "Cause 2 - UFW active on a node, default deny, no allow for 10250",
        ("ufw", "node-ufw-status-verbose.txt", "--src", PEER),
        1,
    ),
    Step(
        "Cause 1 - subnet NSG denies 10250 at priority 200 before the allow at 300",
        (
            "nsg",
            "--direction",
            "inbound",
            "--src",
            PEER,
            "--dst",
            NODE,
            "--dport",
            "10250",
            "--subnet-nsg",
            "subnet-nsg.json",
            "--nic-nsg",
            "nic-nsg.json",
            "--vnet-prefix",
            "10.224.0.0/12",
            "--fix-source",
            "10.224.0.0/16",
        ),
        1,
        label="subnet-nsg.json + nic-nsg.json",
    ),
    Step("The article's check: nc -v -w 2 <node-ip> 10250, from a node", ("nc", "probe-nc.txt"), 1),
    Step(
        "A run-command result split into stdout and stderr",
        ("runcommand", "runcommand-result.json"),
        0,
    ),
    Step(
        "Cause 5 - SNAT metrics of the outbound load balancer",
        ("snat", "lb-snat-metrics.json"),
        1,
    ),
)


def main() -> int:
    exe = Path(sys.executable).with_name("tunnelwatch")
    failures = []
    rows = []
    for n, step in enumerate(STEPS, 1):
        argv = [str(exe), "analyze", *step.args]
        shown = "tunnelwatch analyze " + shlex.join(step.args)
        print(f"\n=== {n}. {step.title}\n$ {shown}", flush=True)
        proc = subprocess.run(argv, cwd=INPUTS, capture_output=True, text=True, timeout=120)
        sys.stdout.write(proc.stdout)
        if proc.stderr:
            sys.stdout.write(proc.stderr)
        meaning = EXIT_MEANING.get(proc.returncode, "unexpected")
        print(f"(exit {proc.returncode}: {meaning})")
        rows.append((step.args[0], step.shown_input, proc.returncode, meaning))
        if proc.returncode != step.expect:
            failures.append(f"step {n} ({shown}): exit {proc.returncode}, expected {step.expect}")
    print(
        "\n=== Issue 3 - the subscription scan: Azurite and the ARM simulator with a demo estate\n"
        "(a healthy cluster, an NSG deny between pools, failed SNAT connections, a private\n"
        "cluster, a NIC NSG denying egress 443, a VNet-integrated API server, a NAT gateway)",
        flush=True,
    )
    scan_code, scan_summary = demo_scan.run(exe)
    print(f"(exit {scan_code}: {EXIT_MEANING.get(scan_code, 'unexpected')})")
    rows.append(("scan", scan_summary, scan_code, EXIT_MEANING.get(scan_code, "unexpected")))
    if scan_code not in (1,) and not scan_summary.startswith("skipped"):
        failures.append(f"scan: exit {scan_code}, expected 1 (the demo estate has problems)")
    print(
        "\n=== Issue 4 - node probes: the real probe script on namespace nodes, through run\n"
        "command on the ARM simulator, the probe queue on Azurite and the probe worker\n"
        "(one fault per cluster: ufw, iptables DROP/REJECT, policy DROP, REJECT-all, a block\n"
        "in the nft backend only, egress 443 blocked, TLS inspection, an OOM-killed agent)",
        flush=True,
    )
    node_code, node_summary = demo_nodes.run()
    rows.append(("probes", node_summary, node_code, EXIT_MEANING.get(node_code, "unexpected")))
    if node_code != 1 and not node_summary.startswith("skipped"):
        failures.append(f"node probes: exit {node_code}, expected 1 (the lab has faults)")
    print("\n=== Summary")
    for kind, first, code, meaning in rows:
        print(f"  {kind:<11} {first:<34} exit {code}  {meaning}")
    if failures:
        print("\nDEMO FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("\nAll example verdicts as expected. Add --json to any command for the full document.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
