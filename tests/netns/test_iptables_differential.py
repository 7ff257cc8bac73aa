"""The iptables engine against the real kernel: random rulesets, real SYNs, same answers.

A campaign (one per module run) generates TW_DIFF_COUNT rulesets (default 300) from
TW_DIFF_SEED (a fixed default; `random` draws one; printed, with a replay line, in every failure), loads each
into one of ten node namespaces (iptables-nft, iptables-legacy, or one ruleset per backend at
once), connects to it from a peer namespace with several flows, and asks the engine the same
question from the `iptables-save` text read back from the namespace (what tunnelwatch sees on
a node) and, for some rulesets, from the generated text too. Kernel answers map to verdicts:
open = accept, timeout = drop, refused/unreachable = reject. A "timeout" the engine disputes
is probed again with a long timeout before it counts, so a slow machine cannot fake a drop.

The tests then assert on the campaign: no disagreement, "unknown" a small minority, and the
`iptables -S` / `iptables -L -n -v --line-numbers` listings read back for a sample of
rulesets give the same verdict as iptables-save (or "unknown", counted).

Replay: TW_DIFF_SEED=<seed> reruns a campaign; TW_DIFF_ONLY=<i,j,...> only those rulesets.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from tests.conftest import require_tools
from tests.lab import differential as diff
from tests.lab.differential import KERNEL_AGREES, KERNEL_VERDICT, Flow, SourcePorts
from tests.lab.flow_probe import probe_flows
from tests.lab.netns import Host
from tests.lab.rulegen import LISTEN_PORTS, SPORT_RANGE, Generated, Universe, generate

pytestmark = pytest.mark.netns

SUBNET = IPv4Network("10.250.0.0/24")
PEERS = ("10.250.0.21", "10.250.0.77", "10.250.0.130")
NODES = 10
DEFAULT_SEED = 630667606  # a campaign that passed; change it deliberately, not by chance
SHRINK_CASES = 3  # on failure, this many disagreeing rulesets are cut down ...
SHRINK_SECONDS = 120.0  # ... within this budget
SHRINK_TIMEOUT = 1.0  # the machine is idle by then; a real answer takes milliseconds
TOOLS = {
    "nft": ("iptables-nft-restore", "iptables-nft-save", "iptables-nft"),
    "legacy": ("iptables-legacy-restore", "iptables-legacy-save", "iptables-legacy"),
}
_EMPTY = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}


def _node_addrs(i: int) -> tuple[str, str]:
    return (f"10.250.0.{40 + i}", f"10.250.0.{160 + i}")


# ---- what one ruleset (or pair) went through ----------------------------------------------


@dataclass
class Case:
    index: int
    node: int
    loads: list[tuple[str, Generated]]  # (backend, ruleset); legacy first when both
    check_generated: bool  # also feed the engine the generated text
    listings_wanted: bool
    flows: list[Flow] = field(default_factory=list)
    kernel: list[str] = field(default_factory=list)
    readback: dict[str, str] = field(default_factory=dict)
    listings: dict[str, dict[str, str]] = field(default_factory=dict)  # backend -> fmt -> text

    @property
    def mode(self) -> str:
        return "+".join(b for b, _ in self.loads)


Problem = diff.Problem[Case]  # label: "save" or "generated", the text the engine was given


@dataclass
class Campaign(diff.Campaign[Case]):
    listing_counts: Counter[str] = field(default_factory=Counter)
    listing_mismatches: list[Problem] = field(default_factory=list)
    shrunk: dict[int, str] = field(default_factory=dict)  # case index -> smallest ruleset


# ---- the node side ------------------------------------------------------------------------


@dataclass
class Node:
    host: Host
    index: int
    legacy_tables: set[str] = field(default_factory=set)
    nft_used: bool = False

    def reset(self) -> None:
        """Empty both backends: restore replaces only the tables it names."""
        if self.nft_used:
            self.host.exec(["nft", "flush", "ruleset"])
            self.nft_used = False
        if self.legacy_tables:
            self.host.exec(["iptables-legacy-restore"], input=_empty_tables(self.legacy_tables))
            # Legacy tables stay registered once loaded; they are empty now.

    def load(self, backend: str, gen: Generated) -> None:
        restore = TOOLS[backend][0]
        proc = self.host.exec([restore], input=gen.text, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{restore} refused the ruleset: {proc.stderr.strip()}")
        if backend == "nft":
            self.nft_used = True
        else:
            self.legacy_tables |= set(gen.tables)

    def save(self, backend: str, counters: bool) -> str:
        argv = [TOOLS[backend][1], *(["-c"] if counters else [])]
        return str(self.host.exec(argv).stdout)

    def listings(self, backend: str) -> dict[str, str]:
        """The filter table as `iptables -S` and `iptables -L -n -v --line-numbers` print it."""
        cmd = TOOLS[backend][2]
        return {
            "rules": str(self.host.exec([cmd, "-S"]).stdout),
            "list": str(self.host.exec([cmd, "-L", "-n", "-v", "--line-numbers"]).stdout),
        }


def _empty_tables(names: set[str]) -> str:
    text = ""
    for t in sorted(names):
        text += f"*{t}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in _EMPTY[t]) + "COMMIT\n"
    return text


# ---- the engine side ----------------------------------------------------------------------


def _engine() -> Any:
    import shared.analysis.iptables as engine

    return engine


def _verdict(v: Any) -> str:
    raw = v.verdict
    return str(getattr(raw, "value", raw))


def _decided(v: Any) -> str:
    doc = v.to_json()
    return json.dumps(doc.get("decided_by"), sort_keys=True)


class _Judge:
    """Compares one case's kernel answers with the engine's, recording the outcome."""

    def __init__(self, campaign: Campaign, engine: Any) -> None:
        self.c = campaign
        self.engine = engine

    def parse(
        self, case: Case, text: str, source: str, sink: list[Problem] | None = None
    ) -> Any | None:
        try:
            rs = self.engine.parse_ruleset(text, source)
        except Exception as exc:  # any failure here is an engine fault to report
            where = self.c.faults if sink is None else sink
            where.append(Problem(case, f"parse_ruleset({source}) raised {exc!r}"))
            return None
        return rs

    def evaluate(self, case: Case, rulesets: list[Any], flow: Flow, label: str) -> Any | None:
        try:
            return self.engine.evaluate_input(rulesets, diff.flow_packet(flow))
        except Exception as exc:
            self.c.faults.append(Problem(case, f"evaluate_input({label}, {flow}) raised {exc!r}"))
            return None

    def inputs(self, case: Case) -> list[tuple[str, list[Any]]]:
        """(label, rulesets) pairs to ask: the read-back dumps, and maybe the generated text."""
        out: list[tuple[str, list[Any]]] = []
        back = [
            self.parse(case, case.readback[b], f"case{case.index}:{b}-save") for b, _ in case.loads
        ]
        if all(rs is not None for rs in back):
            out.append(("save", back))
        if case.check_generated:
            gen = [
                self.parse(case, g.text, f"case{case.index}:{b}-generated") for b, g in case.loads
            ]
            if all(rs is not None for rs in gen):
                out.append(("generated", gen))
        return out


def _order_dependent(judge: _Judge, case: Case, rulesets: list[Any], flow: Flow) -> bool:
    """Both backends block, one by DROP and one by REJECT: the kernel's hook order decides."""
    if len(rulesets) < 2:
        return False
    alone = [judge.evaluate(case, [rs], flow, "alone") for rs in rulesets]
    kinds = {_verdict(v) for v in alone if v is not None}
    return kinds == {"drop", "reject"}


