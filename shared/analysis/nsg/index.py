"""A precomputed index over one direction of one NSG, so that evaluating a flow is cheap.

Rules are numbered in priority order and every lookup returns a bitset (a Python int) of
the rules that *may* match one field of the flow: protocol, source port, destination port,
source address, destination address. The AND of the five is a small superset of the rules
that match or might match; evaluate.py then checks only those, lowest bit (= highest
priority) first. Parts that depend on the TagContext (service tags, VirtualNetwork, ASGs)
are not indexed: such rules are always candidates and the exact check decides.

Interval bitsets are built with XOR toggles at range boundaries and a prefix XOR, so the
build is linear in ranges + segments rather than rules x segments.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from shared.analysis.nsg.model import PortRange, Protocol, Rule

__all__ = ["RuleIndex", "SegmentIndex", "build_index"]


class SegmentIndex:
    """Maps an integer to the bitset of rules whose ranges cover it."""

    __slots__ = ("_always", "_bits", "_points")

    def __init__(self, spans_per_rule: Sequence[Sequence[tuple[int, int]] | None]) -> None:
        always = 0
        merged: list[tuple[int, list[tuple[int, int]]]] = []
        points_set: set[int] = set()
        for i, spans in enumerate(spans_per_rule):
            if spans is None:  # matches every value (or is decided later)
                always |= 1 << i
                continue
            own: list[tuple[int, int]] = []
            for a, b in sorted(spans):
                # Coalesce a rule's own overlapping spans so the XOR toggles stay correct.
                if own and a <= own[-1][1] + 1:
                    own[-1] = (own[-1][0], max(own[-1][1], b))
                else:
                    own.append((a, b))
            merged.append((i, own))
            for a, b in own:
                points_set.add(a)
                points_set.add(b + 1)
        points = sorted(points_set)
        toggles = [0] * (len(points) + 1)
        for i, own in merged:
            bit = 1 << i
            for a, b in own:
                toggles[bisect.bisect_left(points, a)] ^= bit
                toggles[bisect.bisect_left(points, b + 1)] ^= bit
        bits: list[int] = []
        acc = 0
        for t in toggles[: len(points)]:
            acc ^= t
            bits.append(acc)
        self._always = always
        self._points = points
        self._bits = bits

    def lookup(self, value: int) -> int:
        k = bisect.bisect_right(self._points, value) - 1
        return self._always | (self._bits[k] if k >= 0 else 0)


def _port_spans(ports: tuple[PortRange, ...]) -> list[tuple[int, int]]:
    return [(p.low, p.high) for p in ports]


@dataclass(frozen=True, slots=True)
class RuleIndex:
    all_bits: int
    by_protocol: dict[Protocol, int]
    source_ports: SegmentIndex
    destination_ports: SegmentIndex
    source_addresses: dict[int, SegmentIndex]  # per IP version
    destination_addresses: dict[int, SegmentIndex]

    def candidates(
        self,
        protocol: Protocol,
        source_port: int | None,
        destination_port: int,
        src_version: int,
        src: int,
        dst_version: int,
        dst: int,
    ) -> int:
        bits = self.by_protocol.get(protocol, 0) & self.destination_ports.lookup(destination_port)
        if source_port is not None:  # unknown source port: every rule stays a candidate
            bits &= self.source_ports.lookup(source_port)
        if not bits:
            return 0
        bits &= self.source_addresses[src_version].lookup(src)
        return bits & self.destination_addresses[dst_version].lookup(dst)


def build_index(rules: Sequence[Rule]) -> RuleIndex:
    """Index rules that are already in evaluation (priority) order."""
    all_bits = (1 << len(rules)) - 1
    by_protocol: dict[Protocol, int] = {p: 0 for p in Protocol if p is not Protocol.ANY}
    for i, rule in enumerate(rules):
        for p in by_protocol:
            if rule.protocol is Protocol.ANY or rule.protocol is p:
                by_protocol[p] |= 1 << i

    def addr_index(version: int, side: str) -> SegmentIndex:
        spans: list[list[tuple[int, int]] | None] = []
        for rule in rules:
            spec = rule.source if side == "source" else rule.destination
            if spec.any or spec.tags or spec.asgs:
                spans.append(None)
            else:
                spans.append([(r.first, r.last) for r in spec.ranges if r.version == version])
        return SegmentIndex(spans)

    return RuleIndex(
        all_bits=all_bits,
        by_protocol=by_protocol,
        source_ports=SegmentIndex([_port_spans(r.source_ports) for r in rules]),
        destination_ports=SegmentIndex([_port_spans(r.destination_ports) for r in rules]),
        source_addresses={v: addr_index(v, "source") for v in (4, 6)},
        destination_addresses={v: addr_index(v, "destination") for v in (4, 6)},
    )
