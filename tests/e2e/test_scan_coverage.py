"""Coverage per check and per cluster: a read that failed resolves nothing it fed.

Each test scans the demo estate once cleanly (findings open), then again with one ARM read
failing, and looks at what the second scan did to the stored findings: nothing it could not
see may be resolved, and the run and the clusters must not say complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta

import pytest

from functions import scan_timer
from shared.adapters.clients import RetrySettings
from shared.adapters.tables import Coverage, Event, RunStatus
from shared.analysis.findings import Cause, Kind
from shared.compose import scan_deps
from shared.config import Settings
from shared.jobs.scan import ScanDeps, ScanOutcome
from tests.armsim import SCENARIOS, ArmSimulator, load_estate
from tests.armsim.faults import Failure
from tests.azurite import azurite  # noqa: F401
from tests.e2e.test_scan_e2e import SUB, Rig


class FastRig(Rig):
    """The e2e rig with short retries: an injected failure fails in milliseconds."""

    def deps(self, settings: Settings, environ: Mapping[str, str]) -> ScanDeps:
        deps = super().deps(settings, environ)
        retry = RetrySettings(total=1, status=1, backoff_factor=0.01)
        fast = scan_deps(
            self.sim.credential(), arm_endpoint=self.sim.endpoint, ca_bundle=self.sim.ca_path,
            resolver=deps.resolver, store=deps.store, queue=deps.queue, clock=deps.clock,
            metrics_endpoint=self.sim.endpoint, retry=retry,
        )  # fmt: skip
        return fast


@pytest.fixture
def rig(azurite: str) -> Iterator[FastRig]:  # noqa: F811
    with ArmSimulator(load_estate(SCENARIOS / "demo.json")) as sim:
        yield FastRig(sim, azurite)


def _scan(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> ScanOutcome:
    monkeypatch.setattr(scan_timer, "make_deps", rig.deps)
    rig.clock += timedelta(minutes=5)
    return scan_timer.scan_once(rig.env)


def _resolved(rig: Rig, outcome: ScanOutcome) -> list[str]:
    """Titles of the findings the given scan resolved (history rows of its run)."""
    store = rig.store()
    out = []
    for c in outcome.clusters:
        for e in store.history(
            c.cluster.id, rig.clock - timedelta(seconds=1), rig.clock + timedelta(seconds=1)
        ):
            if e.event is Event.RESOLVED and e.run_id == outcome.run.run_id:
                out.append(f"{c.cluster.name}: {e.finding.title if e.finding else e.fingerprint}")
    return out


def _open(rig: Rig) -> set[str]:
    return {f.fingerprint for f in rig.store().open_findings(subscription=SUB)}


@pytest.mark.parametrize(
    ("operation", "status", "cause"),
    [
        ("loadBalancers.listAll", 500, Cause.SNAT),
        ("loadBalancers.listAll", 403, Cause.SNAT),
        ("virtualMachineScaleSets.listAll", 500, Cause.EGRESS),
        ("networkSecurityGroups.listAll", 403, Cause.NSG),
        ("virtualNetworks.listAll", 500, Cause.NSG),
        ("natGateways.listAll", 500, None),
    ],
)
def test_a_failed_subscription_list_resolves_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, operation: str, status: int, cause: Cause | None
) -> None:
    clean = _scan(rig, monkeypatch)
    assert clean.run.status is RunStatus.COMPLETE
    before = _open(rig)
    if cause is not None:  # the demo has an open problem this list feeds
        assert any(f.cause is cause and f.kind is Kind.PROBLEM for f in clean.findings)

    rig.sim.faults.failures.append(Failure(operation, status=status, code="Injected"))
    faulted = _scan(rig, monkeypatch)
    assert _resolved(rig, faulted) == []
    assert before <= _open(rig)
    assert faulted.run.status is RunStatus.PARTIAL
    assert any(operation.split(".", maxsplit=1)[0] in e for e in faulted.run.errors)
    assert any(o.coverage is Coverage.PARTIAL for o in faulted.clusters)

    rig.sim.faults.failures.clear()
    again = _scan(rig, monkeypatch)
    assert again.run.status is RunStatus.COMPLETE
    assert _open(rig) == before  # nothing lost, nothing new once the list answers again


def test_snat_findings_are_held_while_the_load_balancer_list_fails(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scan(rig, monkeypatch)
    rig.sim.faults.failures.append(Failure("loadBalancers.listAll", status=500))
    faulted = _scan(rig, monkeypatch)
    (batch,) = [o for o in faulted.clusters if o.cluster.name == "aks-batch"]
    assert batch.coverage is Coverage.PARTIAL
    assert "snat" in batch.not_run and "nsg" not in batch.not_run
    assert any("SNAT not checked: loadBalancers list could not be read" in n for n in batch.notes)


def test_a_failed_instance_list_makes_the_run_partial(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scan(rig, monkeypatch)
    before = _open(rig)
    rig.sim.faults.failures.append(
        Failure("virtualMachineScaleSetVMs.list", status=500, path_contains="rg-shop-nodes")
    )
    faulted = _scan(rig, monkeypatch)
    assert faulted.run.status is RunStatus.PARTIAL
    (shop,) = [o for o in faulted.clusters if o.cluster.name == "aks-shop"]
    assert shop.coverage is Coverage.PARTIAL and "pools" in shop.not_run
    assert _resolved(rig, faulted) == [] and before <= _open(rig)


def test_service_tags_unavailable_hold_nsg_findings(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scan(rig, monkeypatch)
    before = _open(rig)
    rig.sim.faults.failures.append(Failure("serviceTags.list", status=500))
    faulted = _scan(rig, monkeypatch)
    assert _resolved(rig, faulted) == [] and before <= _open(rig)


def test_an_unresolvable_api_server_holds_egress_findings(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scan(rig, monkeypatch)
    before = _open(rig)
    egress = {f.fingerprint for f in rig.store().open_findings(subscription=SUB)
              if f.finding.cause is Cause.EGRESS}  # fmt: skip
    assert egress

    def no_dns(name: str) -> tuple[str, ...]:
        raise OSError(f"cannot resolve {name}")

    plain = rig.deps

    def deps(settings, environ):  # type: ignore[no-untyped-def]
        d = plain(settings, environ)
        d.resolver = no_dns
        return d

    monkeypatch.setattr(rig, "deps", deps)
    faulted = _scan(rig, monkeypatch)
    assert _resolved(rig, faulted) == []
    assert before <= _open(rig)
