"""The scan job (shared.jobs.scan.run_scan) on the ports' fakes: the demo estate in memory
(tests/fakes/arm.py), the finding store and probe queue in memory (tests/fakes/storage.py).

What tests/e2e/test_scan_e2e.py and test_scan_coverage.py check through the simulator and
Azurite, in milliseconds: findings per cluster, the run record, a failed read resolving nothing
it fed (held, `not_run`), probes asked for only when a finding opens, a stopped cluster, and
storage or queue failures. The fakes hold to the real adapters' contract (tests/contracts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.tables import RunStatus
from shared.analysis.findings import Cause, Kind
from shared.core.lifecycle import Coverage, Event, Observation
from shared.errors import StorageError
from shared.jobs.scan import ClusterOutcome, ScanDeps, ScanOptions, ScanOutcome, run_scan
from tests.armsim.faults import Failure
from tests.fakes.arm import DEMO_SUB, FakeArm, demo_arm
from tests.fakes.storage import FakeFindingStore, FakeProbeQueue

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


class Rig:
    """One process's scan dependencies on fakes, and a clock the test moves."""

    def __init__(self) -> None:
        self.arm: FakeArm = demo_arm()
        self.store = FakeFindingStore()
        self.queue = FakeProbeQueue(clock=lambda: self.clock)
        self.clock = T0
        self.deps = ScanDeps(
            inventory=self.arm.inventory,
            service_tags=self.arm.service_tags,
            snat_metrics=self.arm.snat_metrics,
            arm_calls=self.arm.calls,
            resolver=lambda name: ("20.61.14.2",),  # every API server name: one public address
            clock=lambda: self.clock,
            store=self.store,
            queue=self.queue,
        )

    def scan(self, *, probe_budget: int = 20) -> ScanOutcome:
        self.clock += timedelta(minutes=5)
        return run_scan(ScanOptions((DEMO_SUB,), probe_budget=probe_budget), self.deps)

    def open(self) -> set[str]:
        return {s.fingerprint for s in self.store.open_findings(subscription=DEMO_SUB)}

    def resolved(self, outcome: ScanOutcome) -> list[str]:
        """Fingerprints the given scan resolved."""
        return [
            e.fingerprint
            for c in outcome.clusters
            for e in self.store.history(c.cluster.id, T0, self.clock + timedelta(seconds=1))
            if e.event is Event.RESOLVED and e.run_id == outcome.run.run_id
        ]


@pytest.fixture
def rig() -> Rig:
    return Rig()


def _cluster(outcome: ScanOutcome, name: str) -> ClusterOutcome:
    (found,) = [o for o in outcome.clusters if o.cluster.name == name]
    return found


def test_findings_per_cluster_are_stored_with_the_run(rig: Rig) -> None:
    outcome = rig.scan()
    by_cluster: dict[str, set[tuple[Cause | None, Kind]]] = {}
    for s in rig.store.open_findings(subscription=DEMO_SUB):
        name = s.finding.subject.cluster.rsplit("/", 1)[1]
        by_cluster.setdefault(name, set()).add((s.finding.cause, s.finding.kind))
    assert (Cause.NSG, Kind.PROBLEM) in by_cluster["aks-shop"]  # NSG denies 10250 between pools
    assert (Cause.SNAT, Kind.PROBLEM) in by_cluster["aks-batch"]  # failed SNAT connections
    assert (Cause.EGRESS, Kind.PROBLEM) in by_cluster["aks-egress"]  # NIC NSG denies egress 443
    assert all(k is not Kind.PROBLEM for _, k in by_cluster.get("aks-healthy", set()))

    (run,) = rig.store.runs.values()
    assert run.run_id == outcome.run.run_id
    assert run.status is RunStatus.COMPLETE and run.errors == ()
    assert run.clusters_scanned == 7 and run.clusters_failed == ()
    assert run.arm_calls == rig.arm.calls(DEMO_SUB).total
    assert run.arm_calls_by_operation["GET sub:managedClusters"] == 1
    assert all(o.coverage is Coverage.COMPLETE for o in outcome.clusters)


def test_the_call_count_is_this_runs_only(rig: Rig) -> None:
    first = rig.scan()
    second = rig.scan()
    # this run's own, not the process's running total (the service tags are cached)
    tags = "GET sub:locations/{}/serviceTags"
    assert first.run.arm_calls_by_operation[tags] == 1
    assert tags not in second.run.arm_calls_by_operation
    assert second.run.arm_calls == first.run.arm_calls - 1
    assert rig.arm.calls(DEMO_SUB).total == first.run.arm_calls + second.run.arm_calls


