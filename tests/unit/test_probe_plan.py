"""The probe plan: the cycle within budget, requests against the inventory, run slices, follow-ups."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.adapters.tables.model import Coverage, FindingState, Observation, StoredFinding
from shared.adapters.tables.plan import plan_cluster_write
from shared.analysis.findings import Finding, Kind, Severity, Subject
from shared.errors import InputError
from shared.inventory.model import AgentPool, Cluster, Estate, Instance, PowerState
from shared.jobs.probe_plan import (
    Resolved,
    cycle_requests,
    deep_follow_ups,
    plan_runs,
    resolve_request,
)
from shared.probe.params import MAX_TARGETS
from shared.probe_requests import ProbeKind, ProbeRequest

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SUB = "22222222-2222-2222-2222-222222222222"


def _pool(name: str, n: int, *, os_type: str = "Linux", base: int = 0, **tags: str) -> AgentPool:
    vmss = f"aks-{name}-12345678-vmss"
    instances = tuple(
        Instance(str(i), f"{vmss}_{i}", f"{vmss}{i:06d}", PowerState.RUNNING,
                 (str(ipaddress.IPv4Address("10.224.0.4") + base + i),))
        for i in range(n)
    )  # fmt: skip
    return AgentPool(
        name, "System", os_type, "VirtualMachineScaleSets", n, None, None, "", None, None,
        tags=dict(tags), vmss_name=vmss, instances=instances,
    )  # fmt: skip


def _cluster(name: str, *pools: AgentPool, **tags: str) -> Cluster:
    return Cluster(
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/"
        f"managedClusters/{name}",
        name, SUB, "rg", "eastus", f"MC_rg_{name}_eastus", "loadBalancer", False, False, None,
        f"{name}-dns.hcp.eastus.azmk8s.io", None, "azure", "", None, "Unrestricted", "Running",
        pools=pools, tags=dict(tags),
    )  # fmt: skip


def _estate(*clusters: Cluster) -> Estate:
    return Estate(SUB, clusters, (), (), (), ())


def _request(cluster: Cluster, pool: AgentPool, iid: str = "0", **kw: object) -> ProbeRequest:
    r = ProbeRequest.new(
        ProbeKind.TRIAGE, run_id="c1", subscription=SUB, cluster_id=cluster.id,
        node_resource_group=cluster.node_resource_group, vmss=pool.vmss_name or "",
        instance_id=iid, reason="t", now=NOW,
    )  # fmt: skip
    return replace(r, **kw)  # type: ignore[arg-type]


def test_cycle_is_one_triage_per_probeable_pool_and_never_more_than_the_budget() -> None:
    clusters = [
        _cluster(f"c{i}", _pool("system", 3), _pool("user", 5, base=10), _pool("win", 2, os_type="Windows", base=20))
        for i in range(4)
    ]  # fmt: skip
    clusters.append(_cluster("off", _pool("system", 2), **{"tunnelwatch-probe": "off"}))
    requests, skipped, _ = cycle_requests(
        [_estate(*clusters)], cycle_id="c", budget=100, now=NOW, reason="r"
    )
    assert len(requests) == 8  # 4 clusters x 2 Linux pools; not 4 x 10 nodes
    assert sum("Windows" in s for s in skipped) == 4 and any("probe=off" in s for s in skipped)
    few, left, _ = cycle_requests([_estate(*clusters)], cycle_id="c", budget=3, now=NOW, reason="r")
    assert len(few) == 3 and sum("budget" in s for s in left) == 5
    # A quarter of a larger budget is kept for the deep probes and retries triages lead to.
    most, rest, _ = cycle_requests(
        [_estate(*clusters)], cycle_id="c", budget=8, now=NOW, reason="r"
    )
    assert len(most) == 6 and sum("(6 for triages)" in s for s in rest) == 2
    # Another cycle starts elsewhere: over enough cycles every pool gets its turn.
    seen = set()
    for n in range(20):
        got, _, _ = cycle_requests(
            [_estate(*clusters)], cycle_id=f"cycle-{n}", budget=3, now=NOW, reason="r"
        )
        seen |= {(r.cluster_id, r.vmss) for r in got}
    assert len(seen) == 8
    assert (
        cycle_requests([_estate(*clusters)], cycle_id="c", budget=0, now=NOW, reason="r")[0] == []
    )


def test_requests_are_checked_against_the_inventory() -> None:
    pool = _pool("system", 2)
    cluster = _cluster("a", pool)
    estate = _estate(cluster)
    ok = resolve_request(_request(cluster, pool), estate, [SUB])
    assert isinstance(ok, Resolved) and ok.instance.instance_id == "0"
    for bad, what in (
        (_request(cluster, pool, "7"), "instance 7"),
        (_request(cluster, pool, vmss="aks-other-1-vmss"), "scale set"),
        (_request(cluster, pool, node_resource_group="MC_x"), "node resource group"),
    ):
        with pytest.raises(InputError, match=what):
            resolve_request(bad, estate, [SUB])
    with pytest.raises(InputError, match="not one we watch"):
        resolve_request(_request(cluster, pool), estate, ["33333333-3333-3333-3333-333333333333"])


def test_a_stopped_triage_node_is_replaced_by_a_running_one_of_its_pool() -> None:
    pool = _pool("system", 2)
    stopped = replace(pool.instances[0], power_state=PowerState.DEALLOCATED)
    pool = replace(pool, instances=(stopped, pool.instances[1]))
    cluster = _cluster("a", pool)
    got = resolve_request(_request(cluster, pool), _estate(cluster), [SUB])
    assert isinstance(got, Resolved) and got.instance.instance_id == "1"
    assert "deallocated" in got.note
    deep = resolve_request(_request(cluster, pool, kind=ProbeKind.DEEP), _estate(cluster), [SUB])
    assert isinstance(deep, str) and "deallocated" in deep


def test_big_clusters_are_tested_in_slices_and_the_api_only_once() -> None:
    pool = _pool("system", 2 * MAX_TARGETS + 50)
    cluster = _cluster("big", pool)
    runs, _ = plan_runs(ProbeKind.TRIAGE, Resolved(cluster, pool, pool.instances[0]))
    assert [len(r.peers) for r in runs] == [MAX_TARGETS, MAX_TARGETS, 49]
    assert [r.tests_api for r in runs] == [True, False, False]
    assert sum(len(r.peers) for r in runs) == 2 * MAX_TARGETS + 49


def test_inventory_values_that_are_not_addresses_never_reach_the_parameters() -> None:
    pool = _pool("system", 2)
    odd = replace(pool.instances[1], private_ips=("10.0.0.1;reboot", "fd00::5"))
    pool = replace(pool, instances=(pool.instances[0], odd))
    cluster = _cluster("a", pool)
    runs, _ = plan_runs(ProbeKind.TRIAGE, Resolved(cluster, pool, pool.instances[0]))
    assert dict(runs[0].parameters)["TW_TARGETS"] == ""
    bad_host = replace(cluster, fqdn="api.example.com;reboot")
    with pytest.raises(InputError, match="TW_API_HOST"):
        plan_runs(ProbeKind.TRIAGE, Resolved(bad_host, pool, pool.instances[0]))


def _blocked(cluster: Cluster, ip: str) -> Finding:
    return Finding(
        check="node.kubelet", cause=None, kind=Kind.PROBLEM, severity=Severity.CRITICAL,
        subject=Subject(SUB, cluster.id, "", "n", ip), title="t", key=ip,
    )  # fmt: skip


def test_deep_follow_ups_are_the_affected_nodes_within_the_limit_with_stable_ids() -> None:
    pool = _pool("system", 6)
    cluster = _cluster("a", pool)
    resolved = Resolved(cluster, pool, pool.instances[0])
    triage = _request(cluster, pool)
    blocked = [_blocked(cluster, i.private_ips[0]) for i in pool.instances[1:4]]
    recheck = [pool.instances[5].computer_name]
    got, left = deep_follow_ups(triage, resolved, blocked, recheck, limit=3, now=NOW)
    assert len(got) == 3 and len(left) == 1 and "limit" in left[0]
    # The re-check of a node that may be fixed does not wait behind the unreachable ones.
    assert got[1].instance_id == "5" and "re-check" in got[1].reason
    assert {r.instance_id for r in got} < {"1", "2", "3", "5"}
    again, _ = deep_follow_ups(triage, resolved, blocked, recheck, limit=3, now=NOW)
    assert [r.request_id for r in again] == [r.request_id for r in got]  # redelivery-safe
    every, none_left = deep_follow_ups(triage, resolved, blocked, recheck, limit=10, now=NOW)
    assert sorted(r.instance_id for r in every) == ["1", "2", "3", "5"] and none_left == []
    # Over the limit, the unreachable nodes probed rotate with the cycle: none is left out
    # every hour.
    probed = set()
    for n in range(12):
        cycle = replace(triage, run_id=f"probe-cycle-{n}")
        some, _ = deep_follow_ups(cycle, resolved, blocked, [], limit=1, now=NOW)
        probed |= {r.instance_id for r in some}
    assert probed == {"1", "2", "3"}


def test_a_writer_resolves_only_the_findings_of_its_own_scope() -> None:
    cluster = _cluster("a", _pool("system", 1))
    nsg = replace(_blocked(cluster, "10.0.0.1"), check="nsg.path", key="nsg")
    node = _blocked(cluster, "10.0.0.2")
    existing = {  # each missed by one clean observation already: the next one resolves it
        f.fingerprint: StoredFinding(
            f.fingerprint, cluster.id, SUB, FindingState.OPEN, f, NOW, scope=s, missed=1
        )
        for f, s in ((nsg, "scan"), (node, "probe:triage:system"))
    }  # fmt: skip
    scan = plan_cluster_write(
        Observation(cluster.id, Coverage.COMPLETE, ()), existing, run_id="r", now=NOW
    )
    assert [f.fingerprint for f in scan.flips] == [nsg.fingerprint]
    probe = plan_cluster_write(
        Observation(cluster.id, Coverage.COMPLETE, (), scope="probe:triage:system"), existing,
        run_id="r", now=NOW,
    )  # fmt: skip
    assert [f.fingerprint for f in probe.flips] == [node.fingerprint]
    with pytest.raises(ValueError, match="scope"):
        Observation(cluster.id, Coverage.COMPLETE, (), scope="bad scope/with slash")


def _in_group(name: str, rg: str, node_rg: str, *pools: AgentPool) -> Cluster:
    cluster = _cluster(name, *pools)
    return replace(
        cluster, id=cluster.id.replace("/rg/", f"/{rg}/"), resource_group=rg,
        node_resource_group=node_rg,
    )  # fmt: skip


def test_one_unusual_name_refuses_its_own_pool_only() -> None:
    # Before (issue 15, defect 3): rg-café raised InputError out of cycle_requests, and the
    # cycle queued nothing for any cluster.
    cafe = _in_group("c-cafe", "rg-café", "MC_rg-café_c-cafe_eastus", _pool("system", 2))
    batch = _in_group("c-batch", "rg-batch(prod)", "MC_rg-batch(prod)_c_eastus", _pool("sys", 2))
    plain = _cluster("c-plain", _pool("system", 2))
    crafted = _in_group("c-bad", "rg-bad", "MC_rg;reboot", _pool("system", 2))
    newline = replace(_pool("user", 2, base=10), vmss_name="aks-user-1-vmss\n")
    mixed = _cluster("c-mixed", _pool("system", 2, base=20), newline)
    requests, skipped, refused = cycle_requests(
        [_estate(cafe, batch, plain, crafted, mixed)], cycle_id="c", budget=100, now=NOW,
        reason="r",
    )  # fmt: skip
    assert sorted((r.cluster_id.rsplit("/", 1)[1], r.vmss) for r in requests) == [
        ("c-batch", "aks-sys-12345678-vmss"),
        ("c-cafe", "aks-system-12345678-vmss"),
        ("c-mixed", "aks-system-12345678-vmss"),
        ("c-plain", "aks-system-12345678-vmss"),
    ]
    assert {r.node_resource_group for r in requests} >= {"MC_rg-café_c-cafe_eastus"}
    assert [(r.cluster.name, r.pool.name, r.scope) for r in refused] == [
        ("c-bad", "system", "probe:triage:system"),
        ("c-mixed", "user", "probe:triage:user"),
    ]
    for r in refused:
        assert r.finding.kind is Kind.COVERAGE and r.finding.check == "node.probe.request"
        assert r.finding.subject.cluster == r.cluster.id
        assert "\n" not in r.finding.evidence[0]
        assert any(r.why in s for s in skipped)
    assert "node_resource_group" in refused[0].why and "vmss" in refused[1].why


def test_a_deep_probe_a_name_refuses_is_left_out_with_the_reason() -> None:
    system = _pool("system", 2)
    odd = replace(_pool("user", 2, base=10), vmss_name="aks;user")
    cluster = _cluster("c1", system, odd)
    triage = _request(cluster, system)
    resolved = Resolved(cluster, system, system.instances[0])
    blocked = [
        Finding("node.kubelet", None, Kind.PROBLEM, Severity.CRITICAL,
                Subject(SUB, cluster.id, p.name, i.computer_name, i.private_ips[0]), "t")
        for p in (system, odd) for i in p.instances[-1:]
    ]  # fmt: skip
    requests, left = deep_follow_ups(triage, resolved, blocked, [], limit=10, now=NOW)
    assert [r.vmss for r in requests] == [system.vmss_name]
    assert any("no deep probe request" in s and "vmss" in s for s in left)
