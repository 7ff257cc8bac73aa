"""The probe's on-node reduction is sound: the real script on real rulesets, same verdicts.

Each case loads a random ruleset (tests/lab/rulegen.py, one or both backends) or a
kube-proxy-sized one (bench/gen_kubeproxy.py) into a fresh lab node, runs the REAL script in
deep mode the way run command does, and asks the engine about TCP 10250 from several sources
to each node address on two interfaces: the reduced dumps from the report must give the same
verdict, the same deciding rule (number included) and the same cause as the full
`iptables-save` of the same namespace, and must still load with `iptables-restore --test`.
Then: a 20,000-rule kube-proxy table fits the 4,096 bytes, and a table that cannot fit comes
back as "too large" (an inconclusive finding), never as part of a verdict.

Replay: TW_REDUCE_SEED=<seed> (a fixed default; `random` draws one, printed on failure),
TW_REDUCE_COUNT=<n> (60).
"""

from __future__ import annotations

import json
import os
import random
import secrets
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network

import pytest

from bench.gen_kubeproxy import generate as kubeproxy
from shared.analysis import iptables
from shared.analysis.findings import Kind
from shared.checks.node import node_findings
from shared.inventory.model import AgentPool, Cluster, Instance, PowerState
from shared.probe import script_text
from shared.probe.output import ProbeReport, parse_probe_output
from tests.conftest import require_tools
from tests.lab.netns import Host, Lab
from tests.lab.rulegen import LISTEN_PORTS, Universe, generate

pytestmark = pytest.mark.netns

SUBNET = IPv4Network("10.250.0.0/24")
PEERS = ("10.250.0.21", "10.250.0.77", "10.250.0.130")
SOURCES = (*PEERS, "10.250.0.99", "192.168.7.7")
DEFAULT_SEED = 4242  # a campaign that passed; change it deliberately, not by chance
SAVE = {"legacy": "iptables-legacy-save", "nft": "iptables-nft-save"}
RESTORE = {"legacy": "iptables-legacy-restore", "nft": "iptables-nft-restore"}
DEEP = "export TW_TARGETS= TW_API_HOST= TW_API_PORT=443 TW_MODE=deep\n"