def _compare_round(
    campaign: Campaign, judge: _Judge, peer: Host, cases: list[Case], sports: SourcePorts
) -> None:
    pending: list[tuple[Case, int, str, Any, list[Any]]] = []
    for case in cases:
        inputs = judge.inputs(case)
        for fi, flow in enumerate(case.flows):
            kernel = case.kernel[fi]
            for label, rulesets in inputs:
                v = judge.evaluate(case, rulesets, flow, label)
                if v is None:
                    continue
                if kernel.startswith("error"):
                    pending.append((case, fi, label, v, rulesets))
                    continue
                result = diff.outcome(kernel, _verdict(v))
                if result == "disputed":
                    pending.append((case, fi, label, v, rulesets))
                elif result == "disagree":
                    _settle(campaign, judge, case, fi, label, kernel, v, rulesets)
                else:
                    campaign.comparisons[result] += 1
    if not pending:
        return
    # A disputed timeout (or a failed probe) gets one more, slow, look with fresh ports; the
    # engine's verdict stays the one for the first flow.
    order = list({(c.index, fi): c for c, fi, *_ in pending}.items())
    again = diff.reprobe(campaign, peer, sports, [c.flows[fi] for (_i, fi), c in order])
    fresh = {key: kernel for (key, _c), (_flow, kernel) in zip(order, again, strict=True)}
    for case, fi, label, v, rulesets in pending:
        kernel = str(fresh[(case.index, fi)])
        if kernel.startswith("error"):
            campaign.faults.append(Problem(case, f"probe {case.flows[fi]} failed twice: {kernel}"))
            continue
        got = _verdict(v)
        if got in KERNEL_AGREES[kernel]:
            campaign.comparisons["agree"] += 1
        elif got == "unknown":
            campaign.comparisons["unknown"] += 1
        else:
            _settle(campaign, judge, case, fi, label, kernel, v, rulesets)


