"""The scan with batched SNAT metric reads: the demo estate through the real SDK clients and the
ARM simulator, once per resource (metrics.list) and once batched (metrics:getBatch)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from shared.adapters.tables import Coverage
from shared.analysis.findings import Cause, Kind
from shared.compose import scan_deps, static_resolver
from shared.jobs.scan import ScanOptions, ScanOutcome, run_scan
from tests.armsim import SCENARIOS, ArmSimulator, Failure, Faults, load_estate

SUB = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[ArmSimulator]:
    with ArmSimulator(load_estate(SCENARIOS / "demo.json")) as s:
        yield s


def _scan(sim: ArmSimulator, *, batched: bool, faults: Faults | None = None) -> ScanOutcome:
    sim.reset_calls()
    sim.faults = faults or Faults()
    deps = scan_deps(
        sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path,
        resolver=static_resolver({}, lambda name: ("20.61.14.2",)), store=None, queue=None,
        clock=lambda: NOW, metrics_endpoint=sim.endpoint if batched else None,
    )  # fmt: skip
    try:
        return run_scan(ScanOptions(subscriptions=(SUB,)), deps)
    finally:
        sim.faults = Faults()


def _by_cluster(outcome: ScanOutcome) -> dict[str, set[tuple[Cause | None, Kind]]]:
    out: dict[str, set[tuple[Cause | None, Kind]]] = {}
    for o in outcome.clusters:
        out[o.cluster.name] = {(f.cause, f.kind) for f in o.findings}
    return out


def test_batched_scan_finds_the_same_and_calls_less(sim: ArmSimulator) -> None:
    single = _scan(sim, batched=False)
    single_calls = sim.calls
    batched = _scan(sim, batched=True)
    batched_calls = sim.calls

    # the SNAT problem of the demo is still found, and nothing else changes
    assert (Cause.SNAT, Kind.PROBLEM) in _by_cluster(batched)["aks-batch"]
    assert {f.fingerprint for f in batched.findings} == {f.fingerprint for f in single.findings}
    assert batched.run.errors == single.run.errors == ()

    # 4 load balancers + 1 NAT gateway: 10 metrics.list calls become 2 + 2 batch calls
    assert single_calls.get("metrics.list") == 10 and "metrics.getBatch" not in single_calls
    assert batched_calls.get("metrics.getBatch") == 4 and "metrics.list" not in batched_calls
    assert batched.run.arm_calls == single.run.arm_calls - 6
    # the scan's own count agrees with the server's, batch calls included
    assert batched.run.arm_calls == sum(batched_calls.values())
    ops = {op.lower(): n for op, n in batched.run.arm_calls_by_operation.items()}
    assert ops["post sub:metrics:getbatch"] == 4


def test_metrics_calls_no_longer_grow_per_cluster(sim: ArmSimulator) -> None:
    """Same estate, different cluster counts would need another scenario; instead: the batched
    scan makes one call per query and resource type, whatever the number of targets."""
    batched = _scan(sim, batched=True)
    targets = sum(1 for o in batched.clusters if not any("SNAT not" in n for n in o.notes))
    assert targets == 5
    assert sim.calls["metrics.getBatch"] == 4 < 2 * targets


def test_a_failing_batch_falls_back_and_is_recorded(sim: ArmSimulator) -> None:
    faults = Faults(failures=[Failure("metrics.getBatch", 403, "AuthorizationFailed", "no")])
    outcome = _scan(sim, batched=True, faults=faults)
    assert sim.calls["metrics.list"] == 10  # every resource read per resource instead
    assert (Cause.SNAT, Kind.PROBLEM) in _by_cluster(outcome)["aks-batch"]
    assert len(outcome.run.errors) == 2  # one per chunk: the load balancers, the NAT gateway
    assert all("metrics:getBatch" in e and "AuthorizationFailed" in e for e in outcome.run.errors)
    assert outcome.run.status.value == "partial"


def test_unreadable_metrics_make_only_that_cluster_inconclusive(sim: ArmSimulator) -> None:
    faults = Faults(
        failures=[
            Failure("metrics.getBatch", 404, "NotFound", "no batch API here"),
            Failure("metrics.list", 403, "AuthorizationFailed", "no",
                    path_contains="/mc_rg-batch_aks-batch_eastus/"),
        ]
    )  # fmt: skip
    baseline = {o.cluster.name: o for o in _scan(sim, batched=True).clusters}
    outcome = _scan(sim, batched=True, faults=faults)
    by_name = {o.cluster.name: o for o in outcome.clusters}
    batch = by_name["aks-batch"]
    snat = [f for f in batch.findings if f.cause is Cause.SNAT]
    assert [f.kind for f in snat if f.check == "snat.load_balancer"] == [Kind.INCONCLUSIVE]
    assert any("AuthorizationFailed" in e for f in snat for e in f.evidence)
    assert batch.coverage is Coverage.PARTIAL  # its open SNAT problem is held, not resolved
    assert any(n.startswith("SNAT not judged") for n in batch.notes)
    # its NSG checks still ran
    assert {f.fingerprint for f in batch.findings if f.cause is not Cause.SNAT} == {
        f.fingerprint for f in baseline["aks-batch"].findings if f.cause is not Cause.SNAT
    }
    # the other clusters are judged exactly as without the failure
    for name in ("aks-healthy", "aks-shop", "aks-egress", "aks-natgw"):
        assert by_name[name].coverage is baseline[name].coverage, name
        assert {f.fingerprint: f.kind for f in by_name[name].findings} == {
            f.fingerprint: f.kind for f in baseline[name].findings
        }, name
    assert (Cause.NSG, Kind.PROBLEM) in _by_cluster(outcome)["aks-shop"]
