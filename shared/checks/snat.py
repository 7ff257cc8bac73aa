"""SNAT checks of one cluster (cause 5): which resource to read, its verdict, and the capacity.

Cause 5 concerns public clusters, whose tunnel leaves through the outbound load balancer (the
article) or a NAT gateway (our addition). Private clusters, VNet-integrated API servers and
userDefinedRouting/none egress are skipped with the reason recorded: their tunnel does not use
these SNAT ports (or uses an appliance tunnelwatch cannot see).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.analysis.findings import Finding, Subject
from shared.analysis.snat import ResourceKind, evaluate, parse_metrics, snat_capacity
from shared.analysis.snat.capacity import Capacity
from shared.analysis.snat.remedies import capacity_findings, findings
from shared.errors import InputError
from shared.inventory.model import Cluster, Estate, LoadBalancer, NatGateway, Read, id_key

__all__ = [
    "SnatTarget",
    "snat_capacity_of",
    "snat_findings",
    "snat_inputs",
    "snat_target",
    "surge_nodes",
]

OUTBOUND_LB_NAME = "kubernetes"
DEFAULT_SURGE = "10%"  # AKS's default maxSurge for new node pools (older pools: 1 node)


@dataclass(frozen=True, slots=True)
class SnatTarget:
    resource_id: str
    nat_gateway: bool
    load_balancer: LoadBalancer | None = None
    nat: NatGateway | None = None


def snat_inputs(cluster: Cluster) -> frozenset[Read]:
    """The ARM reads this cluster's SNAT check needs; empty where SNAT does not apply (the
    check then runs and finds nothing). With one of them missing, or the resource not found
    in them, the check did not run: its open findings are held, never resolved."""
    if cluster.private_cluster or cluster.vnet_integration:
        return frozenset()
    kind = cluster.outbound_type.lower()
    if kind == "loadbalancer":
        return frozenset({Read.LOAD_BALANCERS})
    if kind == "managednatgateway":
        return frozenset({Read.NAT_GATEWAYS})
    if kind == "userassignednatgateway":
        return frozenset(
            {Read.NAT_GATEWAYS, Read.VNETS, Read.NETWORK_REFERENCE, Read.NAT_REFERENCE}
        )
    return frozenset()


def snat_target(estate: Estate, cluster: Cluster) -> SnatTarget | str:
    """The resource whose SNAT ports the tunnel uses, or why there is none to check."""
    if cluster.private_cluster:
        return "private cluster: the API server is in the VNet, the tunnel does not use SNAT"
    if cluster.vnet_integration:
        return "API Server VNet Integration: no tunnel through the outbound SNAT ports"
    kind = cluster.outbound_type.lower()
    node_rg = cluster.node_resource_group.lower()
    if kind == "loadbalancer":
        for lb in estate.load_balancers:
            if lb.name.lower() == OUTBOUND_LB_NAME and lb.resource_group.lower() == node_rg:
                return SnatTarget(lb.id, nat_gateway=False, load_balancer=lb)
        return "outbound load balancer 'kubernetes' not found in the node resource group"
    if kind == "managednatgateway":
        for nat in estate.nat_gateways:
            if nat.resource_group.lower() == node_rg:
                return SnatTarget(nat.id, nat_gateway=True, nat=nat)
        return "managed NAT gateway not found in the node resource group"
    if kind == "userassignednatgateway":
        wanted = set()
        for pool in cluster.pools:
            found = estate.subnet(pool.node_subnet_id)
            if found and found[1].nat_gateway_id:
                wanted.add(id_key(found[1].nat_gateway_id))
        for nat in estate.nat_gateways:
            if id_key(nat.id) in wanted:
                return SnatTarget(nat.id, nat_gateway=True, nat=nat)
        return "user-assigned NAT gateway not found on the node subnets"
    return f"outbound type {cluster.outbound_type}: egress goes through your own route/appliance"


def surge_nodes(max_nodes: int, max_surge: str) -> int:
    """Nodes an upgrade adds on top of `max_nodes` ("33%" rounds up, "" is AKS's default)."""
    text = (max_surge or DEFAULT_SURGE).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            return 1
        return max(1, math.ceil(max_nodes * percent / 100)) if max_nodes else 0
    try:
        return max(0, int(text))
    except ValueError:
        return 1


def snat_capacity_of(cluster: Cluster, lb: LoadBalancer) -> Capacity | None:
    """Whether the cluster at its autoscaler maximum plus upgrade surge fits the SNAT ports."""
    rule = next(iter(lb.outbound_rules), None)
    frontends = rule.frontend_ip_count if rule else lb.frontend_ip_count
    ports = rule.allocated_outbound_ports if rule else 0
    pools = [p for p in cluster.pools if p.pool_type == "VirtualMachineScaleSets"]
    max_nodes = sum(p.max_count if p.max_count is not None else p.count for p in pools)
    surge = sum(
        surge_nodes(p.max_count if p.max_count is not None else p.count, p.max_surge) for p in pools
    )
    if frontends < 1 or max_nodes < 1:
        return None
    try:
        return snat_capacity(frontends, ports, max_nodes, surge)
    except InputError:
        return None  # ARM reported an allocation AKS would not accept; nothing to compute


def snat_findings(
    cluster: Cluster,
    target: SnatTarget,
    metrics: dict[str, Any],
    *,
    threshold: int,
    window: int,
    min_bad: int,
    now: datetime,
) -> list[Finding]:
    subject = Subject(
        subscription=cluster.subscription, cluster=cluster.id, resource=target.resource_id
    )
    kind = ResourceKind.NAT_GATEWAY if target.nat_gateway else ResourceKind.LOAD_BALANCER
    report = evaluate(
        parse_metrics(metrics, target.resource_id),
        target.resource_id,
        kind=kind,
        threshold=float(threshold),
        window=window,
        min_bad=min_bad,
        now=now,
    )
    capacity = snat_capacity_of(cluster, target.load_balancer) if target.load_balancer else None
    out = list(
        findings(
            report,
            subject,
            resource_group=cluster.resource_group,
            cluster=cluster.name,
            capacity=capacity,
        )
    )
    if capacity is not None:
        out += capacity_findings(
            capacity, subject, resource_group=cluster.resource_group, cluster=cluster.name
        )
    return out