def _settle(
    campaign: Campaign,
    judge: _Judge,
    case: Case,
    fi: int,
    label: str,
    kernel: str,
    v: Any,
    rulesets: list[Any],
) -> None:
    flow = case.flows[fi]
    got = _verdict(v)
    if diff.blocked_both(kernel, got) and _order_dependent(judge, case, rulesets, flow):
        campaign.comparisons["order-dependent"] += 1
        return
    campaign.comparisons["disagree"] += 1
    campaign.disagreements.append(
        Problem(
            case,
            f"{label}: {flow}: kernel {kernel} ({KERNEL_VERDICT[kernel]}), engine {got} "
            f"decided_by={_decided(v)}",
            flow=flow,
            label=label,
        )
    )


def _compare_listings(campaign: Campaign, judge: _Judge, case: Case) -> None:
    """The -S and -L listings must give iptables-save's verdict (or honestly "unknown")."""
    (backend, _gen) = case.loads[0]
    # The listings show one table; compare them with the same table cut out of the save.
    filter_only = _only_table(case.readback[backend], "filter")
    base = judge.parse(case, filter_only, f"case{case.index}:{backend}-save-filter")
    if base is None:
        return
    for fmt, text in case.listings[backend].items():
        rs = judge.parse(
            case, text, f"case{case.index}:{backend}-{fmt}", campaign.listing_mismatches
        )
        if rs is None:
            campaign.listing_counts[f"{fmt}:unreadable"] += 1
            continue
        for flow in case.flows:
            want = judge.evaluate(case, [base], flow, "save")
            got = judge.evaluate(case, [rs], flow, fmt)
            if want is None or got is None:
                continue
            w, g = _verdict(want), _verdict(got)
            if g == w:
                campaign.listing_counts[f"{fmt}:same"] += 1
            elif g == "unknown":
                campaign.listing_counts[f"{fmt}:unknown"] += 1
            else:
                campaign.listing_counts[f"{fmt}:different"] += 1
                campaign.listing_mismatches.append(
                    Problem(
                        case,
                        f"{fmt}: {flow}: save says {w} (decided_by={_decided(want)}), "
                        f"{fmt} says {g} (decided_by={_decided(got)})",
                    )
                )


