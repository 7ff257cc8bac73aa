"""The data of the nftables engine: the ruleset read from `nft -j list ruleset`, the compiled
statements of its rules, and the verdict for one packet.

Everything here is frozen. A rule keeps its statements already compiled (parse.py) into the
few shapes the walk knows: a match, a verdict, a verdict map, an effect (a mark set), a no-op
(counter, log) or "unknown" with the reason. Constants are normalised at parse time, so a
lookup compares integers and strings only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.analysis.walk import Packet, PacketVerdict, fields_json, verdict_json

__all__ = [
    "Cond",
    "Const",
    "Effect",
    "Elem",
    "Field",
    "Flags",
    "Interval",
    "Key",
    "Masked",
    "Match",
    "NftChain",
    "NftDecidedBy",
    "NftRule",
    "NftRuleset",
    "NftSet",
    "NftTable",
    "NftTraceStep",
    "NftUndecided",
    "NftVerdict",
    "NoOp",
    "Packet",
    "PacketVerdict",
    "Part",
    "Right",
    "SetRef",
    "Stmt",
    "Unknown",
    "VKind",
    "VerdictStmt",
    "Vmap",
    "Wild",
]


# ---- values -------------------------------------------------------------------------------

# A normalised value: addresses, ports, protocols, marks and flag sets are ints; interface
# names and fib types are strings.
Scalar = int | str


@dataclass(frozen=True, slots=True)
class Interval:
    """lo..hi inclusive: a prefix (10.0.0.0/8) or a range (1000-2000)."""

    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Wild:
    """An interface name pattern ending in '*' (nft's wildcard)."""

    prefix: str


Part = Scalar | Interval | Wild  # one component of a set element
Elem = tuple[Part, ...]  # a set element (several parts for a concatenation)


@dataclass(frozen=True, slots=True)
class Field:
    """Something a rule reads from the packet (`ip saddr`, `tcp dport`, `ct state` ...).

    `key` names it for the walker (values.py); `kind` says how constants compared with it
    are read (addr4, addr6, port, proto, ifname, ctstate, tcpflags, int, str ...). A field the
    engine does not know has kind "unknown" and `why` says what it is.
    """

    key: str
    kind: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class Masked:
    """`FIELD & MASK` (as in `meta mark & 0x4000 == 0x4000` or `tcp flags & (syn|ack)`)."""

    field: Field
    mask: int


Key = tuple[Field | Masked, ...]  # one item, or several joined by '.'


@dataclass(frozen=True, slots=True)
class Const:
    value: Elem  # compared whole (one element; a set of one)


@dataclass(frozen=True, slots=True)
class Flags:
    """`in` on a bitmask (`ct state established,related`): any of these bits set."""

    mask: int


@dataclass(frozen=True, slots=True)
class SetRef:
    name: str  # a named set of the same table (without '@')


Right = Const | Flags | SetRef | tuple[Elem, ...]  # a tuple is an anonymous set


# ---- statements ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    key: Key
    op: str  # == != < > <= >= in
    right: Right


@dataclass(frozen=True, slots=True)
class Cond:
    """A match-like statement whose outcome cannot be known from a capture (limit, quota ...)."""

    why: str


class VKind(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    CONTINUE = "continue"
    RETURN = "return"
    JUMP = "jump"
    GOTO = "goto"
    NAT = "nat"  # snat/masquerade: ends the chain like accept, leaves delivery alone
    REDIRECT = "redirect"  # dnat/redirect/tproxy: the packet may be sent elsewhere
    QUEUE = "queue"  # a user-space program decides


@dataclass(frozen=True, slots=True)
class VerdictStmt:
    kind: VKind
    target: str = ""  # the chain of jump/goto
    detail: str = ""  # reject type, nat target ...


@dataclass(frozen=True, slots=True)
class Vmap:
    """`KEY vmap { ... }` or `KEY vmap @map`: look the key up, apply the element's verdict."""

    key: Key
    elements: tuple[tuple[Elem, VerdictStmt], ...] | None  # None: a named map
    map_name: str = ""


@dataclass(frozen=True, slots=True)
class Effect:
    """A statement that changes the packet's state: `meta mark set ...`, `ct mark set ...`,
    `notrack`. `value` None means the new value cannot be computed."""

    target: str  # "meta.mark", "ct.mark", "notrack"
    value: int | None = None
    op: str = "="  # "=" sets value; "|", "&", "^" combine with the old value


@dataclass(frozen=True, slots=True)
class NoOp:
    """counter, log, a set update: nothing that changes where the packet goes."""

    name: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A statement the engine does not know: if a packet reaches it, the outcome is unknown."""

    why: str


Stmt = Match | Cond | VerdictStmt | Vmap | Effect | NoOp | Unknown


# ---- the ruleset --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int | None
    text: str  # rebuilt nft syntax
    stmts: tuple[Stmt, ...]
    index: int  # 0-based position in the input list (for messages)


@dataclass(frozen=True, slots=True)
class NftChain:
    family: str
    table: str
    name: str
    handle: int | None
    type: str | None = None  # filter / nat / route for base chains
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None  # accept / drop for base chains
    device: str | None = None  # netdev/ingress chains
    rules: tuple[NftRule, ...] = ()

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True, slots=True)
class NftSet:
    """A named set or map; `elements` normalised by `kinds` (one kind per concatenated part).

    For a verdict map, `verdicts` holds the element's verdict, in the order of `elements`.
    `dynamic` is set when a rule adds to it from the packet path or it has timeouts: its
    listed elements are a snapshot, so a lookup in it is undecided.
    """

    family: str
    table: str
    name: str
    kinds: tuple[str, ...]
    elements: tuple[Elem, ...]
    is_map: bool = False
    verdicts: tuple[VerdictStmt, ...] = ()
    dynamic: bool = False
    why_opaque: str = ""  # set when its type is one the engine cannot compare


@dataclass(frozen=True, slots=True)
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain]
    sets: dict[str, NftSet]
    compat: str = ""  # why it is an iptables-nft table (skipped), or ""
    # Whether a rule of it needs conntrack (a ct expression, a nat statement ...): the kernel
    # runs conntrack in a network namespace only once some rule there needs it.
    conntrack: bool = False


@dataclass(frozen=True, slots=True)
class NftRuleset:
    source: str
    tables: tuple[NftTable, ...]
    version: str = ""  # nft's version from metainfo

    def table(self, family: str, name: str) -> NftTable | None:
        return next((t for t in self.tables if t.family == family and t.name == name), None)


# ---- the verdict --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NftDecidedBy:
    family: str
    table: str
    chain: str
    handle: int | None = None
    rule: str | None = None
    policy: str | None = None
    element: str | None = None  # the verdict map element that decided, in nft syntax
    map_name: str | None = None  # its named map

    def where(self) -> str:
        base = f"{self.family} {self.table} {self.chain}"
        if self.policy is not None:
            return f"policy {self.policy} of {base}"
        return f"rule handle {self.handle} of {base}"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"family": self.family, "table": self.table, "chain": self.chain}
        if self.policy is not None:
            doc["policy"] = self.policy
            return doc
        doc["handle"] = self.handle
        doc["rule"] = self.rule
        if self.element is not None:
            doc["element"] = self.element
            doc["map"] = self.map_name
        return doc


@dataclass(frozen=True, slots=True)
class NftTraceStep:
    family: str
    table: str
    chain: str
    handle: int | None  # None for a policy, the end of a chain or a skipped chain
    rule: str | None
    action: str
    packet: str = "syn"  # "syn" (first packet) or "ack" (the handshake's next packet)

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


@dataclass(frozen=True, slots=True)
class NftUndecided:
    family: str
    table: str
    chain: str
    handle: int | None
    rule: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


@dataclass(frozen=True, slots=True)
class NftVerdict:
    """What the native nftables tables do to the packet (the iptables-nft tables excluded)."""

    verdict: PacketVerdict
    source: str
    decided_by: NftDecidedBy | None = None
    trace: tuple[NftTraceStep, ...] = ()
    undecided: tuple[NftUndecided, ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # "ip filter: iptables-nft table (...)"
    evaluated: tuple[str, ...] = ()  # the base chains walked, "inet fw input (prio 0)"
    other_blocks: tuple[NftDecidedBy, ...] = ()
    packet: Packet | None = None

    @property
    def cause(self) -> int | None:
        return 3 if self.verdict.blocks else None

    def to_json(self) -> dict[str, Any]:
        extra = {"skipped_tables": list(self.skipped), "base_chains": list(self.evaluated)}
        return verdict_json(self, extra)
