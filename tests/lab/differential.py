"""The harness both kernel differential tests share (the iptables and the nftables engine).

A campaign generates random rulesets from a seed, loads each into one of several node
namespaces, connects to it from a peer namespace with real TCP flows (a chosen source port
each) and asks the engine the same question. This module owns what does not depend on the
engine: the campaign's settings from the environment (`<ENV>_SEED`, a fixed default or
`random`; `<ENV>_COUNT`; `<ENV>_ONLY=i,j,...`), the node namespaces, probing a batch of
cases, the kernel answer each engine verdict must match, the slow second look at a disputed
"timeout", and the report a failing assertion prints (with a replay line).

Kernel answers map to verdicts: open = accept, timeout = drop, refused/unreachable = reject,
half-open (the SYN passed, the handshake's ACK did not) = blocked.
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Generic, Protocol, Self, TypeVar

from tests.lab.flow_probe import probe_flows
from tests.lab.netns import Host, Lab

__all__ = [
    "KERNEL_AGREES",
    "KERNEL_VERDICT",
    "PROBE_TIMEOUT",
    "RECHECK_TIMEOUT",
    "Campaign",
    "Flow",
    "Problem",
    "SourcePorts",
    "assert_all_loaded",
    "assert_engine_agrees",
    "blocked_both",
    "flow_packet",
    "node_lab",
    "outcome",
    "probe_batches",
    "report",
    "reprobe",
]

PROBE_TIMEOUT = 0.5  # first pass; a disputed "timeout" is re-probed with RECHECK_TIMEOUT
RECHECK_TIMEOUT = 3.0
# "half-open": the SYN passed but a rule dropped or rejected the rest of the handshake, so the
# kubelet's TLS connection hangs; the engine judges the handshake too and must say blocked.
KERNEL_VERDICT = {
    "open": "accept",
    "half-open": "drop",
    "timeout": "drop",
    "refused": "reject",
    "unreachable": "reject",
}
# What the engine may answer for each kernel outcome (beyond "unknown", counted separately).
KERNEL_AGREES = {
    "open": {"accept"},
    "half-open": {"drop", "reject"},
    "timeout": {"drop"},
    "refused": {"reject"},
    "unreachable": {"reject"},
}


@dataclass(frozen=True)
class Flow:
    src: str
    sport: int
    dst: str
    dport: int

    def probe(self) -> dict[str, object]:
        return {"src": self.src, "sport": self.sport, "dst": self.dst, "port": self.dport}

    def __str__(self) -> str:
        return f"{self.src}:{self.sport} -> {self.dst}:{self.dport}/tcp"


def flow_packet(flow: Flow) -> Any:
    """The engines' Packet for a flow (both engines take the same Packet)."""
    from shared.analysis.iptables.model import Packet

    return Packet(
        src=IPv4Address(flow.src),
        dst=IPv4Address(flow.dst),
        dport=flow.dport,
        proto="tcp",
        in_iface="eth0",
        sport=flow.sport,
    )


class SourcePorts:
    """Fresh source ports per source address, so no 4-tuple is ever reused in a run."""

    def __init__(self, peers: Sequence[str], span: tuple[int, int]) -> None:
        self._span = span
        self._next = {p: itertools.count(span[0]) for p in peers}

    def next(self, src: str) -> int:
        lo, hi = self._span
        return lo + (next(self._next[src]) - lo) % (hi - lo + 1)

    def fresh(self, flow: Flow) -> Flow:
        return Flow(flow.src, self.next(flow.src), flow.dst, flow.dport)


class CaseLike(Protocol):
    index: int
    node: int
    flows: list[Flow]
    kernel: list[str]


C = TypeVar("C", bound=CaseLike)


@dataclass
class Problem(Generic[C]):
    case: C
    what: str  # one line: flow, kernel answer, engine verdict and decided_by
    flow: Flow | None = None  # set for a verdict disagreement (what a shrinker replays)
    label: str = ""  # which text the engine was given, when there are several


