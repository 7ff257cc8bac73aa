"""The nftables engine against the real kernel: random native rulesets, real TCP connects.

A campaign generates TW_NFT_DIFF_COUNT rulesets (default 100) from TW_NFT_DIFF_SEED (a fixed
default; `random` draws one; printed with a replay line in every failure), loads each with
`nft -f` into one of ten node namespaces, connects from a peer namespace (several sources,
10250 and another port, a fixed source port per flow) and asks the engine the same question
from `nft -j list ruleset` read back from the namespace (what the probe sends). Kernel answers
map to verdicts as in the shared harness (tests/lab/differential.py): open = accept, timeout =
drop, refused/unreachable = reject, half-open (the SYN passed, the handshake's ACK did not) =
blocked. A "timeout" the engine disputes is probed again with a long timeout before it counts.

What the rulesets hold: 1-3 tables of family ip or inet (sometimes an ip6 table, which must
not matter to IPv4), base chains on prerouting and input with random distinct priorities
(some below conntrack's -200, some of type nat) and policies, regular chains reached by jump
and goto (acyclic), return, saddr/daddr addresses, prefixes and anonymous and named sets, tcp
dport values, ranges and sets, th dport, ct state (also before conntrack), iifname with
wildcards, fib daddr type local, tcp flags, marks set in prerouting and matched later,
notrack, concatenated and plain verdict maps, counters and comments; accept, drop, reject.

Replay: TW_NFT_DIFF_SEED=<seed> reruns a campaign; TW_NFT_DIFF_ONLY=<i,j,...> only those.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import require_tools
from tests.lab import differential as diff
from tests.lab.differential import KERNEL_VERDICT, Flow, Problem, SourcePorts
from tests.lab.netns import Host

pytestmark = pytest.mark.netns

SUBNET = "10.251.0.0/24"
PEERS = ("10.251.0.21", "10.251.0.77", "10.251.0.130")
NODES = 10
PORTS = (10250, 22, 8080)
SPORTS = (20000, 31999)  # below the ephemeral range, so `tcp sport` rules are decidable
DEFAULT_SEED = 20240611  # a campaign that passed; change it deliberately, not by chance


def _node_addrs(i: int) -> tuple[str, str]:
    return (f"10.251.0.{40 + i}", f"10.251.0.{160 + i}")


# ---- the generator ------------------------------------------------------------------------

_PRE_PRIOS = (-300, -250, -160, -150, -120, -50, 0, 10, 150)
_IN_PRIOS = (-150, -10, 0, 10, 50, 150, 200)
_TABLE_NAMES = ("fw", "node_guard", "filter", "site-policy", "hardening")


@dataclass
class _Chain:
    name: str
    hook: str  # the hook whose packets reach it (regular chains inherit it)
    base: str = ""  # "type filter hook input priority 0; policy accept;" for base chains
    nat: bool = False
    rules: list[str] = field(default_factory=list)


class _Gen:
    def __init__(self, rng: random.Random, node: tuple[str, str]) -> None:
        self.rng = rng
        self.node = node
        self.used: dict[str, set[int]] = {"prerouting": set(), "input": set()}
        self.marks_set = False

    def addr(self, pool: tuple[str, ...]) -> str:
        r = self.rng
        a = r.choice(pool)
        roll = r.random()
        if roll < 0.6:
            return a
        if roll < 0.8:
            return f"{a.rsplit('.', 1)[0]}.{int(a.rsplit('.', 1)[1]) & ~63}/26"
        return r.choice(("10.251.0.0/24", "10.251.0.0/25", "10.251.0.128/25", "192.0.2.0/24"))

    def cond(self, family: str, sets: list[str], hook: str) -> str:
        r = self.rng
        peers, ports = PEERS, PORTS
        options: list[str] = [
            f"ip saddr {self.addr(peers)}",
            f"ip saddr != {self.addr(peers)}",
            "ip saddr { " + ", ".join(r.sample(peers, 2)) + " }",
            f"ip daddr {self.addr(self.node)}",
            f"tcp dport {r.choice(ports)}",
            f"tcp dport != {r.choice(ports)}",
            "tcp dport { " + ", ".join(map(str, r.sample(ports, 2))) + " }",
            f"tcp dport {r.choice(('10000-10300', '20-8080', '8000-10249', '10250-10251'))}",
            f"meta l4proto tcp th dport {r.choice(ports)}",
            f"tcp sport {r.choice(('20000-25999', '26000-31999', '1-1023'))}",
            r.choice(
                (
                    "ct state new",
                    "ct state established,related",
                    "ct state invalid",
                    "ct state != established",
                    "ct state { new, untracked }",
                    "ct state untracked",
                )
            ),
            r.choice(('iifname "eth0"', 'iifname "eth*"', 'iifname "lo"', 'iifname != "lo"')),
            "fib daddr type local",
            r.choice(("tcp flags syn", "tcp flags & (syn|ack) == syn", "tcp flags ack")),
        ]
        if sets:
            options.append(f"ip saddr @{r.choice(sets)}")
        if self.marks_set and r.random() < 0.5:
            options.append(r.choice(("meta mark 0x10", "meta mark & 0x10 == 0x10", "meta mark 0")))
        return r.choice(options)

    def action(self, chain: _Chain, subs: list[_Chain], family: str) -> str:
        r = self.rng
        weights: list[tuple[str, float]] = [("accept", 3), ("drop", 3), ("counter", 1)]
        if chain.hook == "input" and not chain.nat:
            rej = (
                "reject",
                "reject with tcp reset",
                "reject with icmpx type admin-prohibited"
                if family == "inet"
                else "reject with icmp type host-prohibited",
            )
            weights.append((r.choice(rej), 3))
        if subs:
            weights.append((f"jump {r.choice(subs).name}", 2))
            weights.append((f"goto {r.choice(subs).name}", 1))
        if not chain.base:
            weights.append(("return", 1))
        if chain.hook == "prerouting" and not chain.nat:
            weights.append(("meta mark set 0x10", 1))
        if not chain.nat:
            weights.append(("VMAP", 1.5))
        names = [w[0] for w in weights]
        pick = r.choices(names, [w[1] for w in weights])[0]
        if pick == "meta mark set 0x10":
            self.marks_set = True
        if pick == "VMAP":
            verdicts = ["accept", "drop"]  # reject is not a verdict a map may hold
            if subs:
                verdicts.append(f"jump {r.choice(subs).name}")
            a, b = r.sample(PEERS, 2)
            if r.random() < 0.5:
                return (
                    f"ip saddr . tcp dport vmap {{ {a} . {r.choice(PORTS)} : {r.choice(verdicts)},"
                    f" {b} . {r.choice(PORTS)} : {r.choice(verdicts)} }}"
                )
            return f"tcp dport vmap {{ 10250 : {r.choice(verdicts)}, 22 : {r.choice(verdicts)} }}"
        return pick

    def chain_rules(self, chain: _Chain, subs: list[_Chain], family: str, sets: list[str]) -> None:
        r = self.rng
        for _ in range(r.randint(0, 5)):
            conds = [
                self.cond(family, sets, chain.hook) for _ in range(r.choice((0, 1, 1, 2, 2, 3)))
            ]
            extra = ["counter"] if r.random() < 0.3 else []
            comment = (
                [f'comment "{r.choice(("kubelet", "site rule", "x y"))}"']
                if r.random() < 0.2
                else []
            )
            chain.rules.append(
                " ".join([*conds, *extra, self.action(chain, subs, family), *comment])
            )

    def table(self, family: str, name: str) -> str:
        r = self.rng
        sets: list[str] = []
        out = [f"table {family} {name} {{"]
        if r.random() < 0.5:
            sets.append("allowed")
            # Interval sets refuse overlapping elements: one prefix, or distinct addresses.
            elems = (
                self.addr(PEERS)
                if r.random() < 0.4
                else ", ".join(r.sample(PEERS, r.randint(1, 3)))
            )
            out.append(
                f"  set allowed {{ type ipv4_addr; flags interval; elements = {{ {elems} }} }}"
            )
        chains: list[_Chain] = []
        for k in range(r.randint(1, 2)):
            hook = r.choice(("input", "input", "prerouting"))
            nat = r.random() < 0.15
            free = [
                p
                for p in (_IN_PRIOS if hook == "input" else _PRE_PRIOS)
                if p not in self.used[hook] and (p > -200 or not nat)  # the kernel's rule
            ]
            if not free:
                continue
            prio = r.choice(free)
            self.used[hook].add(prio)
            policy = "drop" if r.random() < 0.25 and not nat else "accept"
            typ = "nat" if nat else "filter"
            base = _Chain(
                f"{hook}{k}", hook, f"type {typ} hook {hook} priority {prio}; policy {policy};", nat
            )
            subs = [_Chain(f"{hook}{k}_sub{j}", hook, nat=nat) for j in range(r.randint(0, 2))]
            if hook == "prerouting" and not nat and prio < -200 and r.random() < 0.15:
                base.rules.append(f"ip saddr {r.choice(PEERS)} notrack")
            self.chain_rules(base, subs, family, sets)
            for j, sub in enumerate(subs):
                self.chain_rules(sub, subs[j + 1 :], family, sets)
            chains += [base, *subs]
        for c in chains:
            out.append(f"  chain {c.name} {{")
            if c.base:
                out.append(f"    {c.base}")
            out += [f"    {rule}" for rule in c.rules]
            out.append("  }")
        out.append("}")
        return "\n".join(out) + "\n"

    def ruleset(self) -> str:
        r = self.rng
        names = r.sample(_TABLE_NAMES, r.randint(1, 3))
        text = "flush ruleset\n" + "".join(self.table(r.choice(("ip", "inet")), n) for n in names)
        if r.random() < 0.15:  # IPv6 only: must not change any IPv4 verdict
            text += "table ip6 v6only {\n  chain input { type filter hook input priority 0; policy drop; }\n}\n"
        return text


# ---- the campaign -------------------------------------------------------------------------


@dataclass
class Case:
    index: int
    node: int
    text: str
    flows: list[Flow] = field(default_factory=list)
    kernel: list[str] = field(default_factory=list)
    readback: str = ""


@dataclass
class Campaign(diff.Campaign[Case]):
    unknown_reasons: Counter[str] = field(default_factory=Counter)


def _plan(seed: int, index: int, node: int) -> Case:
    rng = random.Random(seed * 1_000_003 + index)
    addrs = _node_addrs(node)
    case = Case(index, node, _Gen(rng, addrs).ruleset())
    other = rng.choice(PORTS[1:])
    for src in rng.sample(PEERS, 2):
        for port in (10250, other):
            case.flows.append(Flow(src, 0, rng.choice(addrs), port))
    return case


def _prepare(host: Host, case: Case) -> str:
    try:
        proc = host.exec(["nft", "-f", "-"], input=case.text, check=False)
        if proc.returncode != 0:
            return f"nft -f refused the ruleset: {proc.stderr.strip()}"
        case.readback = str(host.exec(["nft", "-j", "list", "ruleset"]).stdout)
    except Exception as exc:  # reported with the ruleset; the campaign goes on
        return f"loading failed: {exc!r}"
    return ""


def _verdict(case: Case, flow: Flow, campaign: Campaign) -> Any | None:
    import shared.analysis.nftables as engine

    try:
        rs = engine.parse_ruleset(case.readback, f"case{case.index}")
        return engine.evaluate_input(rs, diff.flow_packet(flow))
    except Exception as exc:
        campaign.faults.append(Problem(case, f"engine raised {exc!r} for {flow}"))
        return None


def _judge(campaign: Campaign, case: Case, fi: int, kernel: str, v: Any) -> bool:
    """Records the comparison; False when a kernel "timeout" disputes the engine (re-probe)."""
    got = v.verdict.value
    result = diff.outcome(kernel, got)
    if result != "agree" and diff.blocked_both(kernel, got) and v.other_blocks:
        # Blocked on every path, by a DROP on some and a REJECT on others (an undecided
        # match in between, e.g. an unknown mark): the engine reports a block, not which.
        result = "blocked, kind undecided"
    if result == "disputed":
        return False
    campaign.comparisons[result] += 1
    if result == "unknown":
        campaign.unknown_reasons[v.reason[:80]] += 1
    elif result == "disagree":
        by = None if v.decided_by is None else v.decided_by.to_json()
        campaign.disagreements.append(
            Problem(case, f"{case.flows[fi]}: kernel {kernel}, engine {got}, decided_by={by}")
        )
    return True


def _compare(campaign: Campaign, peer: Host, sports: SourcePorts, cases: list[Case]) -> None:
    disputed: list[tuple[Case, int]] = []
    for case in cases:
        for fi, flow in enumerate(case.flows):
            kernel = case.kernel[fi]
            v = _verdict(case, flow, campaign)
            if v is None:
                continue
            if kernel not in KERNEL_VERDICT:
                campaign.faults.append(Problem(case, f"probe {flow} failed: {kernel}"))
            elif not _judge(campaign, case, fi, kernel, v):
                disputed.append((case, fi))
    if not disputed:
        return
    again = diff.reprobe(campaign, peer, sports, [case.flows[fi] for case, fi in disputed])
    for (case, fi), (flow, kernel) in zip(disputed, again, strict=True):
        case.flows[fi] = flow
        v = _verdict(case, flow, campaign)  # the new source port
        if v is None or kernel not in KERNEL_VERDICT:
            campaign.faults.append(Problem(case, f"re-probe {flow}: {kernel}"))
            continue
        case.kernel[fi] = kernel
        if not _judge(campaign, case, fi, kernel, v):
            campaign.comparisons["disagree"] += 1
            campaign.disagreements.append(
                Problem(case, f"{flow}: kernel timeout twice, engine {v.verdict.value}")
            )


def _run(campaign: Campaign) -> None:
    sports = SourcePorts(PEERS, SPORTS)
    started = time.monotonic()
    addrs = [_node_addrs(i) for i in range(NODES)]
    with diff.node_lab(SUBNET, addrs, PEERS, PORTS) as (nodes, peer):
        batches = diff.probe_batches(
            campaign,
            NODES,
            _plan,
            lambda case: _prepare(nodes[case.node], case),
            peer,
            sports,
        )
        for ready in batches:
            _compare(campaign, peer, sports, ready)
    campaign.seconds = time.monotonic() - started


def _details(case: Case, full: bool) -> list[str]:
    return [f"-- ruleset {case.index}:\n{case.text}"] if full else []


@pytest.fixture(scope="module")
def campaign(netns_ok: None) -> Iterator[Campaign]:
    require_tools("nft", "sysctl")
    # A fixed default keeps CI deterministic; TW_NFT_DIFF_SEED=random explores (and prints).
    result = Campaign.from_env("TW_NFT_DIFF", DEFAULT_SEED, 100)
    _run(result)
    print(result.summary("nft", f"unknown reasons {dict(result.unknown_reasons)}"))
    yield result


def test_every_ruleset_loads_and_parses(campaign: Campaign) -> None:
    diff.assert_all_loaded(campaign, _details)


def test_engine_agrees_with_kernel(campaign: Campaign) -> None:
    diff.assert_engine_agrees(campaign, _details, max_unknown=0.15, full_at=50)
