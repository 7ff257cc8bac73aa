"""The scan end to end: the timer function -> real SDK clients over HTTPS -> the ARM simulator,
findings and history in Table Storage on Azurite, probe requests on the queue.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

from functions import scan_timer
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import Coverage, FindingStore, Observation
from shared.analysis.findings import Cause, Kind
from shared.compose import scan_deps, static_resolver
from shared.config import Settings
from shared.jobs.scan import ScanDeps
from tests.armsim import SCENARIOS, ArmSimulator, Faults, load_estate
from tests.armsim.faults import Failure, Throttle
from tests.azurite import azurite  # noqa: F401

SUB = "11111111-1111-1111-1111-111111111111"


class Rig:
    def __init__(self, sim: ArmSimulator, conn: str) -> None:
        self.sim = sim
        self.conn = conn
        self.clock = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
        self.env = {
            "TUNNELWATCH_SUBSCRIPTIONS": SUB,
            "AzureWebJobsStorage": conn,
            "PROBE_QUEUE": "probe-requests",
            "TABLE_PREFIX": "tw" + sim.endpoint.rsplit(":", 1)[1],
        }

    def deps(self, settings: Settings, environ: Mapping[str, str]) -> ScanDeps:
        tables = TableServiceClient.from_connection_string(self.conn)
        store = FindingStore(tables, prefix=settings.table_prefix)
        store.ensure_tables()
        queue = ProbeQueue.from_connection_string(self.conn, settings.probe_queue)
        queue.ensure()
        # Every API server name resolves to one public address (the scan only needs one).
        resolve = static_resolver({}, lambda name: ("20.61.14.2",))
        return scan_deps(
            self.sim.credential(), arm_endpoint=self.sim.endpoint, ca_bundle=self.sim.ca_path,
            resolver=resolve, store=store, queue=queue, clock=lambda: self.clock,
            metrics_endpoint=self.sim.endpoint,
        )  # fmt: skip

    def scan(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(scan_timer, "make_deps", self.deps)
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        scan_timer.scan_timer(TimerRequest(past_due=False))

    def store(self) -> FindingStore:
        return FindingStore(
            TableServiceClient.from_connection_string(self.conn), prefix=self.env["TABLE_PREFIX"]
        )


@pytest.fixture
def rig(azurite: str) -> Iterator[Rig]:  # noqa: F811
    with ArmSimulator(load_estate(SCENARIOS / "demo.json")) as sim:
        yield Rig(sim, azurite)


def test_timer_scan_stores_findings_and_queues_probes(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.scan(monkeypatch)
    store = rig.store()
    open_ = store.open_findings(subscription=SUB)
    by_cluster: dict[str, set[tuple[object, str]]] = {}
    for f in open_:
        by_cluster.setdefault(f.finding.subject.cluster.rsplit("/", 1)[1], set()).add(
            (f.finding.cause, f.finding.kind.value)
        )
    assert (Cause.NSG, "problem") in by_cluster["aks-shop"]  # NSG denies 10250 between pools
    assert (Cause.SNAT, "problem") in by_cluster["aks-batch"]  # failed SNAT connections
    assert (Cause.EGRESS, "problem") in by_cluster["aks-egress"]  # NIC NSG denies egress 443
    assert "aks-healthy" not in by_cluster or all(
        k != "problem" for _, k in by_cluster["aks-healthy"]
    )

    # the scan run is recorded with its ARM call count
    (run,) = store.runs_between(rig.clock - timedelta(hours=1), rig.clock + timedelta(hours=1))
    assert run.arm_calls == rig.sim.total_calls()
    assert run.arm_calls_by_operation
    # SNAT metrics are read in batches, not per cluster
    assert rig.sim.calls.get("metrics.getBatch", 0) >= 1
    assert rig.sim.calls.get("metrics.list", 0) == 0

    # probe requests: base64 JSON as the host decodes it, identifiers only, only for suspect clusters
    raw = QueueClient.from_connection_string(rig.conn, "probe-requests")
    bodies = [json.loads(base64.b64decode(m.content)) for m in raw.peek_messages(max_messages=32)]
    assert bodies
    assert {b["v"] for b in bodies} == {2}
    clusters = {b["cluster_id"].rsplit("/", 1)[1] for b in bodies}
    assert "aks-shop" in clusters
    assert "aks-healthy" not in clusters


def test_second_scan_keeps_first_seen(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.scan(monkeypatch)
    first = {f.finding.fingerprint: f for f in rig.store().open_findings(subscription=SUB)}
    rig.clock += timedelta(minutes=5)
    rig.scan(monkeypatch)
    second = {f.finding.fingerprint: f for f in rig.store().open_findings(subscription=SUB)}
    assert set(second) >= {fp for fp, f in first.items() if f.finding.kind is Kind.PROBLEM}
    for fp, f in second.items():
        if fp in first:
            assert f.finding.first_seen == first[fp].finding.first_seen
            assert f.finding.last_seen == rig.clock


def test_one_failing_cluster_does_not_hide_the_others(
    azurite: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults = Faults(
        failures=[
            # 403: answered at once, so the test does not wait out the retries of a 500
            Failure(
                "virtualMachineScaleSetVMs.list",
                403,
                "AuthorizationFailed",
                path_contains="rg-shop-nodes",
            )
        ],
        throttles=[Throttle(operation="managedClusters.list", first=1, retry_after=1)],
    )
    with ArmSimulator(load_estate(SCENARIOS / "demo.json"), faults=faults) as sim:
        r = Rig(sim, azurite)
        r.scan(monkeypatch)
        open_ = r.store().open_findings(subscription=SUB)
        names = {f.finding.subject.cluster.rsplit("/", 1)[1] for f in open_}
        assert "aks-batch" in names  # others still scanned
        assert sim.calls.get("managedClusters.list", 0) >= 2  # the 429 was retried


def test_a_scan_asks_for_node_probes_only_when_it_opens_a_finding(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scan runs every 5 minutes; a problem that stays open must not send a root run
    # command to its nodes every time (the probe timer's hourly cycle covers it).
    monkeypatch.setattr(scan_timer, "make_deps", rig.deps)
    first = scan_timer.scan_once(rig.env)
    asked = {r.cluster_id.rsplit("/", 1)[1] for r in first.probe_requests}
    assert {"aks-shop", "aks-batch", "aks-egress"} <= asked
    assert all(r.reason.startswith("scan opened ") for r in first.probe_requests)

    rig.clock += timedelta(minutes=5)
    second = scan_timer.scan_once(rig.env)
    assert any(f.kind is Kind.PROBLEM for f in second.findings)  # still broken
    assert second.probe_requests == []

    # aks-shop's findings resolve (RESOLVE_AFTER=2 clean scans of it), then come back: a
    # reopen asks again
    (shop,) = [o.cluster for o in second.clusters if o.cluster.name == "aks-shop"]
    for run in ("fixed", "still-fixed"):
        rig.clock += timedelta(minutes=5)
        rig.store().record_cluster(
            Observation(shop.id, Coverage.COMPLETE, (), subscription=SUB), run_id=run, now=rig.clock
        )
    rig.clock += timedelta(minutes=5)
    third = scan_timer.scan_once(rig.env)
    assert {r.cluster_id for r in third.probe_requests} == {shop.id}
    probeable = [p.vmss_name for p in shop.pools if not p.probe_opt_out]  # user: tagged off
    assert [r.vmss for r in third.probe_requests] == probeable