@dataclass
class Campaign(Generic[C]):
    """One run: its settings, its cases and what the comparisons came to."""

    env: str  # the prefix of its environment variables: TW_DIFF, TW_NFT_DIFF
    seed: int
    count: int
    only: set[int] | None = None
    cases: list[C] = field(default_factory=list)
    comparisons: Counter[str] = field(default_factory=Counter)  # outcome -> count
    disagreements: list[Problem[C]] = field(default_factory=list)
    faults: list[Problem[C]] = field(default_factory=list)  # lab or engine failures
    rechecked: int = 0
    seconds: float = 0.0

    @classmethod
    def from_env(cls, env: str, default_seed: int, default_count: int) -> Self:
        # A fixed default keeps CI deterministic (a landing never fails by luck); explore with
        # <ENV>_SEED=random, which draws a fresh seed and prints it for replay.
        given = os.environ.get(f"{env}_SEED", "") or str(default_seed)
        seed = random.SystemRandom().randrange(2**32) if given == "random" else int(given)
        count = int(os.environ.get(f"{env}_COUNT") or default_count)
        only_env = os.environ.get(f"{env}_ONLY", "")
        only = {int(x) for x in only_env.split(",") if x.strip()} or None
        return cls(env, seed, count, only)

    def indices(self) -> list[int]:
        return [i for i in range(self.count) if self.only is None or i in self.only]

    def replay(self) -> str:
        return f"replay: {self.env}_SEED={self.seed} {self.env}_COUNT={self.count}"

    def summary(self, name: str, extra: str) -> str:
        """The line the fixture prints: what ran and what it came to."""
        return (
            f"\n{name} differential: seed {self.seed}, {len(self.cases)} rulesets, "
            f"{sum(len(c.flows) for c in self.cases)} flows, comparisons {dict(self.comparisons)}, "
            f"kernel answers {dict(Counter(k for c in self.cases for k in c.kernel))}, "
            f"re-probed {self.rechecked}, {extra}, {self.seconds:.1f}s"
        )


@contextmanager
def node_lab(
    subnet: str, nodes: Sequence[Sequence[str]], peers: Sequence[str], ports: Sequence[int]
) -> Iterator[tuple[list[Host], Host]]:
    """Node namespaces (addresses each) listening on `ports`, and one peer to connect from."""
    with Lab(subnet) as lab:
        hosts = [lab.add_host(list(addrs)) for addrs in nodes]
        peer = lab.add_host(list(peers))
        for host in hosts:
            # REJECT's ICMP errors are rate limited per destination; the probes need them all.
            host.exec(["sysctl", "-q", "-w", "net.ipv4.icmp_ratemask=0"])
            host.listen(list(ports))
        yield hosts, peer


def probe_batches(
    campaign: Campaign[C],
    size: int,
    plan: Callable[[int, int, int], C],
    prepare: Callable[[C], str],
    peer: Host,
    sports: SourcePorts,
) -> Iterator[list[C]]:
    """Per batch of `size` cases, one per node: plans them (`plan(seed, index, node)`), gives each
    flow a fresh source port, loads them in parallel (`prepare(case)` returns "" or why it
    failed, recorded as a fault), probes every flow of the loaded ones at once and yields
    those with `kernel` filled in. Every planned case ends up in `campaign.cases`."""
    indices = campaign.indices()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(indices), size):
            batch = indices[start : start + size]
            cases = [plan(campaign.seed, idx, k) for k, idx in enumerate(batch)]
            for case in cases:
                case.flows = [sports.fresh(f) for f in case.flows]
            ready = []
            for case, err in zip(cases, pool.map(prepare, cases), strict=True):
                if err:
                    campaign.faults.append(Problem(case, err))
                else:
                    ready.append(case)
            probes = [f.probe() for c in ready for f in c.flows]
            answers = iter(probe_flows(peer, probes, timeout=PROBE_TIMEOUT))
            for case in ready:
                case.kernel = [next(answers) for _ in case.flows]
            yield ready
            campaign.cases += cases


