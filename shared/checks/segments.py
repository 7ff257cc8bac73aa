"""Representative addresses: the fewest addresses of a subnet that see every NSG decision.

An NSG rule matches an address by membership in its prefixes, so every address between two
consecutive prefix boundaries gets the same answer from every rule. Cutting a subnet at the
boundaries of the prefixes the relevant rules name (and of the VirtualNetwork tag) gives
segments; one address per segment answers for the whole segment. A subnet named by no rule is
one segment, so a typical estate evaluates one flow per subnet pair, yet a rule that names a
single address inside a subnet is never missed.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from shared.analysis.nsg import Nsg

__all__ = ["Segment", "nsg_boundaries", "segments"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A subnet cut by hundreds of single-address rules would give hundreds of segments; past this,
# the remaining boundaries are merged and the finding says the evaluation was sampled.
MAX_SEGMENTS = 64


@dataclass(frozen=True, slots=True)
class Segment:
    first: IpAddress
    last: IpAddress

    @property
    def representative(self) -> IpAddress:
        # Azure reserves the first four addresses of a subnet; a host address reads better in
        # findings and is equivalent for every rule (same segment).
        if int(self.last) - int(self.first) >= 4:
            return self.first + 4
        return self.first

    def label(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def nsg_boundaries(nsgs: Iterable[Nsg | None], extra: Iterable[IpNetwork] = ()) -> list[int]:
    """Integer start points of every prefix the rules of these NSGs name (both sides), plus
    the first address after each, plus the same for `extra` (VirtualNetwork prefixes)."""
    cuts: set[int] = set()
    for nsg in nsgs:
        if nsg is None:
            continue
        for rule in (*nsg.inbound, *nsg.outbound):
            for spec in (rule.source, rule.destination):
                for r in spec.ranges:
                    if r.version == 4:
                        cuts.add(r.first)
                        cuts.add(r.last + 1)
    for net in extra:
        if net.version == 4:
            cuts.add(int(net.network_address))
            cuts.add(int(net.broadcast_address) + 1)
    return sorted(cuts)


def segments(subnet: IpNetwork, boundaries: list[int]) -> tuple[tuple[Segment, ...], bool]:
    """The subnet cut at the boundaries inside it; True when MAX_SEGMENTS capped the cut."""
    start, end = int(subnet.network_address), int(subnet.broadcast_address)
    if subnet.version != 4:
        boundaries = []  # nsg_boundaries collects IPv4 cuts only
    cuts = [b for b in boundaries if start < b <= end]
    capped = len(cuts) + 1 > MAX_SEGMENTS
    if capped:
        step = len(cuts) / (MAX_SEGMENTS - 1)
        cuts = sorted({cuts[int(i * step)] for i in range(MAX_SEGMENTS - 1)})
    edges = [start, *cuts, end + 1]
    make = type(subnet.network_address)
    out = tuple(Segment(make(lo), make(hi - 1)) for lo, hi in itertools.pairwise(edges) if hi > lo)
    return out, capped
