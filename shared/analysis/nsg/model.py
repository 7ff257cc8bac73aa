"""The one normalised NSG rule model every evaluation uses.

Whatever shape a rule arrived in (ARM REST, `az ... -o json`, effective rules), it becomes a
`Rule`: singular and plural fields merged, `*`/`Any`/`All` made explicit, ports as integer
ranges, addresses split into concrete ranges (integers, per IP version), service tags and
application security groups. An `Nsg` holds its rules sorted per direction and, built once,
the index that makes evaluating many flows cheap (see index.py).
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.analysis.nsg.index import RuleIndex

__all__ = [
    "ALL_PORTS",
    "Access",
    "AddressSpec",
    "Direction",
    "IpAddress",
    "IpNetwork",
    "IpRange",
    "Nsg",
    "PortRange",
    "Protocol",
    "RangeSet",
    "Rule",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Direction(StrEnum):
    INBOUND = "Inbound"
    OUTBOUND = "Outbound"


class Access(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


class Protocol(StrEnum):
    """Values as ARM and `az network nsg rule create --protocol` spell them."""

    TCP = "Tcp"
    UDP = "Udp"
    ICMP = "Icmp"
    ESP = "Esp"
    AH = "Ah"
    ANY = "*"


@dataclass(frozen=True, slots=True)
class PortRange:
    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


ALL_PORTS = (PortRange(0, 65535),)


@dataclass(frozen=True, slots=True, order=True)
class IpRange:
    """An inclusive range of addresses of one IP version, as integers."""

    version: int
    first: int
    last: int

    @classmethod
    def of(cls, net: IpNetwork) -> IpRange:
        return cls(net.version, int(net.network_address), int(net.broadcast_address))


class RangeSet:
    """A union of IpRanges, merged and sorted per version, for O(log n) membership."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[IpRange]) -> None:
        merged: dict[int, list[list[int]]] = {4: [], 6: []}
        for r in sorted(ranges):
            spans = merged[r.version]
            if spans and r.first <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], r.last)
            else:
                spans.append([r.first, r.last])
        self._starts = {v: [s[0] for s in spans] for v, spans in merged.items()}
        self._ends = {v: [s[1] for s in spans] for v, spans in merged.items()}

    def contains(self, version: int, value: int) -> bool:
        starts = self._starts[version]
        i = bisect.bisect_right(starts, value) - 1
        return i >= 0 and value <= self._ends[version][i]

    def __contains__(self, addr: object) -> bool:
        if isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return self.contains(addr.version, int(addr))
        return False

    def ranges(self) -> list[IpRange]:
        return [
            IpRange(v, s, e)
            for v in (4, 6)
            for s, e in zip(self._starts[v], self._ends[v], strict=True)
        ]

    def __bool__(self) -> bool:
        return bool(self._starts[4] or self._starts[6])


@dataclass(frozen=True, slots=True)
class AddressSpec:
    """One side (source or destination) of a rule: the union of everything it names."""

    any: bool = False
    ranges: tuple[IpRange, ...] = ()  # concrete IPs and CIDRs
    tags: tuple[str, ...] = ()  # service tags as written (resolved against a TagContext)
    asgs: frozenset[str] = frozenset()  # application security group ids, lower-cased
    text: tuple[str, ...] = ()  # what the rule said, for messages
    range_set: RangeSet = field(default_factory=lambda: RangeSet(()), compare=False, repr=False)

    def label(self) -> str:
        return ",".join(self.text) or "*"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    priority: int
    direction: Direction
    access: Access
    protocol: Protocol
    source: AddressSpec
    destination: AddressSpec
    source_ports: tuple[PortRange, ...]
    destination_ports: tuple[PortRange, ...]
    default: bool = False  # one of Azure's default rules (65000+)

    def summary(self) -> str:
        ports = ",".join(str(p) for p in self.destination_ports)
        return (
            f"{self.name} (priority {self.priority}, {self.access.value} {self.protocol.value} "
            f"{self.source.label()} -> {self.destination.label()}:{ports})"
        )


@dataclass(frozen=True, slots=True)
class Nsg:
    """A parsed NSG: identity, rules sorted by priority per direction, and their index."""

    name: str  # "" when the input did not say
    id: str  # ARM resource id, "" when unknown
    resource_group: str  # parsed from the id, "" when unknown
    source: str  # the input it came from, for messages
    inbound: tuple[Rule, ...]
    outbound: tuple[Rule, ...]
    inbound_index: RuleIndex = field(compare=False, repr=False)
    outbound_index: RuleIndex = field(compare=False, repr=False)
    # Precomputed for the fix, which asks for them once per denied flow.
    _priorities: dict[Direction, frozenset[int]] = field(
        init=False, compare=False, repr=False, default_factory=dict
    )
    _names: frozenset[str] = field(init=False, compare=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_priorities",
            {d: frozenset(r.priority for r in self.rules(d)) for d in Direction},
        )
        # Names are unique within an NSG across both directions; Azure compares them
        # case-insensitively in practice, so we do too when avoiding collisions.
        names = frozenset(r.name.lower() for r in (*self.inbound, *self.outbound))
        object.__setattr__(self, "_names", names)

    @property
    def label(self) -> str:
        return self.name or self.source

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.inbound if direction is Direction.INBOUND else self.outbound

    def index(self, direction: Direction) -> RuleIndex:
        return self.inbound_index if direction is Direction.INBOUND else self.outbound_index

    def priorities(self, direction: Direction) -> frozenset[int]:
        return self._priorities[direction]

    def rule_names(self) -> frozenset[str]:
        """Lower-cased rule names of both directions."""
        return self._names