def _run(node: Host, preamble: str = DEEP) -> tuple[str, ProbeReport]:
    proc = node.exec(["/bin/bash", "-c", preamble + script_text()], timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, parse_probe_output(proc.stdout, node.name)


def _verdicts(rulesets: list[iptables.IptablesRuleset], dsts: list[str]) -> list[str]:
    out = []
    for dst in dsts:
        for src in SOURCES:
            for iface in ("eth0", "eth1"):
                packet = iptables.Packet(
                    src=IPv4Address(src), dst=IPv4Address(dst), dport=10250, in_iface=iface
                )
                doc = iptables.evaluate_input(rulesets, packet).to_json()
                out.append(json.dumps([src, dst, iface, doc["verdict"], doc["decided_by"],
                                       doc["cause"]]))  # fmt: skip
    return out


def _parse(texts: list[str], label: str) -> list[iptables.IptablesRuleset]:
    """Every dump holding a table (as node.py reads them: a comment-only dump holds none)."""
    tabled = [t for t in texts if any(x[:1] not in ("", "#") for x in t.splitlines())]
    return [rs for t in tabled for rs in iptables.parse_rulesets(t, label)]


def _seed() -> int:
    given = os.environ.get("TW_REDUCE_SEED", "") or str(DEFAULT_SEED)
    return random.SystemRandom().randrange(2**32) if given == "random" else int(given)


def test_reduced_dumps_give_the_full_dumps_verdicts(netns_ok: None) -> None:
    require_tools(*RESTORE.values(), *SAVE.values(), "awk", "gzip", "base64")
    seed = _seed()
    count = int(os.environ.get("TW_REDUCE_COUNT") or 60)
    replay = f"replay: TW_REDUCE_SEED={seed} TW_REDUCE_COUNT={count}"
    problems: list[str] = []
    kept = dropped = 0
    answers: set[str] = set()
    with Lab(str(SUBNET)) as lab:
        for index in range(count):
            rng = random.Random(seed * 1_000_003 + index)
            addrs = (f"10.250.0.{40 + index % 50}", f"10.250.0.{160 + index % 50}")
            uni = Universe(
                SUBNET, tuple(map(IPv4Address, addrs)), tuple(map(IPv4Address, PEERS)),
                LISTEN_PORTS,
            )  # fmt: skip
            roll = rng.random()
            backends = ["nft"] if roll < 0.5 else ["legacy"] if roll < 0.8 else ["legacy", "nft"]
            if index % 5 == 4:
                texts = {b: kubeproxy(rng.choice((300, 1000, 3000)), index) for b in backends}
            else:
                texts = {b: generate(rng, uni).text for b in backends}
            node = lab.add_host(list(addrs))
            for b, text in texts.items():
                node.exec([RESTORE[b]], input=text)
            stdout, report = _run(node)
            where = f"case {index} ({'+'.join(backends)}); {replay}"
            if not report.complete or len(stdout.encode()) > 4096:
                problems.append(f"{where}: output incomplete or over 4,096 bytes")
                continue
            reduced = {r.backend: r for r in report.rulesets}
            if not set(backends) <= set(reduced) or report.errors:
                problems.append(f"{where}: rulesets {sorted(reduced)} reported, {report.errors}")
                continue
            full = [str(node.exec([SAVE[b]]).stdout) for b in reduced]
            for b in backends:
                kept += reduced[b].kept or 0
                dropped += reduced[b].dropped or 0
                test = node.exec([RESTORE[b], "--test"], input=reduced[b].text, check=False)
                if test.returncode != 0:
                    problems.append(f"{where}: {b} reduced dump refused: {test.stderr.strip()}")
            want = _verdicts(_parse(full, "full"), list(addrs))
            got = _verdicts(_parse([r.text for r in reduced.values()], "reduced"), list(addrs))
            answers |= {json.loads(x)[3] for x in want}
            problems += [
                f"{where}: full {w} reduced {g}" for w, g in zip(want, got, strict=True) if w != g
            ]
    assert not problems, "\n".join(problems[:20])
    assert dropped > kept > 0, (kept, dropped)  # the reduction did something, not everything
    assert {"accept", "drop", "reject"} <= answers, answers  # the campaign saw every answer


NODE_IP = "10.250.0.10"
VMSS = "aks-nodepool1-12345678-vmss"
INSTANCE = Instance("0", f"{VMSS}_0", f"{VMSS}000000", PowerState.RUNNING, (NODE_IP,))
POOL = AgentPool(
    "nodepool1", "System", "Linux", "VirtualMachineScaleSets", 1, None, None, "", None, None,
    vmss_name=VMSS, instances=(INSTANCE,),
)  # fmt: skip
CLUSTER = Cluster(
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a",
    "a", "s1", "rg", "westeurope", "MC_rg_a", "loadBalancer", False, False, None,
    "a.hcp.westeurope.azmk8s.io", None, "azure", "", None, "Unrestricted", "Running",
    pools=(POOL,),
)  # fmt: skip


def test_a_20k_rule_kube_proxy_table_fits_with_the_same_verdict(netns_ok: None) -> None:
    require_tools("iptables-nft-restore", "iptables-nft-save", "awk", "gzip", "nc")
    with Lab(str(SUBNET)) as lab:
        node = lab.add_host([NODE_IP])
        peer = lab.add_host([PEERS[0]])
        peer.listen([10250, 443])
        node.exec(["iptables-nft-restore"], input=kubeproxy(20_000, 5), timeout=120)
        full = str(node.exec(["iptables-nft-save"], timeout=60).stdout)
        preamble = (
            f"export TW_TARGETS={PEERS[0]},{PEERS[1]} TW_API_HOST={PEERS[0]} TW_API_PORT=443 "
            "TW_MODE=deep\n"
        )
        stdout, report = _run(node, preamble)
    assert len(stdout.encode()) <= 4096 and report.complete
    assert not [e for e in report.errors if e.too_large is not None]
    (nft,) = [r for r in report.rulesets if r.backend == "nft"]
    assert nft.dropped is not None and nft.kept is not None and nft.dropped > 19_000
    assert _verdicts(_parse([nft.text], "r"), [NODE_IP]) == _verdicts(
        _parse([full], "f"), [NODE_IP]
    )


def test_a_table_that_cannot_fit_is_reported_too_large_never_half_read(netns_ok: None) -> None:
    require_tools("iptables-nft-restore", "awk", "gzip")
    rng = random.Random(7)
    rules = [  # from ANY source: none can be dropped; random comments do not compress
        f"-A INPUT -s 10.{rng.randrange(256)}.{rng.randrange(256)}.{i % 250 + 1}/32 -p tcp -m tcp "
        f'--dport 10250 -m comment --comment "{secrets.token_hex(12)}" -j ACCEPT'
        for i in range(600)
    ]
    text = "*filter\n:INPUT DROP [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"
    with Lab(str(SUBNET)) as lab:
        node = lab.add_host([NODE_IP])
        node.exec(["iptables-nft-restore"], input=text)
        stdout, report = _run(node)
    assert len(stdout.encode()) <= 4096 and report.complete
    (err,) = [e for e in report.errors if e.too_large is not None]
    assert err.subject == "ruleset nft" and err.too_large > 4000
    assert not [r for r in report.rulesets if r.backend == "nft"]
    found = node_findings(
        report, cluster=CLUSTER, pool=POOL, instance=INSTANCE, peers={PEERS[0]: "peer"},
        source_subnet=None, now=datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip
    assert [f.kind for f in found if f.check.startswith("node.ruleset")] == [Kind.INCONCLUSIVE]
    assert any("did not fit" in f.title for f in found)
    assert not [f for f in found if f.kind is Kind.PROBLEM]
