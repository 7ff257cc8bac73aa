"""Service tags: what VirtualNetwork, Internet, AzureLoadBalancer and file-backed tags contain.

Answers are three-valued (True / False / None = cannot tell, with the reason), because a tag
we cannot resolve must make a rule undecided, never silently match or miss.

- VirtualNetwork: the prefixes the caller passes (the VNet's address space, peered VNets,
  on-premises ranges reached through a gateway, prefixes of user-defined routes) plus the
  host's virtual IP 168.63.129.16, which service-tags-overview.md lists as part of the tag.
  Without prefixes it is undecided. The tag "might also contain default routes" (same
  article): a caller whose UDRs carry 0.0.0.0/0 must pass it.
- Internet: documented as "the IP address space that's outside the virtual network and
  reachable by the public internet". We decide: inside the VirtualNetwork prefixes -> not
  Internet; outside them and globally routable (Python's `is_global`) -> Internet. Private,
  shared (100.64.0.0/10) or otherwise reserved addresses outside the VNet are *undecided*:
  the documentation does not say whether Azure counts them. Without VNet prefixes nothing
  can be decided (a VNet may use public address space).
- AzureLoadBalancer: 168.63.129.16 (documented), nothing else.
- Every other tag (AzureCloud, AzureCloud.westeurope, Storage.EastUS, ...): the prefixes of a
  Service Tags API / download file (`{"values": [{"name", "id", "properties":
  {"addressPrefixes": [...]}}]}`), names compared case-insensitively; absent -> undecided.
Classic spellings (INTERNET, VIRTUAL_NETWORK, AZURE_LOADBALANCER) mean the same tags.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.analysis.nsg.model import IpAddress, IpNetwork, IpRange, RangeSet
from shared.errors import InputError, excerpt

__all__ = [
    "AZURE_HOST_IP",
    "ServiceTags",
    "TagContext",
    "load_service_tags",
]

AZURE_HOST_IP = ipaddress.IPv4Address("168.63.129.16")

_VIRTUAL_NETWORK = "virtualnetwork"
_INTERNET = "internet"
_LOAD_BALANCER = "azureloadbalancer"
_CLASSIC = {
    "virtual_network": _VIRTUAL_NETWORK,
    "internet": _INTERNET,
    "azure_loadbalancer": _LOAD_BALANCER,
}


def canonical_tag(name: str) -> str:
    low = name.lower()
    return _CLASSIC.get(low, low)


@dataclass(frozen=True, slots=True, eq=False)
class ServiceTags:
    """Tag name (lower-cased) -> its prefixes, from one Service Tags document."""

    source: str
    tags: Mapping[str, RangeSet]

    def get(self, name: str) -> RangeSet | None:
        return self.tags.get(canonical_tag(name))

    def __len__(self) -> int:
        return len(self.tags)


def load_service_tags(doc: object, source: str) -> ServiceTags:
    """Read the Service Tags API body or the downloadable JSON file (or a bare `values` list)."""
    if isinstance(doc, dict):
        if "values" not in doc:
            raise InputError(source, "not a service tags document: no 'values' list")
        values = doc["values"]
    else:
        values = doc
    if not isinstance(values, list):
        raise InputError(source, "'values' must be a list of service tags")
    tags: dict[str, RangeSet] = {}
    for i, entry in enumerate(values):
        where = f"service tag #{i}"
        if not isinstance(entry, dict):
            raise InputError(source, f"{where}: expected an object")
        name = entry.get("name", entry.get("id"))
        if not isinstance(name, str) or not name.strip():
            raise InputError(source, f"{where}: field 'name' is missing or not a string")
        where = f"service tag {excerpt(name)} (#{i})"
        props = entry.get("properties")
        if not isinstance(props, dict):
            raise InputError(source, f"{where}: field 'properties' is missing or not an object")
        prefixes = props.get("addressPrefixes")
        if not isinstance(prefixes, list):
            raise InputError(
                source, f"{where}: field 'properties.addressPrefixes' is missing or not a list"
            )
        ranges: list[IpRange] = []
        for j, text in enumerate(prefixes):
            if not isinstance(text, str):
                raise InputError(source, f"{where}: addressPrefixes[{j}] is not a string")
            try:
                net = ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                raise InputError(
                    source, f"{where}: addressPrefixes[{j}] {excerpt(text)} is not a CIDR prefix"
                ) from None
            ranges.append(IpRange.of(net))
        key = canonical_tag(name.strip())
        if key in tags:  # the same tag twice: the union, rather than a silent last-wins
            ranges.extend(tags[key].ranges())
        tags[key] = RangeSet(ranges)
    return ServiceTags(source=source, tags=tags)


@dataclass(frozen=True, slots=True, eq=False)
class TagContext:
    """What the evaluator knows about tags: VNet prefixes (None = not given) and a tag file."""

    vnet_prefixes: tuple[IpNetwork, ...] | None = None
    service_tags: ServiceTags | None = None
    _vnet: RangeSet | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.vnet_prefixes is not None:
            ranges = [IpRange.of(n) for n in self.vnet_prefixes]
            ranges.append(IpRange(4, int(AZURE_HOST_IP), int(AZURE_HOST_IP)))
            object.__setattr__(self, "_vnet", RangeSet(ranges))

    def contains(self, tag: str, addr: IpAddress) -> tuple[bool | None, str]:
        """Whether `addr` is in service tag `tag`; None with the reason when we cannot tell."""
        key = canonical_tag(tag)
        if key == _LOAD_BALANCER:
            return addr == AZURE_HOST_IP, ""
        if key == _VIRTUAL_NETWORK:
            if self._vnet is None:
                return None, f"tag {tag} needs the VNet address space (--vnet-prefix)"
            return addr in self._vnet, ""
        if key == _INTERNET:
            if self._vnet is None:
                return None, f"tag {tag} needs the VNet address space (--vnet-prefix)"
            if addr in self._vnet:
                return False, ""
            if addr.is_global:
                return True, ""
            return None, (
                f"tag {tag}: {addr} is outside the VirtualNetwork prefixes but not publicly "
                "routable; Azure's documentation does not say whether Internet includes it"
            )
        if self.service_tags is None:
            return None, f"service tag {tag} needs a service tags file (--service-tags)"
        prefixes = self.service_tags.get(tag)
        if prefixes is None:
            return None, f"service tag {tag} is not in {self.service_tags.source}"
        return addr in prefixes, ""
