"""Unusual names against the ARM simulator and Azurite (issue 15, defect 3).

A resource group named `rg-café` or `rg-batch(prod)` is valid in Azure; before, one such name made
`tunnelwatch scan --record` exit 2 and `run_probe_cycle` raise, and nothing of the subscription
was probed. Now those clusters are probed like any other (the SDK percent-encodes the names in
the run-command URL), and a name that really is invalid (crafted in the simulator: Azure itself
refuses it) gives a COVERAGE finding for its own pools only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.probe_ledger import ProbeLedger, ProbeStatus
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import FindingState, FindingStore
from shared.analysis.findings import Kind
from shared.cli.main import main
from shared.compose import probe_deps
from shared.jobs.probe import ProbeOptions, handle_probe_message
from shared.jobs.probe_cycle import run_probe_cycle
from shared.probe_requests import ProbeRequest
from tests.armsim import SCENARIOS, ArmSimulator, build_estate, parse_scenario
from tests.armsim.scripted import ScriptedNodes, addresses_of
from tests.azurite import azurite  # noqa: F401

SUB = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CAFE_NODES = "rg-café-nodes"
CRAFTED = "rg-natgw;reboot"  # Azure refuses `;` in a resource group name; the simulator does not


def _cluster_id(rg: str, name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ContainerService/"
        f"managedClusters/{name}"
    )


CAFE = _cluster_id("rg-café", "aks-egress")
BATCH = _cluster_id("rg-batch(prod)", "aks-batch")
NATGW = _cluster_id("rg-platform", "aks-natgw")


def _scenario() -> dict[str, object]:
    doc = json.loads((SCENARIOS / "demo.json").read_text())
    clusters = {c["name"]: c for c in doc["subscriptions"][0]["clusters"]}
    clusters["aks-egress"]["resourceGroup"] = "rg-café"
    clusters["aks-egress"]["nodeResourceGroup"] = CAFE_NODES
    clusters["aks-batch"]["resourceGroup"] = "rg-batch(prod)"
    clusters["aks-batch"].pop("nodeResourceGroup", None)  # MC_rg-batch(prod)_aks-batch_eastus
    clusters["aks-natgw"]["nodeResourceGroup"] = CRAFTED
    return doc  # type: ignore[no-any-return]


class Rig:
    def __init__(self, sim: ArmSimulator, nodes: ScriptedNodes, conn: str) -> None:
        self.sim = sim
        self.nodes = nodes
        self.conn = conn
        self.prefix = "names" + sim.endpoint.rsplit(":", 1)[1]
        tables = TableServiceClient.from_connection_string(conn)
        self.store = FindingStore(tables, prefix=self.prefix)
        self.store.ensure_tables()
        self.ledger = ProbeLedger(tables, prefix=self.prefix)
        self.ledger.ensure()
        self.queue = ProbeQueue.from_connection_string(conn, f"{self.prefix}-probes")
        self.queue.ensure()
        self.poison = self.queue.sibling(f"{self.prefix}-probes-poison")
        self.poison.ensure()
        self.deps = probe_deps(
            sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path,
            store=self.store, ledger=self.ledger, queue=self.queue, poison=self.poison,
            clock=lambda: NOW,
        )  # fmt: skip
        self.deps.jitter = lambda: 0.0

    def refusals(self, cluster_id: str) -> list[str]:
        """The pools of `cluster_id` with an open 'cannot be requested' finding."""
        return sorted(
            s.finding.subject.node_pool
            for s in self.store.current_findings(cluster_id, state=FindingState.OPEN)
            if s.finding.check == "node.probe.request"
            and s.finding.kind is Kind.COVERAGE
            and s.scope == f"probe:triage:{s.finding.subject.node_pool}"
        )

    def run_requests(self, requests: list[ProbeRequest]) -> dict[str, ProbeStatus | None]:
        options = ProbeOptions(subscriptions=(SUB,))
        return {
            r.cluster_id: handle_probe_message(r.to_json(), options, self.deps).status
            for r in requests
        }


@pytest.fixture
def rig(azurite: str) -> Iterator[Rig]:  # noqa: F811
    estate = build_estate(parse_scenario(_scenario(), "names.json"))
    nodes = ScriptedNodes(addresses_of(estate))
    with ArmSimulator(estate, executor=nodes) as sim:
        yield Rig(sim, nodes, azurite)


def _linux_pools(rig: Rig, cluster_id: str) -> list[str]:
    estate = rig.deps.inventory(SUB)
    cluster = next(c for c in estate.clusters if c.id.lower() == cluster_id.lower())
    return sorted(p.name for p in cluster.pools if p.os_type.lower() == "linux")


def test_scan_record_probes_every_valid_name_and_records_the_invalid_one(
    rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("test-token-not-a-secret\n")
    code = main([
        "scan", "--subscription", SUB, "--arm-endpoint", rig.sim.endpoint,
        "--ca-bundle", rig.sim.ca_path, "--metrics-endpoint", rig.sim.endpoint,
        "--access-token-file", str(token), "--no-dns", "--record", "--quiet", "--json",
        "--storage-connection-string", rig.conn, "--probe-budget", "100",
    ])  # fmt: skip
    out = capsys.readouterr()
    assert code in (1, 3), out.err  # problems or gaps found; 2 (an error) before the fix
    doc = json.loads(out.out)
    requested = {r["cluster_id"]: r for r in map(json.loads, doc["probe_requests"])}
    assert {CAFE, BATCH} <= set(requested) and NATGW not in requested
    assert requested[CAFE]["node_resource_group"] == CAFE_NODES
    # The crafted name: a COVERAGE finding for that cluster's pools, in the JSON and stored.
    natgw = next(c for c in doc["clusters"] if c["id"] == NATGW)
    assert any(f["check"] == "node.probe.request" for f in natgw["findings"])
    for c in doc["clusters"]:
        if c["id"] != NATGW:
            assert not any(f["check"] == "node.probe.request" for f in c["findings"]), c["id"]
    tables = TableServiceClient.from_connection_string(rig.conn)
    store = FindingStore(tables, prefix="tunnelwatch")
    refused = [s for s in store.current_findings(NATGW) if s.finding.check == "node.probe.request"]
    assert refused and all(s.scope.startswith("probe:triage:") for s in refused)
    # The queued requests of the unusual names run: the run command reaches the simulator
    # under the decoded names (the SDK percent-encodes them in the URL).
    queue = ProbeQueue.from_connection_string(rig.conn, "probe-requests")
    queued = [ProbeRequest.from_json(t) for t in queue.take(max_messages=32)]
    statuses = rig.run_requests([r for r in queued if r.cluster_id in (CAFE, BATCH)])
    assert statuses == {CAFE: ProbeStatus.DONE, BATCH: ProbeStatus.DONE}
    groups = {r.resource_group for r in rig.sim.run_command_requests}
    assert {CAFE_NODES, "MC_rg-batch(prod)_aks-batch_eastus"} <= groups


def test_probe_cycle_queues_the_others_and_records_the_refusal(rig: Rig) -> None:
    cycle = run_probe_cycle(
        (SUB,), inventory=rig.deps.inventory, queue=rig.queue, budget=100, now=NOW,
        store=rig.store,
    )  # fmt: skip
    assert cycle.errors == ()
    by_cluster: dict[str, list[str]] = {}
    for r in cycle.requests:
        by_cluster.setdefault(r.cluster_id, []).append(r.vmss)
    assert CAFE in by_cluster and BATCH in by_cluster and NATGW not in by_cluster
    natgw_pools = _linux_pools(rig, NATGW)
    assert sorted(r.pool.name for r in cycle.refused) == natgw_pools
    assert rig.refusals(NATGW) == natgw_pools
    assert rig.refusals(CAFE) == [] and rig.refusals(BATCH) == []
    # Every queued message is one the worker accepts, and the café cluster's probe runs.
    queued = [ProbeRequest.from_json(t) for t in rig.queue.take(max_messages=32)]
    assert len(queued) == len(cycle.requests)
    assert rig.run_requests([r for r in queued if r.cluster_id == CAFE]) == {CAFE: ProbeStatus.DONE}
    # The next cycle finds the same name: the finding stays one open finding, not a flap.
    again = run_probe_cycle(
        (SUB,), inventory=rig.deps.inventory, queue=None, budget=100, now=NOW, store=rig.store,
    )  # fmt: skip
    assert len(again.refused) == len(natgw_pools)
    assert rig.refusals(NATGW) == natgw_pools