def reprobe(
    campaign: Campaign[Any], peer: Host, sports: SourcePorts, flows: list[Flow]
) -> list[tuple[Flow, str]]:
    """A second, slow look at disputed flows, each from a fresh source port."""
    fresh = [sports.fresh(f) for f in flows]
    answers = probe_flows(peer, [f.probe() for f in fresh], timeout=RECHECK_TIMEOUT)
    campaign.rechecked += len(fresh)
    return list(zip(fresh, answers, strict=True))


def outcome(kernel: str, got: str) -> str:
    """How an engine verdict compares with a kernel answer: agree, unknown, disagree, or
    disputed (a kernel timeout the engine contests: a slow machine can fake a drop, so the
    flow is probed again)."""
    if got in KERNEL_AGREES[kernel]:
        return "agree"
    if got == "unknown":
        return "unknown"
    if kernel == "timeout":
        return "disputed"
    return "disagree"


def blocked_both(kernel: str, got: str) -> bool:
    """Kernel and engine both block, by a different kind (DROP against REJECT)."""
    return got in ("drop", "reject") and KERNEL_VERDICT[kernel] != "accept"


def report(
    campaign: Campaign[C],
    problems: list[Problem[C]],
    title: str,
    details: Callable[[C, bool], list[str]],
    header: Callable[[C], str] = lambda case: f"node {case.node}",
) -> str:
    """Problems grouped by ruleset, each with its replay variables; `details(case, full)`
    adds what to show of the case (`full` for the first 25 rulesets: the ruleset texts)."""
    env, seed = campaign.env, campaign.seed
    lines = [f"{title} ({len(problems)}); seed {seed}; {campaign.replay()}"]
    by_case: dict[int, list[Problem[C]]] = {}
    for p in problems:
        by_case.setdefault(p.case.index, []).append(p)
    for shown, (idx, ps) in enumerate(sorted(by_case.items())):
        case = ps[0].case
        lines.append(f"\n== ruleset {idx} ({header(case)}; {env}_ONLY={idx} {env}_SEED={seed})")
        lines += [f"  {p.what}" for p in ps]
        lines += details(case, shown < 25)
    return "\n".join(lines)


def assert_all_loaded(
    campaign: Campaign[C],
    details: Callable[[C, bool], list[str]],
    header: Callable[[C], str] = lambda case: f"node {case.node}",
) -> None:
    """Every ruleset ran: loaded, read back, probed and parsed without a fault."""
    if not campaign.cases:
        raise AssertionError(f"no ruleset ran; {campaign.replay()}")
    if campaign.faults:
        title = "lab or engine faults"
        raise AssertionError(report(campaign, campaign.faults, title, details, header))


def assert_engine_agrees(
    campaign: Campaign[C],
    details: Callable[[C, bool], list[str]],
    max_unknown: float,
    full_at: int,
    header: Callable[[C], str] = lambda case: f"node {case.node}",
) -> None:
    """No disagreement; "unknown" under `max_unknown` of the comparisons (passing by saying
    "unknown" is not passing); and a full campaign (`full_at` rulesets or more, no ONLY)
    must have seen every answer the kernel can give, or it proves little."""
    if campaign.disagreements:
        title = "engine and kernel disagree"
        raise AssertionError(report(campaign, campaign.disagreements, title, details, header))
    c = campaign.comparisons
    total = sum(c.values())
    if total == 0:
        raise AssertionError(f"no comparison was made; {campaign.replay()}")
    if c["unknown"] >= max_unknown * total:
        raise AssertionError(f"unknown {c['unknown']} of {total}; {campaign.replay()}")
    seen = Counter(
        KERNEL_VERDICT[k] for case in campaign.cases for k in case.kernel if k in KERNEL_VERDICT
    )
    full = campaign.count >= full_at and campaign.only is None
    if full and not all(seen[v] > 0 for v in ("accept", "drop", "reject")):
        raise AssertionError(f"not every kernel answer was seen: {dict(seen)}")