def test_a_second_scan_keeps_first_seen(rig: Rig) -> None:
    rig.scan()
    first = {s.fingerprint: s for s in rig.store.open_findings(subscription=DEMO_SUB)}
    rig.scan()
    second = {s.fingerprint: s for s in rig.store.open_findings(subscription=DEMO_SUB)}
    assert set(second) == set(first)
    for fp, s in second.items():
        assert s.finding.first_seen == first[fp].finding.first_seen
        assert s.finding.last_seen == rig.clock


def test_one_failing_cluster_does_not_hide_the_others(rig: Rig) -> None:
    rig.arm.faults.failures.append(
        Failure("virtualMachineScaleSetVMs.list", 403, "AuthorizationFailed",
                path_contains="rg-shop-nodes")
    )  # fmt: skip
    outcome = rig.scan()
    shop = _cluster(outcome, "aks-shop")
    assert shop.coverage is Coverage.PARTIAL and "pools" in shop.not_run
    names = {s.finding.subject.cluster.rsplit("/", 1)[1] for s in rig.store.open_findings(
        subscription=DEMO_SUB)}  # fmt: skip
    assert {"aks-batch", "aks-egress"} <= names
    assert outcome.run.status is RunStatus.PARTIAL


@pytest.mark.parametrize(
    ("operation", "cause"),
    [
        ("loadBalancers.listAll", Cause.SNAT),
        ("virtualMachineScaleSets.listAll", Cause.EGRESS),
        ("networkSecurityGroups.listAll", Cause.NSG),
        ("virtualNetworks.listAll", Cause.NSG),
        ("natGateways.listAll", None),
    ],
)
def test_a_failed_subscription_list_resolves_nothing(
    rig: Rig, operation: str, cause: Cause | None
) -> None:
    # RESOLVE_AFTER is 2: two blind scans in a row would resolve what they cannot see
    clean = rig.scan()
    assert clean.run.status is RunStatus.COMPLETE
    before = rig.open()
    if cause is not None:  # the demo has an open problem this list feeds
        assert any(f.cause is cause and f.kind is Kind.PROBLEM for f in clean.findings)

    rig.arm.faults.failures.append(Failure(operation, status=500, code="Injected"))
    for _ in range(3):
        faulted = rig.scan()
        assert rig.resolved(faulted) == []
        assert before <= rig.open()
        assert faulted.run.status is RunStatus.PARTIAL
        assert any(operation.split(".", maxsplit=1)[0] in e for e in faulted.run.errors)
        assert any(o.coverage is Coverage.PARTIAL and o.not_run for o in faulted.clusters)

    rig.arm.faults.failures.clear()
    again = rig.scan()
    assert again.run.status is RunStatus.COMPLETE
    assert rig.open() == before  # nothing lost, nothing new once the list answers again


def test_snat_findings_are_held_while_the_load_balancer_list_fails(rig: Rig) -> None:
    rig.scan()
    rig.arm.faults.failures.append(Failure("loadBalancers.listAll", status=500))
    batch = _cluster(rig.scan(), "aks-batch")
    assert batch.coverage is Coverage.PARTIAL
    assert "snat" in batch.not_run and "nsg" not in batch.not_run
    assert any("SNAT not checked: loadBalancers list could not be read" in n for n in batch.notes)


def test_unreadable_metrics_make_snat_inconclusive_and_hold_it(rig: Rig) -> None:
    rig.scan()
    before = rig.open()
    rig.arm.faults.failures.append(Failure("metrics.list", 403, "AuthorizationFailed",
                                           path_contains="aks-batch"))  # fmt: skip
    outcome = rig.scan()
    batch = _cluster(outcome, "aks-batch")
    assert batch.coverage is Coverage.PARTIAL and "snat" in batch.not_run
    assert any(f.cause is Cause.SNAT and f.kind is Kind.INCONCLUSIVE for f in batch.findings)
    assert _cluster(outcome, "aks-shop").coverage is Coverage.COMPLETE  # the others: untouched
    rig.scan()
    assert before <= rig.open()


def test_service_tags_unavailable_hold_nsg_findings(rig: Rig) -> None:
    rig.scan()
    before = rig.open()
    rig.deps.tag_cache.clear()  # as in a new process
    rig.arm.faults.failures.append(Failure("serviceTags.list", status=500))
    for _ in range(2):
        faulted = rig.scan()
        assert rig.resolved(faulted) == [] and before <= rig.open()
        assert all("nsg" in o.not_run for o in faulted.clusters)
        assert faulted.run.status is RunStatus.PARTIAL
    # a failed read is not cached: the next scan asks again, and sees again
    rig.arm.faults.failures.clear()
    assert rig.scan().run.status is RunStatus.COMPLETE
    assert rig.arm.operations["serviceTags.list"] == 4


def test_the_service_tags_are_read_once_per_location_and_cached(rig: Rig) -> None:
    rig.scan()
    rig.scan()
    assert rig.arm.operations["serviceTags.list"] == 1  # the demo: one location, cached 24 h


