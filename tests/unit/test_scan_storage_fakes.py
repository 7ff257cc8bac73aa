"""The scan job's storage side on the ports' fakes, in milliseconds: what it records, the run
row, the probe requests it queues (only for findings it opens), incidents across scans, and
what a store or queue failure leaves. ARM is the fake over the demo estate (tests/fakes/arm.py);
the same over HTTPS and Azurite is tests/e2e/test_scan_e2e.py and
tests/e2e/test_scan_storage_failure.py (kept as integration tests).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.tables import Coverage, Observation, RunStatus
from shared.analysis.findings import Cause, Kind
from shared.core.lifecycle import Event, FindingState
from shared.errors import StorageError
from shared.jobs.scan import ScanDeps, ScanOptions, ScanOutcome, run_scan
from shared.probe_requests import ProbeRequest
from tests.fakes.arm import DEMO_SUB, FakeArm, demo_arm
from tests.fakes.storage import FakeFindingStore, FakeProbeQueue

SUB = DEMO_SUB
T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


class Rig:
    def __init__(self, store: FakeFindingStore | None = None) -> None:
        self.arm: FakeArm = demo_arm()
        self.clock = T0
        self.store = store or FakeFindingStore()
        self.queue = FakeProbeQueue("probe-requests", clock=lambda: self.clock)
        self.deps = ScanDeps(
            inventory=self.arm.inventory, service_tags=self.arm.service_tags,
            snat_metrics=self.arm.snat_metrics, arm_calls=self.arm.calls,
            resolver=lambda name: ("20.61.14.2",), clock=lambda: self.clock,
            store=self.store, queue=self.queue,
        )  # fmt: skip

    def scan(self) -> ScanOutcome:
        return run_scan(ScanOptions(subscriptions=(SUB,)), self.deps)

    def cluster(self, outcome: ScanOutcome, name: str) -> str:
        (cluster_id,) = [o.cluster.id for o in outcome.clusters if o.cluster.name == name]
        return cluster_id


def test_a_scan_records_its_findings_and_run_and_queues_probes() -> None:
    rig = Rig()
    outcome = rig.scan()
    assert outcome.run.status in (RunStatus.COMPLETE, RunStatus.PARTIAL), outcome.run.errors
    assert outcome.storage_error == ""
    by_cluster: dict[str, set[tuple[Cause | None, Kind]]] = {}
    for s in rig.store.open_findings(subscription=SUB):
        name = s.cluster_id.rsplit("/", 1)[1]
        by_cluster.setdefault(name, set()).add((s.finding.cause, s.finding.kind))
    assert (Cause.NSG, Kind.PROBLEM) in by_cluster["aks-shop"]
    assert (Cause.SNAT, Kind.PROBLEM) in by_cluster["aks-batch"]
    assert (Cause.EGRESS, Kind.PROBLEM) in by_cluster["aks-egress"]
    assert all(k is not Kind.PROBLEM for _, k in by_cluster.get("aks-healthy", set()))
    # every finding the scan computed is stored, under the run's id
    stored = {s.fingerprint for s in rig.store.open_findings()}
    assert {f.fingerprint for f in outcome.findings} <= stored
    # the run row: saved at the start and replaced when it finished
    (run,) = rig.store.runs_between(T0, T0 + timedelta(minutes=1))
    assert run == outcome.run and run.finished == T0
    assert run.arm_calls == sum(rig.arm.calls(SUB).requests.values()) > 0
    # the probe requests, on the queue as sent
    assert outcome.probe_requests
    assert list(rig.queue.peek()) == outcome.probe_requests
    asked = {r.cluster_id.rsplit("/", 1)[1] for r in outcome.probe_requests}
    assert {"aks-shop", "aks-batch", "aks-egress"} <= asked and "aks-healthy" not in asked
    assert all(r.reason.startswith("scan opened ") for r in outcome.probe_requests)


def test_probes_only_for_what_a_scan_opens_and_a_quick_reopen_continues_its_incident() -> None:
    rig = Rig()
    first = rig.scan()
    shop = rig.cluster(first, "aks-shop")
    incidents = {i.group: i.incident_id for i in rig.store.incidents_open_at(shop, T0)}
    assert incidents  # one per pool (or node) of its findings
    rig.queue.take()

    rig.clock += timedelta(minutes=5)
    second = rig.scan()
    assert any(f.kind is Kind.PROBLEM for f in second.findings)  # still broken
    assert second.probe_requests == [] and rig.queue.take() == []
    kept = rig.store.current_findings(shop, state=FindingState.OPEN)
    assert kept and all(s.finding.first_seen == T0 for s in kept)
    assert all(s.finding.last_seen == rig.clock for s in kept)

    # aks-shop is fixed: RESOLVE_AFTER=2 clean observations resolve it, and its incidents
    for run in ("fixed", "still-fixed"):
        rig.clock += timedelta(minutes=5)
        rig.store.record_cluster(
            Observation(shop, Coverage.COMPLETE, (), subscription=SUB), run_id=run, now=rig.clock
        )
    assert rig.store.current_findings(shop, state=FindingState.OPEN) == []
    assert rig.store.incidents_open_at(shop, rig.clock) == []

    # ... and comes back within the hour: reopened findings ask for probes again, and the
    # incidents continue (same ids, one reopen) instead of new ones
    rig.clock += timedelta(minutes=5)
    third = rig.scan()
    assert {r.cluster_id for r in third.probe_requests} == {shop}
    flips = rig.store.history(shop, rig.clock, rig.clock + timedelta(seconds=1))
    assert {e.event for e in flips} == {Event.REOPENED}
    again = rig.store.incidents_open_at(shop, rig.clock)
    assert {i.group: i.incident_id for i in again} == incidents
    assert {i.reopen_count for i in again} == {1}
    assert [ProbeRequest.from_json(t) for t in rig.queue.take()] == third.probe_requests


class _FailingAfter(FakeFindingStore):
    """A store whose cluster writes fail from the `n`-th on (as if storage went away)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.attempts = 0

    def record_cluster(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.attempts >= self.n:
            self.fail_with = StorageError("record cluster", "HTTP 503 ServerBusy: injected")
        return super().record_cluster(*args, **kwargs)


def test_a_store_failing_mid_scan_keeps_the_computed_outcome() -> None:
    rig = Rig(_FailingAfter(3))
    outcome = rig.scan()
    assert isinstance(rig.store, _FailingAfter) and rig.store.attempts == 3
    assert rig.store.writes == 2  # the first failure stops the writes
    assert outcome.run.status is RunStatus.FAILED
    assert outcome.storage_error.startswith("storage: record cluster")
    assert any("nothing more was recorded" in e for e in outcome.run.errors)
    assert len(outcome.clusters) == 7 and outcome.findings  # everything computed is kept
    (row,) = rig.store.runs.values()  # written at the start, never finished
    assert row.run_id == outcome.run.run_id and row.status is RunStatus.RUNNING
    # the unrecorded clusters' suspects still ask for probes (nothing to compare with)
    assert outcome.probe_requests
    assert list(rig.queue.peek()) == outcome.probe_requests


def test_a_queue_failure_loses_the_immediate_probes_only() -> None:
    rig = Rig()
    rig.queue.fail_with = StorageError("queue to probe-requests", "HTTP 503 ServerBusy")
    outcome = rig.scan()
    assert outcome.run.status is RunStatus.PARTIAL and outcome.storage_error == ""
    assert any("probe requests not queued" in e for e in outcome.run.errors)
    assert rig.store.open_findings(subscription=SUB)  # recorded all the same
    (row,) = rig.store.runs.values()
    assert row.status is RunStatus.PARTIAL and row.finished == T0
