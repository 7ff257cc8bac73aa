"""What the iptables and the nftables engines share when they walk a packet through rules.

Both engines walk one inbound packet (`Packet`) through chains of rules and end in a
`PacketVerdict`. A rule whose match cannot be decided (a hidden interface, an unknown address)
forks the walk: one path assumes it matches, the other that it does not (`split`). Every
path runs to its own end (`Outcome`), the paths are drained under `Limits` (`drain`: too
many paths, steps or nested jumps raise `WalkAborted`, so a loop or a pathological capture
ends as "unknown", never as a hang), and the outcomes are combined: the verdict stands only
if every path agrees, or every path blocks (`agreed`); otherwise it is unknown and
`path_summary` says which assumption leads where. An accepted TCP SYN is followed by the
connection's next packets (`with_next_packets`).

What a chain, a rule, a hook or a trace step is stays with each engine (iptables/evaluate.py,
nftables/evaluate.py); this module knows none of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, Self, TypeAlias, TypeVar

__all__ = [
    "NEXT_PACKETS",
    "PROTOCOLS",
    "Assumption",
    "IPAddress",
    "Limits",
    "Outcome",
    "Packet",
    "PacketVerdict",
    "WalkAborted",
    "agreed",
    "drain",
    "fields_json",
    "hex_mark",
    "other_blocks",
    "path_summary",
    "same_on_every_path",
    "split",
    "undecided_of",
    "verdict_json",
    "with_next_packets",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Protocol names iptables and nft accept (from /etc/protocols) and their numbers.
PROTOCOLS: dict[str, int] = {
    "all": 0,
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "ipv6": 41,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "ospf": 89,
    "vrrp": 112,
    "sctp": 132,
    "udplite": 136,
    "mh": 135,
    "ip": 0,
    "hopopt": 0,
    "ipencap": 4,
    "egp": 8,
    "pup": 12,
    "xns-idp": 22,
    "rdp": 27,
    "dccp": 33,
    "ipv6-route": 43,
    "ipv6-frag": 44,
    "rsvp": 46,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "eigrp": 88,
    "ipip": 94,
    "encap": 98,
    "pim": 103,
    "ipcomp": 108,
    "l2tp": 115,
    "isis": 124,
    "mpls-in-ip": 137,
}


@dataclass(frozen=True, slots=True)
class Packet:
    """A NEW inbound connection's first packet (a TCP SYN for tcp), as the input path sees it.

    `dst` None means the node address is not known; `sport` None means any source port;
    `in_iface` None means the interface is not known. Matches on an unknown field are undecided.
    """

    src: IPAddress
    dst: IPAddress | None = None
    dport: int = 10250
    proto: str = "tcp"
    in_iface: str | None = None
    sport: int | None = None

    def __post_init__(self) -> None:
        if self.dst is not None and self.dst.version != self.src.version:
            raise ValueError("src and dst must be of one address family")
        if self.proto_number() is None:
            raise ValueError(f"unknown protocol {self.proto!r}")
        for port in (self.dport, self.sport):
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"port {port} is outside 0-65535")

    @property
    def family(self) -> int:
        return self.src.version

    def proto_number(self) -> int | None:
        p = self.proto.lower()
        if p.isdigit():
            num = int(p)
            return num if 0 < num < 256 else None
        named = PROTOCOLS.get(p)
        return named if named else None  # "all" is not a packet's protocol

    def to_json(self) -> dict[str, Any]:
        return {
            "src": str(self.src),
            "dst": None if self.dst is None else str(self.dst),
            "dport": self.dport,
            "sport": self.sport,
            "proto": self.proto,
            "in_iface": self.in_iface,
        }


class PacketVerdict(StrEnum):
    """What a packet filter does to the packet (the JSON "verdict" of both engines)."""

    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    UNKNOWN = "unknown"

    @property
    def blocks(self) -> bool:
        return self in (PacketVerdict.DROP, PacketVerdict.REJECT)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one walk; reaching one ends it as "unknown" (`WalkAborted`)."""

    branches: int = 256  # paths explored through undecided rules
    steps: int = 2_000_000  # rules (iptables) or statements (nft) looked at, over all paths
    depth: int = 64  # nested jumps (the kernel refuses loops; a capture might still have one)


class WalkAborted(Exception):
    """A limit was reached; the verdict is unknown for this reason."""


# What one path assumes of an undecided rule: True/False (it matches or not), or in words
# ("KUBE-X accepts", "element 10.0.0.5", "conntrack runs").
Assumption: TypeAlias = bool | str

D = TypeVar("D")  # what decided (a rule or a policy), engine's own
S = TypeVar("S")  # a trace step, engine's own
U = TypeVar("U")  # an undecided rule, engine's own
R = TypeVar("R")  # what else the engine remembers of the path's end (iptables: the ruleset)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[D, S, U, R]):
    """The end of one path. An engine subclasses it with its own types (`__slots__ = ()`):
    calling the subscripted alias itself fails on a frozen slotted dataclass in Python 3.11."""

    verdict: PacketVerdict
    decided_by: D | None
    trace: tuple[S, ...]
    assumed: tuple[tuple[U, Assumption], ...]
    reason: str = ""
    origin: R | None = None


class _Forkable(Protocol[U]):
    assumed: list[tuple[U, Assumption]]

    def fork(self) -> Self: ...


B = TypeVar("B", bound=_Forkable[Any])


def split(br: B, work: list[B], u: object, *, taken: Assumption, untaken: Assumption) -> B:
    """Forks a path at something undecided: the copy (queued in `work`, returned so the
    caller can place it) assumes `taken`, `br` goes on assuming `untaken`."""
    other = br.fork()
    other.assumed.append((u, taken))
    work.append(other)
    br.assumed.append((u, untaken))
    return other