def test_an_unresolvable_api_server_holds_egress_findings(rig: Rig) -> None:
    rig.scan()
    before = rig.open()
    assert any(s.finding.cause is Cause.EGRESS for s in rig.store.open_findings(
        subscription=DEMO_SUB))  # fmt: skip

    def no_dns(name: str) -> tuple[str, ...]:
        raise OSError(f"cannot resolve {name}")

    rig.deps.resolver = no_dns
    for _ in range(2):
        faulted = rig.scan()
        assert rig.resolved(faulted) == [] and before <= rig.open()


def test_a_failed_cluster_list_fails_the_run_and_resolves_nothing(rig: Rig) -> None:
    rig.scan()
    before = rig.open()
    rig.arm.faults.failures.append(Failure("managedClusters.list", 403, "AuthorizationFailed"))
    for _ in range(2):
        faulted = rig.scan()
        assert faulted.run.status is RunStatus.FAILED
        assert faulted.clusters == [] and faulted.probe_requests == []
        assert any("cluster list failed" in e and "403" in e for e in faulted.run.errors)
    assert rig.open() == before


def test_probes_are_asked_for_only_when_a_finding_opens(rig: Rig) -> None:
    first = rig.scan()
    asked = {r.cluster_id.rsplit("/", 1)[1] for r in first.probe_requests}
    assert {"aks-shop", "aks-batch", "aks-egress"} <= asked
    assert "aks-healthy" not in asked
    assert all(r.reason.startswith("scan opened ") for r in first.probe_requests)
    assert len(rig.queue.messages) == len(first.probe_requests)  # queued

    second = rig.scan()
    assert any(f.kind is Kind.PROBLEM for f in second.findings)  # still broken
    assert second.probe_requests == []

    # aks-shop's findings resolve (RESOLVE_AFTER=2 clean scans of it), then come back: a
    # reopen asks again
    shop = _cluster(second, "aks-shop").cluster
    for run in ("fixed", "still-fixed"):
        rig.clock += timedelta(minutes=5)
        rig.store.record_cluster(
            Observation(shop.id, Coverage.COMPLETE, (), subscription=DEMO_SUB),
            run_id=run, now=rig.clock,
        )  # fmt: skip
    third = rig.scan()
    assert {r.cluster_id for r in third.probe_requests} == {shop.id}
    probeable = [p.vmss_name for p in shop.pools if not p.probe_opt_out]
    assert [r.vmss for r in third.probe_requests] == probeable


def test_without_a_store_every_suspect_cluster_is_probed_each_time(rig: Rig) -> None:
    rig.deps.store = None
    first, second = rig.scan(), rig.scan()
    assert first.probe_requests and len(second.probe_requests) == len(first.probe_requests)
    assert rig.store.runs == {}


def test_the_probe_budget_bounds_the_requests(rig: Rig) -> None:
    assert len(rig.scan(probe_budget=0).probe_requests) == 0


def test_a_stopped_cluster_holds_its_findings_and_is_not_a_gap(rig: Rig) -> None:
    rig.scan()
    before = rig.open()
    for doc in rig.arm.estate.docs.values():
        if doc.get("name") == "aks-shop" and "managedclusters" in str(doc.get("type")).lower():
            doc["properties"]["powerState"] = {"code": "Stopped"}
    for _ in range(2):
        outcome = rig.scan()
        shop = _cluster(outcome, "aks-shop")
        assert shop.stopped and not shop.degraded and shop.findings == []
        assert {"nsg", "snat"} <= set(shop.not_run)
        assert outcome.run.status is RunStatus.COMPLETE  # stopped is not a gap in the scan
        assert rig.resolved(outcome) == []
        assert all(r.cluster_id != shop.cluster.id for r in outcome.probe_requests)
    assert rig.open() == before


def test_a_storage_failure_fails_the_run_but_keeps_the_findings(rig: Rig) -> None:
    rig.store.fail_with = StorageError("record cluster", "HTTP 503: storage down")
    outcome = rig.scan()
    assert outcome.storage_error and outcome.run.status is RunStatus.FAILED
    assert any(f.kind is Kind.PROBLEM for f in outcome.findings)
    # nothing to compare with: every suspect cluster is probed
    assert {"aks-shop", "aks-batch", "aks-egress"} <= {
        r.cluster_id.rsplit("/", 1)[1] for r in outcome.probe_requests
    }


def test_a_queue_failure_loses_only_the_immediate_probes(rig: Rig) -> None:
    rig.queue.fail_with = StorageError("send probe requests", "HTTP 503: queue down")
    outcome = rig.scan()
    assert outcome.probe_requests and rig.queue.messages == []
    assert outcome.run.status is RunStatus.PARTIAL
    assert any("probe requests not queued" in e for e in outcome.run.errors)
    assert rig.open()  # the findings were recorded
