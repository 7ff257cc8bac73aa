"""The data of the iptables engine: the packet, the ruleset, compiled rules and the verdict.

An IptablesRuleset is what one dump says, parsed (one backend, one address family, any
tables; the probe's raw capture of it is `shared.probe.output.RulesetCapture`). Chains keep
their raw rule lines and are compiled on first use (see compile.py): a kube-proxy dump has tens
of thousands of rules, and a packet to the kubelet only ever visits a few chains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from shared.analysis.walk import (
    PROTOCOLS,
    IPAddress,
    Packet,
    PacketVerdict,
    fields_json,
    verdict_json,
)

__all__ = [
    "BUILTIN_CHAINS",
    "HIDDEN",
    "HIDDEN_IFACE",
    "HIDDEN_LO",
    "PROTOCOLS",
    "Backend",
    "Chain",
    "Cond",
    "Ctx",
    "DecidedBy",
    "Entry",
    "IPAddress",
    "IptablesRuleset",
    "IptablesUndecided",
    "IptablesVerdict",
    "Packet",
    "PacketVerdict",
    "PendingRule",
    "Rule",
    "Table",
    "Target",
    "TargetKind",
    "TraceStep",
    "fields_json",
    "verdict_json",
]

# Why a rule of an `iptables --list` without -v is undecided (see parse_list): its interface
# is not shown. HIDDEN_LO: a bare ACCEPT, most likely the loopback rule `-i lo -j ACCEPT`.
HIDDEN = "the listing hides interfaces (no -v)"
HIDDEN_IFACE = f"{HIDDEN}: this rule may have -i/-o"
HIDDEN_LO = f"{HIDDEN} and this rule shows no match: likely the loopback rule `-i lo -j ACCEPT`"

# Built-in chains of each table, in the kernel's order.
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}


class Backend(StrEnum):
    """Which kernel interface the dump came from; decides the command of a fix."""

    LEGACY = "legacy"
    NFT = "nf_tables"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Ctx:
    """The mutable per-path state of one evaluation: the packet as numbers plus its marks.

    mark/ctmark None means a target changed them in a way we cannot compute.
    """

    family: int
    src: int
    dst: int | None
    proto: int
    dport: int
    sport: int | None
    in_iface: str | None
    src_obj: IPAddress
    dst_obj: IPAddress | None
    mark: int | None = 0
    ctmark: int | None = 0
    untracked: bool = False
    tracked: bool = True  # False before conntrack ran (the raw table)
    established: bool = False  # a later packet of the connection (an ACK), not the SYN

    def copy(self) -> Ctx:
        return Ctx(
            self.family,
            self.src,
            self.dst,
            self.proto,
            self.dport,
            self.sport,
            self.in_iface,
            self.src_obj,
            self.dst_obj,
            self.mark,
            self.ctmark,
            self.untracked,
            self.tracked,
            self.established,
        )


class Cond:
    """One match of a rule. test() is True, False, or None (undecided, see `reason`)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def test(self, ctx: Ctx) -> bool | None:  # pragma: no cover - abstract
        raise NotImplementedError