P = TypeVar("P")  # what one path ends as


def drain(
    work: list[B],
    run: Callable[[B], P],
    limits: Limits,
    outcomes: list[P],
    finished: list[P] | None = None,
) -> None:
    """Runs every queued path to its end, into `outcomes` (also on WalkAborted: what ran so
    far stays there, the paths not run stay in `work`). `finished` holds paths that ended
    inside another path's step; they are moved to `outcomes` after each run."""
    while work:
        if len(outcomes) + len(work) > limits.branches:
            raise WalkAborted(f"more than {limits.branches} paths through undecided rules")
        outcomes.append(run(work.pop()))
        if finished:
            outcomes += finished
            finished.clear()


K = TypeVar("K")


def undecided_of(
    assumed: Iterable[Iterable[tuple[U, Assumption]]], key: Callable[[U], K]
) -> tuple[U, ...]:
    """The undecided rules of all paths, each once (by `key`), in order of first sight."""
    seen: dict[K, U] = {}
    for path in assumed:
        for u, _ in path:
            seen.setdefault(key(u), u)
    return tuple(seen.values())


def agreed(outcomes: Sequence[Outcome[Any, Any, Any, Any]]) -> bool:
    """Whether the first path's verdict stands: every path gives it (and it is not unknown),
    or every path blocks (by DROP on some and REJECT on others, say)."""
    verdicts = {o.verdict for o in outcomes}
    first = outcomes[0].verdict
    return (len(verdicts) == 1 and first is not PacketVerdict.UNKNOWN) or all(
        o.verdict.blocks for o in outcomes
    )


def same_on_every_path(undecided: Sequence[object]) -> str:
    return f"{len(undecided)} rule(s) could not be decided; every path gives the same result"


def other_blocks(outcomes: Sequence[Outcome[D, Any, Any, Any]]) -> list[D]:
    """When the first path blocks: what blocks on the other paths, if not the same rule."""
    first = outcomes[0]
    others: list[D] = []
    if not first.verdict.blocks:
        return others
    for o in outcomes[1:]:
        d = o.decided_by
        if d is not None and d != first.decided_by and d not in others:
            others.append(d)
    return others


OC = TypeVar("OC", bound=Outcome[Any, Any, Any, Any])


def path_summary(outcomes: Sequence[OC], assumptions: Callable[[OC], str]) -> str:
    """Where each path ends and what it assumes: "drop if ...; accept (why) if ..."."""
    paths = "; ".join(
        f"{o.verdict.value}{' (' + o.reason + ')' if o.reason else ''} if {assumptions(o)}"
        for o in outcomes[:6]
    )
    more = f" (and {len(outcomes) - 6} more paths)" if len(outcomes) > 6 else ""
    return paths + more


def hex_mark(mark: int | None) -> str:
    return "unknown" if mark is None else hex(mark)


NEXT_PACKETS = (
    "the SYN is let in; this verdict is for the connection's next packets "
    "(ESTABLISHED, ACK), which a TCP connection needs as well"
)


class _Judged(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def verdict(self) -> PacketVerdict: ...
    @property
    def undecided(self) -> tuple[Any, ...]: ...
    @property
    def reason(self) -> str: ...
    @property
    def notes(self) -> tuple[str, ...]: ...


J = TypeVar("J", bound=_Judged)


def with_next_packets(first: J, packet: Packet, after: Callable[[], J]) -> J:
    """An accepted TCP SYN's verdict, followed by the connection's next packets (`after`
    walks them): a ruleset that lets the SYN in but stops those breaks the connection too,
    and that is then the verdict. Accepted both times: the first packet's path, with what was
    undecided on the second pass added."""
    if first.verdict is not PacketVerdict.ACCEPT or packet.proto_number() != 6:
        return first
    then = after()
    if then.verdict is PacketVerdict.ACCEPT:
        extra = tuple(u for u in then.undecided if u not in first.undecided)
        return replace(first, undecided=first.undecided + extra)
    reason = f"{NEXT_PACKETS}: {then.reason}" if then.reason else ""
    return replace(then, reason=reason, notes=(*then.notes, NEXT_PACKETS))


def fields_json(obj: Any) -> dict[str, Any]:
    """A dataclass of plain values (str, int, None) as JSON: every field, in order."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


class _Json(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class _VerdictLike(Protocol):
    """What the iptables and the nftables engine's verdicts have in common."""

    @property
    def verdict(self) -> PacketVerdict: ...
    @property
    def cause(self) -> int | None: ...
    @property
    def decided_by(self) -> _Json | None: ...
    @property
    def trace(self) -> tuple[_Json, ...]: ...
    @property
    def undecided(self) -> tuple[_Json, ...]: ...
    @property
    def source(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def notes(self) -> tuple[str, ...]: ...
    @property
    def other_blocks(self) -> tuple[_Json, ...]: ...
    @property
    def packet(self) -> Packet | None: ...


def verdict_json(v: _VerdictLike, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of a verdict, either engine's; `extra` keys come after "notes"."""
    doc: dict[str, Any] = {
        "verdict": v.verdict.value,
        "cause": v.cause,
        "decided_by": None if v.decided_by is None else v.decided_by.to_json(),
        "trace": [s.to_json() for s in v.trace],
        "undecided": [u.to_json() for u in v.undecided],
        "source": v.source,
        "reason": v.reason,
        "notes": list(v.notes),
        **(extra or {}),
    }
    if v.packet is not None:
        doc["packet"] = v.packet.to_json()
    if v.other_blocks:
        doc["other_blocks"] = [d.to_json() for d in v.other_blocks]
    return doc