def _only_table(save: str, table: str) -> str:
    """The `*table ... COMMIT` section of an iptables-save dump (comments kept)."""
    out, inside = [], False
    for line in save.splitlines(keepends=True):
        if line.startswith("*"):
            inside = line.strip() == f"*{table}"
        if inside or line.startswith("#"):
            out.append(line)
        if line.strip() == "COMMIT":
            inside = False
    return "".join(out)


# ---- the campaign -------------------------------------------------------------------------


def _plan(seed: int, index: int, node: int) -> Case:
    """Everything random about one case comes from (seed, index): replayable one by one."""
    rng = random.Random(seed * 1_000_003 + index)
    addrs = _node_addrs(node)
    uni = Universe(
        SUBNET,
        tuple(IPv4Address(a) for a in addrs),
        tuple(IPv4Address(a) for a in PEERS),
        LISTEN_PORTS,
    )
    roll = rng.random()
    backends = ["nft"] if roll < 0.6 else ["legacy"] if roll < 0.85 else ["legacy", "nft"]
    loads = [(b, generate(rng, uni)) for b in backends]
    case = Case(
        index=index,
        node=node,
        loads=loads,
        check_generated=rng.random() < 0.5,
        listings_wanted=len(backends) == 1 and rng.random() < 0.2,
    )
    ports = loads[0][1].probe_ports
    for src in rng.sample(PEERS, 2):
        for port in ports:
            case.flows.append(Flow(src, 0, rng.choice(addrs), port))
    return case


def _prepare(node: Node, case: Case) -> None:
    node.reset()
    for backend, gen in case.loads:
        node.load(backend, gen)
    counters = case.index % 3 == 0  # `iptables-save -c` prefixes rules with [pkts:bytes]
    for backend, _gen in case.loads:
        case.readback[backend] = node.save(backend, counters)
    if case.listings_wanted:
        backend, _gen = case.loads[0]
        case.listings[backend] = node.listings(backend)


def _run_campaign(campaign: Campaign) -> None:
    judge = _Judge(campaign, _engine())
    sports = SourcePorts(PEERS, SPORT_RANGE)
    started = time.monotonic()
    addrs = [_node_addrs(i) for i in range(NODES)]
    with diff.node_lab(str(SUBNET), addrs, PEERS, LISTEN_PORTS) as (hosts, peer):
        nodes = [Node(host, i) for i, host in enumerate(hosts)]
        batches = diff.probe_batches(
            campaign,
            NODES,
            _plan,
            lambda case: _prepare_safe(nodes[case.node], case),
            peer,
            sports,
        )
        for ready in batches:
            _compare_round(campaign, judge, peer, ready, sports)
            for case in ready:
                if case.listings:
                    _compare_listings(campaign, judge, case)
        # On failure, cut the first few disagreeing rulesets down to what still disagrees.
        shrink_deadline = time.monotonic() + SHRINK_SECONDS
        for problem in _first_per_case(campaign.disagreements)[:SHRINK_CASES]:
            if time.monotonic() > shrink_deadline:
                break
            node = nodes[problem.case.node]
            small = _shrink(node, peer, judge, problem, sports, shrink_deadline)
            if small:
                campaign.shrunk[problem.case.index] = small
    campaign.seconds = time.monotonic() - started


def _first_per_case(problems: list[Problem]) -> list[Problem]:
    seen: dict[int, Problem] = {}
    for p in problems:
        if len(p.case.loads) == 1 and p.flow is not None:
            seen.setdefault(p.case.index, p)
    return list(seen.values())


