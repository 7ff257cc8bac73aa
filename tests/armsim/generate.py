"""Large synthetic estates for the scan benchmark (10 / 100 / 500 clusters), deterministic by seed.

The mix mirrors a real subscription: mostly load-balancer clusters on AKS-managed VNets, some
BYO VNets with pod subnets and NIC-level NSGs, a few private clusters and NAT gateways, and a
small share of broken ones (a 10250 deny between pools, failed SNAT connections).
"""

from __future__ import annotations

import random
from typing import Any

from tests.armsim.build import build_estate
from tests.armsim.estate import Estate
from tests.armsim.scenario import parse_scenario

__all__ = ["generate_estate", "generate_scenario"]

_LOCATIONS = ("eastus", "westeurope", "southeastasia")


def _deny_10250(priority: int) -> dict[str, Any]:
    return {"name": "deny-kubelet", "properties": {
        "priority": priority, "direction": "Inbound", "access": "Deny", "protocol": "Tcp",
        "sourceAddressPrefix": "*", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "10250"}}  # fmt: skip


def generate_scenario(
    clusters: int,
    pools_per_cluster: int = 2,
    nodes_per_pool: int = 3,
    seed: int = 0,
    subscription: str = "00000000-0000-0000-0000-00000000b001",
) -> dict[str, Any]:
    """A scenario document (the JSON format) with `clusters` clusters in one subscription."""
    rnd = random.Random(seed)
    vnets: list[dict[str, Any]] = []
    nsgs: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i in range(clusters):
        name = f"aks-{i:04d}"
        rg = f"rg-team-{i % 20:02d}"
        loc = _LOCATIONS[i % len(_LOCATIONS)]
        byo = rnd.random() < 0.3
        private = rnd.random() < 0.15
        broken_nsg = rnd.random() < 0.05
        snat_failing = rnd.random() < 0.05
        pools = []
        for p in range(pools_per_cluster):
            pool: dict[str, Any] = {"name": "system" if p == 0 else f"user{p}",
                                    "mode": "System" if p == 0 else "User",
                                    "count": nodes_per_pool}  # fmt: skip
            if rnd.random() < 0.3:
                pool |= {"minCount": 1, "maxCount": nodes_per_pool * 3, "maxSurge": "33%"}
            if byo:
                pool["subnet"] = f"vnet-{name}/nodes"
            pools.append(pool)
        cluster: dict[str, Any] = {"name": name, "resourceGroup": rg, "location": loc,
                                   "nodeResourceGroup": f"{rg}-{name}-nodes",
                                   "privateCluster": private, "agentPools": pools}  # fmt: skip
        if byo:
            octet = i % 200 + 1
            vnets.append({"name": f"vnet-{name}", "resourceGroup": rg, "location": loc,
                          "addressSpace": [f"10.{octet}.0.0/16"],
                          "subnets": [{"name": "nodes", "addressPrefix": f"10.{octet}.0.0/20"},
                                      {"name": "pods", "addressPrefix": f"10.{octet}.64.0/18"}]})  # fmt: skip
            for pool in pools:
                pool["podSubnet"] = f"vnet-{name}/pods"
        else:
            cluster["networkPluginMode"] = "overlay"
        if broken_nsg:
            cluster["nodeNsgRules"] = [_deny_10250(200)]
        points = 15
        failed = [float(rnd.randint(1, 40)) if snat_failing else 0.0 for _ in range(points)]
        cluster["loadBalancer"] = {
            "frontendIps": [f"20.{i // 250 % 250}.{i % 250}.{j + 1}" for j in range(1 + i % 2)],
            "allocatedOutboundPorts": 0 if rnd.random() < 0.7 else 1024,
            "metrics": [
                {"name": "SnatConnectionCount", "dimensions": {"ConnectionState": "Failed"},
                 "values": failed},
                {"name": "SnatConnectionCount", "dimensions": {"ConnectionState": "Successful"},
                 "values": [float(rnd.randint(100, 900)) for _ in range(points)]},
            ],
        }  # fmt: skip
        out.append(cluster)
    return {"subscriptions": [{"id": subscription, "vnets": vnets, "nsgs": nsgs,
                               "clusters": out}]}  # fmt: skip


def generate_estate(
    clusters: int,
    pools_per_cluster: int = 2,
    nodes_per_pool: int = 3,
    seed: int = 0,
    subscription: str = "00000000-0000-0000-0000-00000000b001",
) -> Estate:
    """generate_scenario, validated and expanded like a scenario file."""
    doc = generate_scenario(clusters, pools_per_cluster, nodes_per_pool, seed, subscription)
    return build_estate(parse_scenario(doc, source=f"generated(clusters={clusters}, seed={seed})"))
