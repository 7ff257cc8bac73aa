"""Microsoft.Network documents -> inventory dataclasses: VNets, subnets, NSGs, LBs, NAT gateways.

Pure functions over REST-shaped dicts (see rest.py); the ARM calls live in arm_inventory.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.adapters.arm_documents.rest import (
    as_doc,
    boolean,
    docs,
    integer,
    props,
    ref_id,
    text,
    texts,
)
from shared.inventory.model import (
    LoadBalancer,
    NatGateway,
    NsgDocument,
    OutboundRule,
    Subnet,
    VirtualNetwork,
    resource_group_of,
)

__all__ = [
    "map_load_balancer",
    "map_nat_gateway",
    "map_nsg",
    "map_subnet",
    "map_vnet",
    "peered_prefixes",
]

# AKS leaves idle timeouts unset on some resources; ARM documents 4 minutes as the default for
# both the load balancer outbound rule and the NAT gateway.
_DEFAULT_IDLE_TIMEOUT = 4


def _name(doc: Mapping[str, Any], resource_id: str) -> str:
    return text(doc, "name") or resource_id.rstrip("/").rsplit("/", 1)[-1]


def _unique(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def map_subnet(doc: Mapping[str, Any]) -> Subnet:
    p = props(doc)
    resource_id = text(doc, "id") or ""
    # ARM writes a single-prefix subnet as addressPrefix and a multi-prefix one as
    # addressPrefixes; some responses carry both.
    prefixes = _unique([text(p, "addressPrefix") or "", *texts(p, "addressPrefixes")])
    return Subnet(
        id=resource_id,
        name=_name(doc, resource_id),
        prefixes=prefixes,
        nsg_id=ref_id(p, "networkSecurityGroup"),
        nat_gateway_id=ref_id(p, "natGateway"),
        route_table_id=ref_id(p, "routeTable"),
    )


def peered_prefixes(vnet_doc: Mapping[str, Any]) -> tuple[str, ...]:
    """Remote address spaces that the VirtualNetwork tag covers for this VNet.

    Only peerings that are Connected and allow virtual network access count: with
    allowVirtualNetworkAccess off, Azure takes the peer out of the VirtualNetwork tag
    (virtual-network-manage-peering.md). remoteAddressSpace is the space actually peered;
    remoteVirtualNetworkAddressSpace (the remote's current space) is the fallback.
    """
    out: list[str] = []
    for peering in docs(props(vnet_doc), "virtualNetworkPeerings"):
        p = props(peering)
        if (text(p, "peeringState") or "").lower() != "connected":
            continue
        if boolean(p, "allowVirtualNetworkAccess") is False:
            continue
        space = texts(p, "remoteAddressSpace", "addressPrefixes") or texts(
            p, "remoteVirtualNetworkAddressSpace", "addressPrefixes"
        )
        out.extend(space)
    return _unique(out)


def map_vnet(doc: Mapping[str, Any]) -> VirtualNetwork:
    p = props(doc)
    resource_id = text(doc, "id") or ""
    return VirtualNetwork(
        id=resource_id,
        name=_name(doc, resource_id),
        location=text(doc, "location") or "",
        address_prefixes=_unique(texts(p, "addressSpace", "addressPrefixes")),
        peered_prefixes=peered_prefixes(doc),
        subnets=tuple(map_subnet(s) for s in docs(p, "subnets")),
    )


def map_nsg(doc: Mapping[str, Any]) -> NsgDocument:
    """The NSG as its REST document; shared.analysis.nsg.parse_nsg reads it later."""
    document = as_doc(doc)
    resource_id = text(document, "id") or ""
    return NsgDocument(id=resource_id, name=_name(document, resource_id), document=document)


def _outbound_rule(doc: Mapping[str, Any]) -> OutboundRule:
    p = props(doc)
    return OutboundRule(
        name=text(doc, "name") or "",
        allocated_outbound_ports=integer(p, "allocatedOutboundPorts") or 0,
        idle_timeout_minutes=integer(p, "idleTimeoutInMinutes") or _DEFAULT_IDLE_TIMEOUT,
        frontend_ip_count=len(docs(p, "frontendIPConfigurations")),
    )


def map_load_balancer(doc: Mapping[str, Any]) -> LoadBalancer:
    p = props(doc)
    resource_id = text(doc, "id") or ""
    frontends = docs(p, "frontendIPConfigurations")
    private_ips = _unique([text(props(f), "privateIPAddress") or "" for f in frontends])
    return LoadBalancer(
        id=resource_id,
        name=_name(doc, resource_id),
        resource_group=resource_group_of(resource_id),
        frontend_ip_count=len(frontends),
        outbound_rules=tuple(_outbound_rule(r) for r in docs(p, "outboundRules")),
        private_frontend_ips=private_ips,
    )


def map_nat_gateway(doc: Mapping[str, Any]) -> NatGateway:
    p = props(doc)
    resource_id = text(doc, "id") or ""
    return NatGateway(
        id=resource_id,
        name=_name(doc, resource_id),
        resource_group=resource_group_of(resource_id),
        idle_timeout_minutes=integer(p, "idleTimeoutInMinutes") or _DEFAULT_IDLE_TIMEOUT,
        public_ip_count=len(docs(p, "publicIpAddresses")),
        public_ip_prefix_count=len(docs(p, "publicIpPrefixes")),
        subnet_ids=_unique([text(s, "id") or "" for s in docs(p, "subnets")]),
    )
