"""SNAT checks of a cluster: which resource, skip reasons, surge, capacity, findings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from shared.analysis.findings import Cause, Kind, Origin
from shared.checks.snat import SnatTarget, snat_capacity_of, snat_findings, snat_target, surge_nodes
from shared.inventory.model import (
    Estate,
    LoadBalancer,
    NatGateway,
    OutboundRule,
    Subnet,
    VirtualNetwork,
)
from tests.unit.test_checks_paths import SUB, SYS_SUBNET, VNET_ID, cluster, pool

METRICS = Path(__file__).resolve().parents[2] / "examples" / "inputs" / "lb-snat-metrics.json"
NODE_RG = "rg-aks-nodes"
LB = LoadBalancer(
    f"/subscriptions/{SUB}/resourceGroups/{NODE_RG}/providers/Microsoft.Network/loadBalancers/kubernetes",
    "kubernetes", NODE_RG, 1, (OutboundRule("aksOutboundRule", 0, 30, 1),),
)  # fmt: skip
NAT_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/natGateways/nat-egress"
)
NAT = NatGateway(NAT_ID, "nat-egress", "rg-net", 4, 2, 0, (SYS_SUBNET,))


def estate(**kw: object) -> Estate:
    subnet = Subnet(SYS_SUBNET, "snet-system", ("10.1.0.0/24",), None, NAT_ID, None)
    vnet = VirtualNetwork(VNET_ID, "vnet", "westeurope", ("10.1.0.0/16",), (), (subnet,))
    return Estate(SUB, (), (vnet,), (), (LB,), (NAT,))


def test_targets_and_skip_reasons() -> None:
    e = estate()
    c = cluster(pool("system", SYS_SUBNET))
    got = snat_target(e, c)
    assert isinstance(got, SnatTarget)
    assert got.load_balancer == LB
    assert "private cluster" in str(snat_target(e, cluster(private_cluster=True)))
    assert "VNet Integration" in str(snat_target(e, cluster(vnet_integration=True)))
    assert "userDefinedRouting" in str(snat_target(e, cluster(outbound_type="userDefinedRouting")))
    user_nat = snat_target(
        e, cluster(pool("system", SYS_SUBNET), outbound_type="userAssignedNATGateway")
    )
    assert isinstance(user_nat, SnatTarget)
    assert user_nat.nat == NAT
    assert user_nat.nat_gateway
    other_rg = cluster(pool("system", SYS_SUBNET), node_resource_group="MC_other")
    assert "not found" in str(snat_target(e, other_rg))


def test_surge() -> None:
    assert surge_nodes(10, "33%") == 4
    assert surge_nodes(10, "") == 1  # AKS default 10%, rounded up
    assert surge_nodes(100, "") == 10
    assert surge_nodes(10, "3") == 3
    assert surge_nodes(0, "50%") == 0


def test_capacity_counts_autoscaler_maximum_and_surge() -> None:
    big = pool("system", SYS_SUBNET, count=3)
    from dataclasses import replace

    big = replace(big, max_count=200, max_surge="10%")
    cap = snat_capacity_of(cluster(big), LB)
    assert cap is not None
    assert cap.to_json()["nodes"] == 220  # 200 at the maximum + 20 surge


def test_findings_from_metrics_with_exhaustion() -> None:
    c = cluster(pool("system", SYS_SUBNET))
    doc = json.loads(METRICS.read_text())
    found = snat_findings(
        c, SnatTarget(LB.id, False, load_balancer=LB), doc, threshold=80, window=5, min_bad=3,
        now=datetime(2026, 11, 21, 9, 7, tzinfo=UTC),
    )  # fmt: skip
    problems = [f for f in found if f.kind is Kind.PROBLEM]
    assert problems
    assert all(f.cause is Cause.SNAT for f in problems)
    assert problems[0].origin is Origin.ARTICLE
    assert problems[0].subject.resource == LB.id
    assert any(
        "az aks update -g rg-aks -n aks1" in cmd
        for f in problems
        for cmd in (f.remediation.commands if f.remediation else ())
    )