def _shrink(
    node: Node, peer: Host, judge: _Judge, problem: Problem, sports: SourcePorts, deadline: float
) -> str:
    """Greedy line deletion: drop every line whose removal keeps the disagreement.

    Each try is a real load and a real probe, so the result is a kernel fact, not a guess.
    Bounded by the number of lines (two passes) and by `deadline`.
    """
    assert problem.flow is not None
    backend, gen = problem.case.loads[0]
    flow, engine = problem.flow, judge.engine

    def disagrees(lines: list[str]) -> bool:
        text = "\n".join(lines) + "\n"
        node.reset()
        try:
            node.load(backend, Generated(text, (), tuple(_tables_of(lines)), frozenset()))
        except RuntimeError:
            return False  # the kernel refuses this cut (a chain still referenced, ...)
        f = sports.fresh(flow)
        kernel = probe_flows(peer, [f.probe()], timeout=SHRINK_TIMEOUT)[0]
        if kernel not in KERNEL_VERDICT:
            return False
        dump = text if problem.label == "generated" else node.save(backend, False)
        try:
            v = engine.evaluate_input([engine.parse_ruleset(dump, "shrink")], diff.flow_packet(f))
        except Exception:
            return False
        return _verdict(v) != "unknown" and _verdict(v) not in KERNEL_AGREES[kernel]

    lines = [x for x in gen.text.splitlines() if x and not x.startswith("#")]
    if not disagrees(lines):
        return ""  # not reproducible alone; report the full ruleset only
    for _ in range(2):
        i = len(lines) - 1
        while i >= 0 and time.monotonic() < deadline:
            line = lines[i]
            removable = line.startswith("-A") or line.endswith("- [0:0]")
            if removable and disagrees(lines[:i] + lines[i + 1 :]):
                del lines[i]
            i -= 1
        # Whole tables left with no rule.
        for table in list(_tables_of(lines)):
            start = lines.index(f"*{table}")
            end = lines.index("COMMIT", start)
            if not any(x.startswith("-A") for x in lines[start:end]):
                cut = lines[:start] + lines[end + 1 :]
                if cut and disagrees(cut):
                    lines = cut
    return "\n".join(lines) + "\n"


def _tables_of(lines: list[str]) -> list[str]:
    return [x[1:] for x in lines if x.startswith("*")]


def _prepare_safe(node: Node, case: Case) -> str:
    try:
        _prepare(node, case)
    except Exception as exc:  # reported with the ruleset; the campaign goes on
        return f"loading on node {node.index} failed: {exc}"
    return ""


def _header(case: Case) -> str:
    return f"node {case.node}, {case.mode}"


def _details(campaign: Campaign) -> Callable[[Case, bool], list[str]]:
    def details(case: Case, full: bool) -> list[str]:
        lines = []
        if case.index in campaign.shrunk:
            small = campaign.shrunk[case.index]
            lines.append(f"-- smallest ruleset that still disagrees:\n{small}")
        if full:
            for backend, gen in case.loads:
                lines.append(f"-- generated for {backend}:\n{gen.text}")
                if backend in case.readback:
                    lines.append(f"-- read back from {backend}:\n{case.readback[backend]}")
        return lines

    return details


def _describe(campaign: Campaign, problems: list[Problem], title: str) -> str:
    return diff.report(campaign, problems, title, _details(campaign), _header)


@pytest.fixture(scope="module")
def campaign(netns_ok: None) -> Iterator[Campaign]:
    require_tools(
        "iptables-nft-restore",
        "iptables-legacy-restore",
        "iptables-nft-save",
        "iptables-legacy-save",
        "nft",
        "sysctl",
    )
    result = Campaign.from_env("TW_DIFF", DEFAULT_SEED, 300)
    _run_campaign(result)
    print(result.summary("iptables", f"listings {dict(result.listing_counts)}"))
    yield result


def test_every_ruleset_loads_and_parses(campaign: Campaign) -> None:
    diff.assert_all_loaded(campaign, _details(campaign), _header)


def test_engine_agrees_with_kernel(campaign: Campaign) -> None:
    diff.assert_engine_agrees(
        campaign, _details(campaign), max_unknown=0.10, full_at=100, header=_header
    )


def test_listings_agree_with_save(campaign: Campaign) -> None:
    assert not campaign.listing_mismatches, _describe(
        campaign, campaign.listing_mismatches, "-S/-L listings disagree with iptables-save"
    )
    counts = campaign.listing_counts
    if campaign.count >= 100 and campaign.only is None:
        assert counts["rules:same"] > 0, dict(counts)
        assert counts["list:same"] > 0, dict(counts)
