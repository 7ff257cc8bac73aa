"""The ruleset generator of the differential test: the kernel takes what it writes.

Every generated ruleset must load with iptables-nft-restore and iptables-legacy-restore; the
generator must be deterministic per seed, keep the jump graph acyclic, keep OUTPUT harmless
to the node's replies, and actually produce every construct the brief asks for.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from ipaddress import IPv4Address, IPv4Network

import pytest

from tests.conftest import require_tools
from tests.lab.netns import Lab
from tests.lab.rulegen import PROBE_PORT, Universe, generate

pytestmark = pytest.mark.netns

UNI = Universe(
    IPv4Network("10.250.0.0/24"),
    (IPv4Address("10.250.0.40"), IPv4Address("10.250.0.160")),
    tuple(IPv4Address(a) for a in ("10.250.0.21", "10.250.0.77", "10.250.0.130")),
)
SEED = 20240611
# Replies leave to the peer's addresses and ports 20000-31999: a safe OUTPUT rule names UDP,
# NEW connections, service ports, an address no probe uses, or only logs / calls kube chains.
SAFE_OUTPUT = re.compile(
    r"-p udp|-d (?!10\.250\.0\.(21|77|130)/)|--ctstate NEW|--dports? (443|9000)\b|9000,443|"
    r"-j (LOG|KUBE-)"
)

EXPECTED_FEATURES = {
    "policy-accept", "policy-drop", "jump", "goto", "return", "accept", "drop",
    "reject:tcp-reset", "reject:icmp-port-unreachable", "reject:icmp-host-prohibited",
    "reject:icmp-admin-prohibited", "reject-default", "negation", "src", "dst",
    "port-range", "multiport", "sport", "comment", "log", "conntrack", "state", "addrtype",
    "iface:-i eth0", "iface:-i eth+", "iface:-i lo", "iface:! -i eth0", "raw", "mangle",
    "set-xmark", "set-mark", "mark-match", "raw-drop", "mangle-drop", "forward-rule",
    "output-rule", "aks",
}  # fmt: skip


def _sample(n: int, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    return [generate(rng, UNI).text for _ in range(n)]


def _jumps(text: str) -> dict[tuple[str, str], set[str]]:
    """(table, chain) -> chains it jumps or goes to."""
    graph: dict[tuple[str, str], set[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        m = re.match(r"-A (\S+) .*-[jg] (\S+)", line)
        if m:
            graph.setdefault((table, m.group(1)), set()).add(m.group(2))
    return graph


def test_generator_is_deterministic_per_seed() -> None:
    assert _sample(20) == _sample(20)
    assert _sample(5, SEED) != _sample(5, SEED + 1)


def test_jump_graph_is_acyclic_and_output_is_harmless() -> None:
    for text in _sample(200):
        graph = _jumps(text)
        # Depth-first search for a cycle, bounded by the number of chains.
        for start in graph:
            stack, seen = [start[1]], set()
            while stack:
                chain = stack.pop()
                for callee in graph.get((start[0], chain), ()):
                    assert callee != start[1], f"cycle through {start}:\n{text}"
                    if callee not in seen:
                        seen.add(callee)
                        stack.append(callee)
        tables = dict(re.findall(r"^\*(\w+)\n(.*?)^COMMIT", text, re.M | re.S))
        assert re.search(r"^:OUTPUT ACCEPT", tables["filter"], re.M)
        for name, body in tables.items():
            for line in body.splitlines():
                if not line.startswith("-A OUTPUT"):
                    continue
                assert name == "filter", line
                assert SAFE_OUTPUT.search(line), f"OUTPUT rule may hit the replies: {line}"


def test_generator_covers_every_construct() -> None:
    rng = random.Random(SEED)
    seen: Counter[str] = Counter()
    ports: Counter[int] = Counter()
    for _ in range(300):
        gen = generate(rng, UNI)
        seen.update(gen.features)
        assert gen.probe_ports[0] == PROBE_PORT
        ports.update(gen.probe_ports[1:])
    missing = EXPECTED_FEATURES - set(seen)
    assert not missing, f"never generated: {sorted(missing)}"
    assert len(ports) >= 4


@pytest.mark.parametrize("restore", ["iptables-nft-restore", "iptables-legacy-restore"])
def test_kernel_accepts_every_generated_ruleset(netns_ok: None, restore: str) -> None:
    require_tools(restore)
    refused = []
    with Lab() as lab:
        node = lab.add_host(["10.250.0.40", "10.250.0.160"])
        for i, text in enumerate(_sample(120)):
            proc = node.exec([restore], input=text, check=False)
            if proc.returncode != 0:
                refused.append(f"ruleset {i} (seed {SEED}): {proc.stderr.strip()}\n{text}")
    assert not refused, "\n".join(refused[:5])
