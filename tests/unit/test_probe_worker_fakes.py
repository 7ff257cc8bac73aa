"""The probe worker on the ports' fakes, in milliseconds: the storage fakes (tests/fakes/storage.py)
and the ARM fakes (tests/fakes/arm.py) over the demo estate, with scripted nodes answering in the
probe script's real output format. The same behaviour over HTTPS and Azurite is
tests/adapters/test_probe_worker.py (kept as the integration test); the contract suites in
tests/contracts/ hold the fakes to the real adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.probe_ledger import ProbeStatus
from shared.adapters.runcommand import RunOutcome
from shared.analysis.findings import Cause, Kind
from shared.analysis.runcommand import split_result
from shared.core.lifecycle import FindingState
from shared.errors import StorageError
from shared.inventory.model import id_key
from shared.jobs.probe import ProbeDeps, ProbeOptions, handle_poison
from shared.jobs.probe_cycle import run_probe_cycle
from shared.probe_requests import ProbeKind, ProbeRequest
from tests.armsim.runcommand import format_result
from tests.armsim.scripted import ScriptedNodes, addresses_of
from tests.fakes.arm import DEMO_SUB, FakeArm, FakeRunCommand, demo_arm
from tests.fakes.storage import FakeFindingStore, FakeProbeLedger, FakeProbeQueue
from tests.probe_requests_rig import ProbeRigMethods

SUB = DEMO_SUB
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
HEALTHY = (
    f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.ContainerService/"
    "managedClusters/aks-healthy"
)
PRIVATE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-private/providers/Microsoft.ContainerService/"
    "managedClusters/aks-private"
)
DROP_10250 = (
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    "-A INPUT -p tcp -m tcp --dport 10250 -j DROP\nCOMMIT\n"
)


class ScriptedRunCommand:
    """The fake ARM's run command (refusals: busy, stopped, locked down, injected faults),
    answered on success by scripted nodes instead of a fixed output."""

    def __init__(self, inner: FakeRunCommand, nodes: ScriptedNodes, subscription: str) -> None:
        self._inner, self._nodes, self._sub = inner, nodes, subscription

    def run(self, node_resource_group: str, vmss: str, instance_id: str, script: str,
            parameters: Sequence[tuple[str, str]]) -> RunOutcome:  # fmt: skip
        outcome = self._inner.run(node_resource_group, vmss, instance_id, script, parameters)
        if outcome.output is None:
            return outcome
        stdout, stderr = self._nodes(
            self._sub, node_resource_group, vmss, instance_id, script.splitlines(), parameters
        )
        return RunOutcome(output=split_result(format_result("Linux", stdout, stderr), "scripted"))


class Rig(ProbeRigMethods):
    subscription = SUB

    def __init__(self) -> None:
        self.arm: FakeArm = demo_arm()
        self.nodes = ScriptedNodes(addresses_of(self.arm.estate))
        self.now = NOW
        self.store = FakeFindingStore()
        self.ledger = FakeProbeLedger()
        self.queue = FakeProbeQueue("probe-requests", clock=lambda: self.now)
        self.poison = self.queue.sibling("probe-requests-poison")
        self.options = ProbeOptions(subscriptions=(SUB,), max_attempts=3)
        self.deps = ProbeDeps(
            inventory=self.arm.inventory,
            runner_for=lambda sub: ScriptedRunCommand(self.arm.runner_for(sub), self.nodes, sub),
            store=self.store, ledger=self.ledger, queue=self.queue, poison=self.poison,
            clock=lambda: self.now, jitter=lambda: 0.0,
        )  # fmt: skip


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_triage_deep_probe_and_two_clean_rounds_resolve(rig: Rig) -> None:
    _, apps = rig.pool(HEALTHY, "apps")
    victim = apps.instances[1]
    rig.nodes.unreachable.add(victim.private_ips[0])
    rig.nodes.deep_rules[victim.private_ips[0]] = DROP_10250

    triage = rig.handle(rig.request(HEALTHY, "system"))
    assert triage.status is ProbeStatus.DONE and triage.run_commands == 1, triage.detail
    assert [f.subject.node for f in triage.findings if f.kind is Kind.PROBLEM] == [
        victim.computer_name
    ]
    (deep,) = triage.follow_ups
    assert (deep.kind, deep.instance_id) == (ProbeKind.DEEP, victim.instance_id)
    queued = rig.queue.take()
    assert [ProbeRequest.from_json(t).request_id for t in queued] == [deep.request_id]

    result = rig.handle(queued[0])
    assert result.status is ProbeStatus.DONE
    assert {f.cause for f in result.findings if f.kind is Kind.PROBLEM} == {Cause.IPTABLES}
    assert {s.scope for s in rig.store.current_findings(HEALTHY)} == {
        "probe:triage:system",
        f"probe:deep:{victim.computer_name}",
    }
    assert sum(e.run_commands for e in rig.ledger.entries("probe-test")) == 2
    # one incident for the node: the triage's and the deep probe's findings of it
    (incident,) = rig.store.incidents_open_at(HEALTHY, NOW)
    assert incident.group == f"node:{victim.computer_name.lower()}"
    assert len(incident.findings) == len(rig.store.open_findings(subscription=SUB))

    # Fixed: RESOLVE_AFTER=2, so one clean round only counts, the second resolves.
    rig.nodes.unreachable.clear()
    rig.nodes.deep_rules.clear()
    rig.now = NOW + timedelta(minutes=10)
    again = rig.handle(rig.request(HEALTHY, "system"))  # a new request id
    (recheck,) = again.follow_ups
    assert recheck.instance_id == victim.instance_id
    rig.handle(rig.queue.take()[0])
    still = rig.store.open_findings(subscription=SUB, cluster_id=HEALTHY)
    assert {(s.scope, s.missed) for s in still} == {
        ("probe:triage:system", 1),
        (f"probe:deep:{victim.computer_name}", 1),
    }
    rig.now = NOW + timedelta(minutes=20)
    third = rig.handle(rig.request(HEALTHY, "system"))
    # the re-check it asks for has the last one's id (same cycle, node and reason): dropped
    (copy,) = third.follow_ups
    assert "duplicate" in rig.handle(rig.queue.take()[0]).detail
    assert copy.request_id == recheck.request_id
    rig.handle(rig.request(HEALTHY, "apps", victim.instance_id, ProbeKind.DEEP))
    assert rig.store.open_findings(subscription=SUB) == []
    assert rig.store.incidents_open_at(HEALTHY, rig.now) == []
    resolved = rig.store.current_findings(HEALTHY, state=FindingState.RESOLVED)
    assert len(resolved) == 2


def test_redelivery_copies_and_crashes(rig: Rig) -> None:
    request = rig.request(HEALTHY, "system")
    assert rig.handle(request).status is ProbeStatus.DONE
    again = rig.handle(request)
    assert again.run_commands == 0 and "duplicate" in again.detail
    # another worker's fresh claim: dropped; our own message after a crash, or a dead
    # worker's old claim: run again
    other = rig.request(HEALTHY, "apps")
    rig.claimed(other, owner="message-a", at=NOW - timedelta(minutes=2))
    copy = rig.handle(other, message_id="message-b")
    assert copy.status is ProbeStatus.RUNNING and "duplicate" in copy.detail
    assert rig.handle(other, message_id="message-a").status is ProbeStatus.DONE
    third = rig.request(HEALTHY, "apps", "1")
    rig.claimed(third, owner="message-x", at=NOW - timedelta(minutes=30))
    assert rig.handle(third, message_id="message-y").status is ProbeStatus.DONE
    assert len(rig.arm.run_commands) == 3


def test_a_busy_vm_is_retried_by_a_delayed_message_then_poisoned(rig: Rig) -> None:
    cluster, system = rig.pool(HEALTHY, "system")
    rig.arm.busy.add(id_key(
        f"/subscriptions/{SUB}/resourceGroups/{cluster.node_resource_group}/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{system.vmss_name}/virtualMachines/0"
    ))  # fmt: skip
    result = rig.handle(rig.request(HEALTHY, "system"))
    assert result.status is ProbeStatus.RETRY and "Conflict" in result.detail
    assert "retry in 90s" in result.detail
    (later,) = result.follow_ups
    assert later.attempt == 2 and rig.queue.take() == []  # invisible until the delay passed
    ((delayed, visible_at),) = rig.queue.delayed()
    assert delayed == later and visible_at == NOW + timedelta(seconds=90)
    entry = rig.ledger.get("probe-test", later.request_id)
    assert entry is not None and entry.status is ProbeStatus.RETRY

    last = replace(later, attempt=3)
    assert rig.handle(last).status is ProbeStatus.POISONED
    rig.now = NOW + timedelta(days=1)
    (poisoned,) = rig.poison.take()
    handled = handle_poison(poisoned, rig.options, rig.deps)
    (finding,) = handled.findings
    assert finding.kind is Kind.INCONCLUSIVE and "failed 3 times" in finding.title
    stored = rig.store.open_findings(subscription=SUB, cluster_id=HEALTHY)
    assert [s.finding.title for s in stored] == [finding.title]
    assert rig.handle(last).run_commands == 0  # the ledger says poisoned
    assert rig.arm.run_commands == []


def test_the_cycle_budget_and_lockdown(rig: Rig) -> None:
    rig.options = replace(rig.options, budget=1)
    assert rig.handle(rig.request(HEALTHY, "system")).status is ProbeStatus.DONE
    over = rig.handle(rig.request(HEALTHY, "apps"))
    assert over.status is ProbeStatus.SKIPPED and "over the budget of 1" in over.detail
    assert rig.ledger.spent("probe-test") == 1

    rig.options = replace(rig.options, budget=None)
    denied = rig.handle(rig.request(PRIVATE, "system"))
    assert denied.status is ProbeStatus.DENIED and denied.follow_ups == ()
    (finding,) = denied.findings
    assert finding.kind is Kind.COVERAGE
    assert [s.finding for s in rig.store.current_findings(PRIVATE)] == [finding]


def test_storage_down_is_an_error_the_host_retries_not_a_silent_pass(rig: Rig) -> None:
    rig.store.fail_with = StorageError("record cluster", "503 ServerBusy")
    with pytest.raises(StorageError, match="ServerBusy"):
        rig.handle(rig.request(HEALTHY, "system"))


def test_a_probe_cycle_drained_by_the_worker_finds_the_blocked_node(rig: Rig) -> None:
    _, apps = rig.pool(HEALTHY, "apps")
    victim = apps.instances[0]
    rig.nodes.unreachable.add(victim.private_ips[0])
    rig.nodes.deep_rules[victim.private_ips[0]] = DROP_10250
    cycle = run_probe_cycle(
        (SUB,), inventory=rig.arm.inventory, queue=rig.queue, budget=20, now=NOW, store=rig.store
    )
    assert cycle.requests and cycle.errors == ()
    assert list(rig.queue.peek()) == list(cycle.requests)
    rig.options = replace(rig.options, budget=20)
    statuses: list[ProbeStatus | None] = []
    for _ in range(3):  # triages, then the deep probes they asked for
        for text in rig.queue.take():
            statuses.append(rig.handle(text).status)
    assert rig.queue.take() == [] and rig.poison.take() == []
    assert ProbeStatus.DONE in statuses
    assert 0 < rig.ledger.spent(cycle.cycle_id) <= 20
    iptables = [
        s for s in rig.store.open_findings(subscription=SUB, cluster_id=HEALTHY)
        if s.finding.cause is Cause.IPTABLES
    ]  # fmt: skip
    assert {s.scope for s in iptables} == {f"probe:deep:{victim.computer_name}"}
