"""The ARM-side ports' contract (Inventory, ServiceTagSource, SnatMetricsSource, ArmCallCounts,
RunCommandFor / RunCommand in shared/jobs/ports.py), held by the in-memory fake
(tests/fakes/arm.py) and the real adapters built by shared/compose.py over HTTPS against the
ARM simulator (tests/armsim) alike.

Every test runs twice on the demo estate: `fake` (milliseconds) and `sim` (an integration
test: the real Azure SDK clients). Faults are injected with the simulator's own rules on both.
An assertion that only one of them passes means the fake lies, and every job test on it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from shared.adapters.clients import RetrySettings
from shared.adapters.metrics import MetricsTarget
from shared.adapters.runcommand import Failure, RunOutcome
from shared.analysis.findings import Cause, Kind
from shared.compose import probe_deps, scan_deps, static_resolver
from shared.errors import ArmError, InputError
from shared.inventory.model import Estate, Read, id_key
from shared.jobs.ports import (
    ArmCallCounts,
    Inventory,
    RunCommandFor,
    ServiceTagSource,
    SnatMetricsSource,
)
from shared.jobs.scan import ScanDeps, ScanOptions, run_scan
from tests.armsim import SCENARIOS, ArmSimulator, Faults, load_estate
from tests.armsim import Estate as SimEstate
from tests.armsim.estate import InstanceState
from tests.armsim.faults import Failure as Fault
from tests.fakes.arm import DEMO_SUB, FakeArm
from tests.fakes.storage import FakeFindingStore, FakeProbeLedger, FakeProbeQueue

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
DEMO_CLUSTERS = {"aks-healthy", "aks-shop", "aks-batch", "aks-private", "aks-egress",
                 "aks-integrated", "aks-natgw"}  # fmt: skip
# Short retries: an injected failure fails in milliseconds on the real clients too.
FAST = RetrySettings(total=1, status=1, backoff_factor=0.01)


@dataclass
class Ports:
    """The ARM ports of one implementation, and the estate and fault rules behind them."""

    inventory: Inventory
    service_tags: ServiceTagSource
    snat_metrics: SnatMetricsSource
    calls: ArmCallCounts
    runner_for: RunCommandFor
    estate: SimEstate
    faults: Faults
    started: Callable[[], int]  # run commands the estate's VMs received
    occupy: Callable[[InstanceState], None]  # a command (not ours) runs on this VM meanwhile

    def instance(self, cluster: str, pool: str, index: int = 0) -> InstanceState:
        return FakeArm(self.estate).instance(cluster, pool, index)

    def scan_deps(self) -> ScanDeps:
        return ScanDeps(
            inventory=self.inventory, service_tags=self.service_tags,
            snat_metrics=self.snat_metrics, arm_calls=self.calls,
            resolver=lambda name: ("20.61.14.2",), clock=lambda: NOW,
        )  # fmt: skip


def _fake() -> Iterator[Ports]:
    arm = FakeArm(load_estate(SCENARIOS / "demo.json"))
    yield Ports(arm.inventory, arm.service_tags, arm.snat_metrics, arm.calls, arm.runner_for,
                arm.estate, arm.faults, lambda: len(arm.run_commands),
                lambda state: arm.busy.add(id_key(state.vm_id)))  # fmt: skip


def _sim() -> Iterator[Ports]:
    estate = load_estate(SCENARIOS / "demo.json")
    gate = threading.Event()  # commands on `held` VMs run until it is set
    held: set[str] = set()

    def executor(
        sub: str, rg: str, vmss: str, iid: str, script: Sequence[str],
        params: Sequence[tuple[str, str]],
    ) -> tuple[str, str]:  # fmt: skip
        for state in estate.instances.values():
            if (state.resource_group.lower(), state.vmss.lower(), state.instance_id) == (
                rg.lower(), vmss.lower(), iid,
            ):  # fmt: skip
                if state.vm_id.lower() in held:
                    gate.wait(30)
                return state.stdout, state.stderr
        return "", ""

    def occupy(state: InstanceState) -> None:
        held.add(state.vm_id.lower())
        assert sim.run_commands.start(state, {"commandId": "RunShellScript"}) is not None

    with ArmSimulator(estate, now=NOW, poll_delay_ms=1, executor=executor) as sim:
        scan = scan_deps(
            sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path,
            resolver=static_resolver({}, None), store=None, queue=None,
            metrics_endpoint=sim.endpoint, retry=FAST,
        )  # fmt: skip
        queue = FakeProbeQueue()
        probe = probe_deps(
            sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path,
            store=FakeFindingStore(), ledger=FakeProbeLedger(), queue=queue,  # type: ignore[arg-type]
            poison=queue.sibling("poison"), retry=FAST, run_command_timeout=30,  # type: ignore[arg-type]
        )  # fmt: skip
        try:
            yield Ports(scan.inventory, scan.service_tags, scan.snat_metrics, scan.arm_calls,
                        probe.runner_for, sim.estate, sim.faults,
                        lambda: len(sim.run_commands.records), occupy)  # fmt: skip
        finally:
            gate.set()


@pytest.fixture(params=["fake", "sim"])
def ports(request: pytest.FixtureRequest) -> Iterator[Ports]:
    yield from (_fake() if request.param == "fake" else _sim())


# -- Inventory ------------------------------------------------------------------------------


def test_inventory_reads_the_demo_estate(ports: Ports) -> None:
    estate = ports.inventory(DEMO_SUB)
    assert estate.subscription == DEMO_SUB
    assert {c.name for c in estate.clusters} == DEMO_CLUSTERS
    assert estate.errors == ()
    (shop,) = [c for c in estate.clusters if c.name == "aks-shop"]
    assert [p.name for p in shop.pools] == ["system", "user"]
    user = shop.pools[1]
    assert [i.power_state.value for i in user.instances] == ["running", "running", "deallocated"]
    assert [i.private_ips[0] for i in user.instances] == ["10.10.1.4", "10.10.1.5", "10.10.1.6"]
    assert estate.nsgs and estate.vnets and estate.load_balancers and estate.nat_gateways
    assert estate.missing(shop.id) == frozenset()


def test_a_failed_cluster_list_raises_arm_error(ports: Ports) -> None:
    ports.faults.failures.append(Fault("managedClusters.list", 403, "AuthorizationFailed"))
    with pytest.raises(ArmError) as caught:
        ports.inventory(DEMO_SUB)
    assert caught.value.operation == f"subscription {DEMO_SUB}: cluster list"
    assert "403" in caught.value.message and "AuthorizationFailed" in caught.value.message


@pytest.mark.parametrize(
    ("operation", "read"),
    [
        ("loadBalancers.listAll", Read.LOAD_BALANCERS),
        ("networkSecurityGroups.listAll", Read.NSGS),
        ("virtualNetworks.listAll", Read.VNETS),
        ("virtualMachineScaleSets.listAll", Read.SCALE_SETS),
        ("natGateways.listAll", Read.NAT_GATEWAYS),
    ],
)
def test_a_failed_list_is_a_subscription_wide_read_error(
    ports: Ports, operation: str, read: Read
) -> None:
    ports.faults.failures.append(Fault(operation, 403, "AuthorizationFailed"))
    estate = ports.inventory(DEMO_SUB)
    assert {c.name for c in estate.clusters} == DEMO_CLUSTERS  # the rest is still read
    (error,) = [e for e in estate.errors if not e.cluster_id]
    assert error.read is read
    assert "403" in str(error) and "AuthorizationFailed" in str(error)
    assert all(read in estate.missing(c.id) for c in estate.clusters)
    # references the failed list would have answered: the same on both
    fake = FakeArm(load_estate(SCENARIOS / "demo.json"))
    fake.faults.failures.append(Fault(operation, 403, "AuthorizationFailed"))
    assert _keys(estate) == _keys(fake.inventory(DEMO_SUB))


def _keys(estate: Estate) -> set[tuple[Read, str, str, str]]:
    return {(e.read, e.cluster_id, e.pool, str(e)) for e in estate.errors}


def test_a_failed_instance_list_names_its_cluster_and_pool(ports: Ports) -> None:
    ports.faults.failures.append(
        Fault("virtualMachineScaleSetVMs.list", 500, "Injected", path_contains="rg-shop-nodes")
    )
    estate = ports.inventory(DEMO_SUB)
    shop = next(c for c in estate.clusters if c.name == "aks-shop")
    batch = next(c for c in estate.clusters if c.name == "aks-batch")
    assert {(e.read, e.cluster_id, e.pool) for e in estate.errors} == {
        (Read.INSTANCES, shop.id, "system"),
        (Read.INSTANCES, shop.id, "user"),
    }
    assert Read.INSTANCES in estate.missing(shop.id)
    assert estate.missing(batch.id) == frozenset()
    assert all(p.instances == () for p in shop.pools)
    assert all(p.instances for p in batch.pools)


def test_a_stopped_cluster_reads_as_stopped(ports: Ports) -> None:
    for doc in ports.estate.docs.values():
        if doc.get("name") == "aks-batch" and "managedclusters" in str(doc.get("type")).lower():
            doc["properties"]["powerState"] = {"code": "Stopped"}
    clusters = {c.name: c.power_state.lower() for c in ports.inventory(DEMO_SUB).clusters}
    assert clusters["aks-batch"] == "stopped"
    assert clusters["aks-shop"] == "running"


# -- ArmCallCounts --------------------------------------------------------------------------


def test_call_counts_grow_with_the_reads_and_name_operations(ports: Ports) -> None:
    before = ports.calls(DEMO_SUB)
    ports.inventory(DEMO_SUB)
    after = ports.calls(DEMO_SUB)
    assert after.total > before.total
    assert after.requests.get("GET sub:managedClusters", 0) == (
        before.requests.get("GET sub:managedClusters", 0) + 1
    )
    grown = after.requests.get("GET rg:virtualMachineScaleSets/{}/virtualMachines", 0)
    assert grown - before.requests.get("GET rg:virtualMachineScaleSets/{}/virtualMachines", 0) == 10


# -- ServiceTagSource -----------------------------------------------------------------------


def test_service_tags_of_a_location(ports: Ports) -> None:
    tags = ports.service_tags(DEMO_SUB, "eastus")
    assert tags.get("AzureLoadBalancer") is not None
    assert tags.get("AzureCloud.eastus") is not None


def test_failed_service_tags_raise_arm_error(ports: Ports) -> None:
    ports.faults.failures.append(Fault("serviceTags.list", 403, "AuthorizationFailed"))
    with pytest.raises(ArmError) as caught:
        ports.service_tags(DEMO_SUB, "eastus")
    assert caught.value.operation == "service tags eastus"
    assert "403" in caught.value.message


# -- SnatMetricsSource ----------------------------------------------------------------------


def _targets(ports: Ports) -> list[MetricsTarget]:
    estate = ports.inventory(DEMO_SUB)
    lbs = [lb.id for lb in estate.load_balancers if lb.name == "kubernetes"]
    nats = [n.id for n in estate.nat_gateways]
    return [MetricsTarget(i, "eastus", False) for i in lbs] + [
        MetricsTarget(i, "eastus", True) for i in nats
    ]


def test_snat_metrics_come_back_for_every_target(ports: Ports) -> None:
    targets = _targets(ports)
    read = ports.snat_metrics(DEMO_SUB, targets, now=NOW, window_minutes=5)
    assert read.errors == {}
    for t in targets:
        body = read.body(t.resource_id)
        assert body is not None, t.resource_id
        names = {v["name"]["value"] for v in body["value"]}
        wanted = {"SNATConnectionCount", "PacketDropCount"} if t.nat_gateway else {
            "SnatConnectionCount", "AllocatedSnatPorts", "UsedSnatPorts"}  # fmt: skip
        assert names == wanted


def test_an_unreadable_resource_is_an_error_not_an_exception(ports: Ports) -> None:
    targets = _targets(ports)
    ports.faults.failures += [
        Fault("metrics.getBatch", 500, "Injected"),
        Fault("metrics.list", 403, "AuthorizationFailed", path_contains="aks-batch"),
    ]
    read = ports.snat_metrics(DEMO_SUB, targets, now=NOW, window_minutes=5)
    bad = [t for t in targets if "aks-batch" in t.resource_id]
    assert bad
    for t in targets:
        if t in bad:
            assert read.body(t.resource_id) is None
            assert "AuthorizationFailed" in read.error(t.resource_id)
        else:
            assert read.body(t.resource_id) is not None


# -- The ports together: a scan sees the same on both -----------------------------------------


def test_a_scan_on_the_ports_finds_the_demo_problems(ports: Ports) -> None:
    outcome = run_scan(ScanOptions((DEMO_SUB,)), ports.scan_deps())
    found = {(o.cluster.name, f.cause, f.kind) for o in outcome.clusters for f in o.findings}
    assert ("aks-shop", Cause.NSG, Kind.PROBLEM) in found
    assert ("aks-batch", Cause.SNAT, Kind.PROBLEM) in found
    assert ("aks-egress", Cause.EGRESS, Kind.PROBLEM) in found
    assert not any(n == "aks-healthy" and k is Kind.PROBLEM for n, _, k in found)
    assert outcome.run.errors == ()
    fingerprints = sorted(f.fingerprint for f in outcome.findings)
    # exactly what the fake's scan finds
    fake = next(_fake())
    assert fingerprints == sorted(
        f.fingerprint for f in run_scan(ScanOptions((DEMO_SUB,)), fake.scan_deps()).findings
    )


# -- RunCommand -----------------------------------------------------------------------------


def _run(
    ports: Ports, state: InstanceState, params: list[tuple[str, str]] | None = None
) -> RunOutcome:
    return ports.runner_for(DEMO_SUB).run(
        state.resource_group, state.vmss, state.instance_id, "echo probe", params or []
    )


def test_run_command_returns_the_output(ports: Ports) -> None:
    outcome = _run(ports, ports.instance("aks-shop", "system", 0))
    assert outcome.failure is None
    assert outcome.output.stdout.strip() == "kubelet 10250 listening"


@pytest.mark.parametrize(
    ("setup", "failure", "status", "code"),
    [
        ("deallocated", Failure.NOT_RUNNING, 409, "OperationNotAllowed"),
        ("lockdown", Failure.DENIED, 403, "AuthorizationFailed"),
        ("conflict", Failure.BUSY, 409, "Conflict"),
        ("occupied", Failure.BUSY, 409, "Conflict"),
        ("policy", Failure.DENIED, 403, "RequestDisallowedByPolicy"),
        ("gone", Failure.NOT_FOUND, 404, None),
        ("throttled", Failure.THROTTLED, 429, "TooManyRequests"),
        ("server", Failure.FAILED, 500, "InternalServerError"),
    ],
)
def test_run_command_failures_are_outcomes(
    ports: Ports, setup: str, failure: Failure, status: int, code: str | None
) -> None:
    state = ports.instance("aks-shop", "system", 1)
    run_fault = "virtualMachineScaleSetVMs.runCommand"
    if setup == "deallocated":
        state = ports.instance("aks-shop", "user", 2)
    elif setup == "lockdown":
        state.restriction_level = "ReadOnly"
    elif setup == "occupied":
        ports.occupy(state)
    elif setup == "gone":
        state = InstanceState(**{**_fields(state), "instance_id": "99"})
    elif setup in ("conflict", "policy", "throttled", "server"):
        wanted = {"conflict": (409, "Conflict"), "policy": (403, "RequestDisallowedByPolicy"),
                  "throttled": (429, "TooManyRequests"),
                  "server": (500, "InternalServerError")}[setup]  # fmt: skip
        ports.faults.failures.append(Fault(run_fault, *wanted, path_contains=state.vmss))
    outcome = _run(ports, state)
    assert outcome.failure is failure
    assert outcome.status == status
    assert outcome.output is None
    if code is not None:
        assert outcome.code == code


def test_run_command_refuses_shell_code_and_sends_nothing(ports: Ports) -> None:
    state = ports.instance("aks-shop", "system", 0)
    with pytest.raises(InputError):
        _run(ports, state, [("TW_TARGET", "$(reboot)")])
    assert ports.started() == 0
    _run(ports, state)
    assert ports.started() == 1


def _fields(state: InstanceState) -> dict[str, object]:
    return {name: getattr(state, name) for name in InstanceState.__slots__}
