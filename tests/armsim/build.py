"""Scenario -> Estate: the subscription-level network objects, then each cluster (build_cluster).

References by name are resolved here against the objects of the same subscription; an unknown
or ambiguous name raises ScenarioError at the field that holds it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.armsim.estate import Estate, MetricResource, norm
from tests.armsim.scenario import (
    NatGatewaySpec,
    Ref,
    Scenario,
    ScenarioError,
    SubscriptionSpec,
    VnetSpec,
)
from tests.armsim.shapes import det_uuid, nsg_doc, public_ip_doc, rid

__all__ = ["SubscriptionContext", "build_estate"]


@dataclass(slots=True)
class SubscriptionContext:
    """What the cluster builder needs from its subscription: the estate, names, IP allocation."""

    estate: Estate
    source: str
    sub: str
    names: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # kind -> name -> ids
    next_ip: dict[str, int] = field(default_factory=dict)  # lower subnet id -> next host

    def remember(self, kind: str, name: str, resource_id: str) -> None:
        self.names.setdefault(kind, {}).setdefault(name.lower(), []).append(resource_id)

    def resolve(self, ref: Ref, kind: str) -> str:
        """A Ref to a full id: ids pass (if they exist here or point outside), names resolve."""
        if ref.is_id:
            inside = ref.value.lower().startswith(f"/subscriptions/{self.sub.lower()}/")
            if inside and kind != "vnet" and self.estate.get(ref.value) is None:
                raise ScenarioError(self.source, f"{ref.path}: no {kind} with id {ref.value!r}")
            return ref.value
        found = self.names.get(kind, {}).get(ref.value.lower(), [])
        if len(found) != 1:
            what = "no" if not found else "more than one"
            hint = " (write vnet/subnet)" if kind == "subnet" and "/" not in ref.value else ""
            raise ScenarioError(self.source, f"{ref.path}: {what} {kind} named {ref.value!r}{hint}")
        return found[0]

    def allocate_ip(self, subnet_id: str, wanted: str | None = None) -> str:
        subnet = self.estate.get(subnet_id)
        if subnet is None:  # a subnet outside the scenario: nothing to allocate from
            raise ScenarioError(self.source, f"subnet {subnet_id} is not in the scenario")
        net = ipaddress.ip_network(subnet["properties"]["addressPrefix"], strict=False)
        if wanted is not None:
            return wanted
        key = norm(subnet_id)
        offset = self.next_ip.get(key, 4)  # Azure reserves the first four addresses
        self.next_ip[key] = offset + 1
        if offset >= net.num_addresses - 1:
            raise ScenarioError(self.source, f"subnet {subnet_id} has no free address left")
        return str(net.network_address + offset)


def build_estate(scenario: Scenario) -> Estate:
    """Expand a validated scenario into the documents the simulator serves."""
    from tests.armsim.build_cluster import build_cluster  # cycle: clusters use the context

    estate = Estate(metrics_lag_minutes=scenario.metrics_lag_minutes)
    for i, spec in enumerate(scenario.subscriptions):
        estate.subscriptions[spec.id.lower()] = spec.id
        ctx = SubscriptionContext(estate, scenario.source, spec.id)
        try:
            _network(ctx, spec)
            for cluster in spec.clusters:
                build_cluster(ctx, cluster)
        except ValueError as e:  # Estate.add: two resources with one id (same name and group)
            raise ScenarioError(scenario.source, f"subscriptions[{i}]: {e}") from None
        for loc, tags in spec.service_tags.items():
            estate.service_tags[(spec.id.lower(), loc)] = list(tags)
    return estate


def _network(ctx: SubscriptionContext, spec: SubscriptionSpec) -> None:
    sub, est = ctx.sub, ctx.estate
    for a in spec.asgs:
        asg_id = rid(sub, a.resource_group, "Microsoft.Network/applicationSecurityGroups", a.name)
        est.add({"name": a.name, "id": asg_id, "etag": f'W/"{det_uuid(asg_id)}"',
                 "type": "Microsoft.Network/applicationSecurityGroups", "location": a.location,
                 "properties": {"provisioningState": "Succeeded",
                                "resourceGuid": det_uuid(asg_id, "guid")}})  # fmt: skip
        ctx.remember("asg", a.name, asg_id)
    for n in spec.nsgs:
        doc = est.add(nsg_doc(sub, n.resource_group, n.name, n.location, n.rules))
        ctx.remember("nsg", n.name, doc["id"])
    for g in spec.nat_gateways:
        doc = nat_gateway(ctx, g, {})
        ctx.remember("natGateway", g.name, doc["id"])
    for t in spec.route_tables:
        rt_id = rid(sub, t.resource_group, "Microsoft.Network/routeTables", t.name)
        routes = [{"name": name, "id": f"{rt_id}/routes/{name}",
                   "type": "Microsoft.Network/routeTables/routes",
                   "properties": {"provisioningState": "Succeeded", "addressPrefix": prefix,
                                  "nextHopType": hop,
                                  **({"nextHopIpAddress": ip} if ip else {})}}
                  for name, prefix, hop, ip in t.routes]  # fmt: skip
        est.add({"name": t.name, "id": rt_id, "etag": f'W/"{det_uuid(rt_id)}"',
                 "type": "Microsoft.Network/routeTables", "location": t.location,
                 "properties": {"provisioningState": "Succeeded", "routes": routes, "subnets": [],
                                "disableBgpRoutePropagation": False,
                                "resourceGuid": det_uuid(rt_id, "guid")}})  # fmt: skip
        ctx.remember("routeTable", t.name, rt_id)
    for v in spec.vnets:
        vnet(ctx, v)
    for v in spec.vnets:  # peerings may name VNets declared later
        _peerings(ctx, v)


def vnet(ctx: SubscriptionContext, v: VnetSpec) -> dict[str, Any]:
    vnet_id = rid(ctx.sub, v.resource_group, "Microsoft.Network/virtualNetworks", v.name)
    doc: dict[str, Any] = {
        "name": v.name, "id": vnet_id, "etag": f'W/"{det_uuid(vnet_id)}"',
        "type": "Microsoft.Network/virtualNetworks", "location": v.location,
        "properties": {
            "provisioningState": "Succeeded", "resourceGuid": det_uuid(vnet_id, "guid"),
            "addressSpace": {"addressPrefixes": list(v.address_space)},
            "subnets": [], "virtualNetworkPeerings": [], "enableDdosProtection": False,
        },
    }  # fmt: skip
    ctx.estate.add(doc)
    ctx.remember("vnet", v.name, vnet_id)
    for s in v.subnets:
        subnet_id = f"{vnet_id}/subnets/{s.name}"
        props: dict[str, Any] = {
            "provisioningState": "Succeeded", "addressPrefix": s.address_prefix,
            "delegations": [], "privateEndpointNetworkPolicies": "Disabled",
            "privateLinkServiceNetworkPolicies": "Enabled",
        }  # fmt: skip
        for ref, kind, field_name in ((s.nsg, "nsg", "networkSecurityGroup"),
                                      (s.nat_gateway, "natGateway", "natGateway"),
                                      (s.route_table, "routeTable", "routeTable")):  # fmt: skip
            if ref is not None:
                target = ctx.resolve(ref, kind)
                props[field_name] = {"id": target}
                link_subnet(ctx, target, subnet_id)
        if s.delegation:
            props["delegations"] = [{
                "name": "delegation", "id": f"{subnet_id}/delegations/delegation",
                "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
                "properties": {"serviceName": s.delegation, "provisioningState": "Succeeded"},
            }]  # fmt: skip
        subnet = {
            "name": s.name,
            "id": subnet_id,
            "etag": doc["etag"],
            "type": "Microsoft.Network/virtualNetworks/subnets",
            "properties": props,
        }
        doc["properties"]["subnets"].append(subnet)
        ctx.estate.add(subnet)
        ctx.remember("subnet", f"{v.name}/{s.name}", subnet_id)
    return doc


def link_subnet(ctx: SubscriptionContext, target_id: str, subnet_id: str) -> None:
    """Back-references ARM keeps on NSGs, NAT gateways and route tables."""
    target = ctx.estate.get(target_id)
    if target is not None:
        target["properties"].setdefault("subnets", []).append({"id": subnet_id})


def _peerings(ctx: SubscriptionContext, v: VnetSpec) -> None:
    vnet_id = rid(ctx.sub, v.resource_group, "Microsoft.Network/virtualNetworks", v.name)
    doc = ctx.estate.get(vnet_id)
    assert doc is not None
    for p in v.peerings:
        remote_id = ctx.resolve(p.remote_vnet, "vnet")
        remote = ctx.estate.get(remote_id)
        space = list(p.remote_address_space)
        if not space and remote is not None:
            space = list(remote["properties"]["addressSpace"]["addressPrefixes"])
        if not space:
            raise ScenarioError(ctx.source, f"{p.remote_vnet.path}: the remote VNet is outside "
                                "the scenario: give remoteAddressSpace")  # fmt: skip
        peering = {
            "name": p.name, "id": f"{vnet_id}/virtualNetworkPeerings/{p.name}",
            "etag": doc["etag"], "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
            "properties": {
                "provisioningState": "Succeeded", "peeringState": p.state,
                "peeringSyncLevel": "FullyInSync", "remoteVirtualNetwork": {"id": remote_id},
                "remoteAddressSpace": {"addressPrefixes": space},
                "remoteVirtualNetworkAddressSpace": {"addressPrefixes": space},
                "allowVirtualNetworkAccess": True, "allowForwardedTraffic": False,
                "allowGatewayTransit": False, "useRemoteGateways": False,
            },
        }  # fmt: skip
        doc["properties"]["virtualNetworkPeerings"].append(peering)
        ctx.estate.add(peering)


def nat_gateway(
    ctx: SubscriptionContext, g: NatGatewaySpec, tags: dict[str, str]
) -> dict[str, Any]:
    gw_id = rid(ctx.sub, g.resource_group, "Microsoft.Network/natGateways", g.name)
    pips = []
    for i, address in enumerate(g.public_ips or ("20.0.0.100",)):
        pip = public_ip_doc(ctx.sub, g.resource_group, f"{g.name}-pip-{i}", g.location, address,
                            tags)  # fmt: skip
        pip["properties"]["natGateway"] = {"id": gw_id}
        ctx.estate.add(pip)
        pips.append({"id": pip["id"]})
    doc = {
        "name": g.name, "id": gw_id, "etag": f'W/"{det_uuid(gw_id)}"', "location": g.location,
        "tags": tags, "type": "Microsoft.Network/natGateways", "sku": {"name": "Standard"},
        "properties": {
            "provisioningState": "Succeeded", "resourceGuid": det_uuid(gw_id, "guid"),
            "idleTimeoutInMinutes": g.idle_timeout, "publicIpAddresses": pips,
            "publicIpPrefixes": [], "subnets": [],
        },
    }  # fmt: skip
    ctx.estate.add(doc)
    ctx.estate.metrics[norm(gw_id)] = MetricResource("Microsoft.Network/natGateways", g.location,
                                                     g.metrics)  # fmt: skip
    return doc