class TargetKind(Enum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    RETURN = "return"
    JUMP = "jump"
    GOTO = "goto"
    NONE = "none"  # no target: a counters-only rule
    CONTINUE = "continue"  # non-terminating and no effect on the verdict (LOG, TCPMSS ...)
    EFFECT = "effect"  # non-terminating with an effect on the state (MARK, CONNMARK, NOTRACK)
    NAT_ACCEPT = "nat-accept"  # SNAT/MASQUERADE: set up NAT, end this nat hook
    REDIRECT = "redirect"  # DNAT/REDIRECT/NETMAP/TPROXY: the packet may go elsewhere
    UNKNOWN = "unknown"  # a target whose effect we do not know


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    name: str = ""  # target or chain name as written
    effect: Callable[[Ctx], None] | None = None  # for EFFECT
    note: str = ""  # why UNKNOWN / what REDIRECT does
    # UNKNOWN only: the name may be a chain the capture does not show (or a target we do not
    # know); in the filter table its outcomes are bounded (see evaluate.py, _unseen_chain).
    unseen: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    number: int  # 1-based position in its chain
    line: int  # line in the input
    text: str  # as `iptables -S` shows it
    conds: tuple[Cond, ...]
    target: Target


@dataclass(frozen=True, slots=True)
class PendingRule:
    """A rule not compiled yet, with the cheap generic matches (-s/-d/-p) read off its head:
    when one of them is False the rule cannot match and is never compiled."""

    number: int
    line: int
    text: str
    quick: tuple[Cond, ...]


Entry = Rule | PendingRule


@dataclass(slots=True)
class Chain:
    """A chain; `raw` holds (line, text) until compile.py turns it into `rules`."""

    name: str
    policy: str | None  # ACCEPT/DROP for built-in chains, None for user chains
    line: int
    raw: list[tuple[int, str]] = field(default_factory=list)
    rules: list[Entry] | None = None
    # How to read the raw lines of this chain (set by the parser that made it): all of
    # them into entries, and one entry into a full rule.
    compiler: Callable[[Chain, Table, IptablesRuleset], list[Entry]] | None = None
    finisher: Callable[[Chain, Table, IptablesRuleset, PendingRule], Rule] | None = None
    # Why the chain's rules may go on past what the capture shows (a cut capture); "" when
    # the capture proves the chain ended. A walk that reaches the end of such a chain stops
    # undecided: its policy (or RETURN) may not be what comes next.
    cut: str = ""


@dataclass(slots=True)
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    cut: str = ""  # why the table may lack chains (an iptables-save table without COMMIT)


@dataclass(slots=True)
class IptablesRuleset:
    """One dump: its tables, the backend and address family it came from, where it was read."""

    source: str
    format: str  # "save", "rules" (-S) or "list" (--list)
    tables: dict[str, Table]
    backend: Backend = Backend.UNKNOWN
    family: int | None = None  # 4, 6 or None when the dump does not say
    caveats: tuple[str, ...] = ()  # what the format could not show us
    # The producer proved the dump whole (the node probe: the save command's exit status,
    # the reduction's trailer, a complete gzip stream). A pasted capture is never proven
    # whole: one without a filter INPUT chain may be cut before it, so it cannot say ACCEPT,
    # and the last chain of an `iptables --list` paste may go on past its end (Chain.cut).
    whole: bool = False

    def chain_entries(self, table: str, chain: str) -> list[Entry]:
        """The rules of a chain, some maybe still pending (read on first use)."""
        t = self.tables[table]
        c = t.chains[chain]
        if c.rules is None:
            c.rules = c.compiler(c, t, self) if c.compiler is not None else []
            c.raw = []
        return c.rules

    def finish(self, table: str, chain: str, index: int) -> Rule:
        """The full rule at `index` (0-based) of a chain; InputError if it is malformed."""
        entries = self.chain_entries(table, chain)
        entry = entries[index]
        if isinstance(entry, Rule):
            return entry
        t = self.tables[table]
        c = t.chains[chain]
        if c.finisher is None:
            raise ValueError(f"chain {chain} has pending rules but no way to finish them")
        rule = c.finisher(c, t, self, entry)
        entries[index] = rule
        return rule

    def chain_rules(self, table: str, chain: str) -> tuple[Rule, ...]:
        """Every rule of a chain, fully compiled (InputError if one is malformed)."""
        n = len(self.chain_entries(table, chain))
        return tuple(self.finish(table, chain, i) for i in range(n))

    def compile_all(self) -> None:
        """Compiles every chain now, so a malformed rule anywhere raises InputError."""
        for table in self.tables.values():
            for name in table.chains:
                self.chain_rules(table.name, name)

    def command(self) -> str:
        """The iptables command that manages this ruleset."""
        base = "ip6tables" if self.family == 6 else "iptables"
        if self.backend is Backend.LEGACY:
            return f"{base}-legacy"
        if self.backend is Backend.NFT:
            return f"{base}-nft"
        return base

    def has_ufw(self) -> bool:
        return any(
            name.startswith(("ufw-", "ufw6-")) for t in self.tables.values() for name in t.chains
        )


@dataclass(frozen=True, slots=True)
class DecidedBy:
    table: str
    chain: str
    rule_number: int | None = None
    rule: str | None = None
    policy: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.policy is not None:
            return {"table": self.table, "chain": self.chain, "policy": self.policy}
        return {
            "table": self.table,
            "chain": self.chain,
            "rule_number": self.rule_number,
            "rule": self.rule,
        }


@dataclass(frozen=True, slots=True)
class TraceStep:
    table: str
    chain: str
    rule_number: int | None  # None for a policy or the end of a chain
    rule: str | None
    action: str
    source: str = ""  # the ruleset, when several are walked together

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "table": self.table,
            "chain": self.chain,
            "rule_number": self.rule_number,
            "rule": self.rule,
            "action": self.action,
        }
        if self.source:
            doc["source"] = self.source
        return doc


@dataclass(frozen=True, slots=True)
class IptablesUndecided:
    table: str
    chain: str
    rule_number: int
    rule: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


@dataclass(frozen=True, slots=True)
class IptablesVerdict:
    """What happens to the packet. `cause` is 2 (UFW) or 3 (iptables) for a block, else None."""

    verdict: PacketVerdict
    source: str
    cause: int | None = None
    decided_by: DecidedBy | None = None
    trace: tuple[TraceStep, ...] = ()
    undecided: tuple[IptablesUndecided, ...] = ()
    reason: str = ""  # why unknown; or a note on a decided verdict
    notes: tuple[str, ...] = ()
    command: str = "iptables"  # the command managing the deciding ruleset
    rulesets: tuple[IptablesVerdict, ...] = ()  # per ruleset, when several were evaluated
    not_applicable: tuple[str, ...] = ()  # rulesets of the other address family
    other_blocks: tuple[DecidedBy, ...] = ()  # other rules that block on other undecided paths
    packet: Packet | None = None
    # Blocked on every path, some by DROP and some by REJECT: "DROP or REJECT, depending on
    # <the undecided rules>" (`verdict` is then the first path's).
    blocked_as: str = ""

    def to_json(self) -> dict[str, Any]:
        doc = verdict_json(self)
        if self.blocked_as:
            doc["blocked_as"] = self.blocked_as
        if self.rulesets:
            doc["rulesets"] = [r.to_json() for r in self.rulesets]
        if self.not_applicable:
            doc["not_applicable"] = list(self.not_applicable)
        return doc
