"""Node probes end to end, on real Linux nodes (network namespaces): scan -> probe cycle ->
queue (Azurite) -> probe worker -> run command through the ARM simulator -> the real probe
script in the node's namespace -> findings in Table Storage.

The functions run as the host would run them (the scan timer, the probe timer, the queue
worker and the poison worker, through their `make_deps` seams), the worker takes messages
from the queue four at a time (host.json batchSize + newBatchThreshold), until the queue is empty: deep probes the
triages ask for included. Every fault of the lab file must come out as its cause on the right
node, and the healthy clusters (with the standard AKS rules, ufw installed but inactive, a
second pool on Azure Linux) with no finding at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest

from functions import probe_timer, probe_worker, scan_timer
from shared.adapters.probe_ledger import LedgerEntry, ProbeLedger, ProbeStatus
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import FindingStore, StoredFinding
from shared.analysis.findings import Cause, Kind
from shared.compose import probe_deps, scan_deps, static_resolver
from shared.config import Settings
from shared.jobs.probe import ProbeDeps
from shared.jobs.scan import ScanDeps
from tests.armsim import SCENARIOS, ArmSimulator
from tests.azurite import azurite  # noqa: F401
from tests.conftest import require_tools
from tests.lab.nodelab import NodeLab
from tests.lab.nodelab_plan import load_lab_file
from tests.lab.ufwlab import ufw_unavailable_reason

pytestmark = pytest.mark.netns

SUB = "22222222-2222-2222-2222-222222222222"
NOW = datetime(2026, 11, 22, 10, 7, tzinfo=UTC)
TOOLS = ("iptables-legacy-restore", "iptables-nft-restore", "nc", "ufw", "unshare", "openssl")


@dataclass
class World:
    lab: NodeLab
    sim: ArmSimulator
    conn: str
    env: dict[str, str]
    findings: dict[str, list[StoredFinding]] = field(default_factory=dict)  # by cluster name
    ledger: list[LedgerEntry] = field(default_factory=list)
    results: list[str] = field(default_factory=list)

    def tables(self) -> TableServiceClient:
        return TableServiceClient.from_connection_string(self.conn)

    def scan_deps(self, settings: Settings, environ: Mapping[str, str]) -> ScanDeps:
        store = FindingStore(self.tables(), prefix=settings.table_prefix)
        store.ensure_tables()
        queue = ProbeQueue.from_connection_string(self.conn, settings.probe_queue)
        queue.ensure()
        return scan_deps(
            self.sim.credential(), arm_endpoint=self.sim.endpoint, ca_bundle=self.sim.ca_path,
            resolver=static_resolver(self.lab.resolve_overrides(), None), store=store,
            queue=queue, clock=lambda: NOW, metrics_endpoint=self.sim.endpoint,
        )  # fmt: skip

    def probe_deps(self, settings: Settings, environ: Mapping[str, str]) -> ProbeDeps:
        queue = ProbeQueue.from_connection_string(self.conn, settings.probe_queue)
        poison = queue.sibling(f"{settings.probe_queue}-poison")
        poison.ensure()
        ledger = ProbeLedger(self.tables(), prefix=settings.table_prefix)
        ledger.ensure()
        return probe_deps(
            self.sim.credential(), arm_endpoint=self.sim.endpoint, ca_bundle=self.sim.ca_path,
            store=FindingStore(self.tables(), prefix=settings.table_prefix), ledger=ledger,
            queue=queue, poison=poison, clock=lambda: NOW,
        )  # fmt: skip

    def cycle_deps(self, settings: Settings, environ: Mapping[str, str]):  # type: ignore[no-untyped-def]
        queue = ProbeQueue.from_connection_string(self.conn, settings.probe_queue)
        queue.ensure()
        deps = self.probe_deps(settings, environ)
        return deps.inventory, queue, deps.store


def _drain(world: World) -> None:
    """What the Functions host does: run the worker on every message until none is left."""
    queue = ProbeQueue.from_connection_string(world.conn, world.env["PROBE_QUEUE"])
    poison = queue.sibling(world.env["PROBE_QUEUE"] + "-poison")
    with ThreadPoolExecutor(max_workers=4) as pool:  # host.json batchSize + newBatchThreshold
        while texts := queue.take(max_messages=4):
            for result in pool.map(lambda t: probe_worker.probe_once(t, world.env), texts):
                world.results.append(result.detail)
        for text in poison.take():
            world.results.append(probe_worker.probe_once(text, world.env, poison=True).detail)


@pytest.fixture(scope="module")
def world(netns_ok: None, azurite: str) -> Iterator[World]:  # noqa: F811
    require_tools(*TOOLS)
    if ufw_unavailable_reason():
        pytest.fail(f"the node lab needs ufw: {ufw_unavailable_reason()}")
    estate, faults = load_lab_file(SCENARIOS / "nodelab.lab.json")
    mp = pytest.MonkeyPatch()
    with NodeLab(estate, faults) as lab, ArmSimulator(estate, executor=lab.executor) as sim:
        port = sim.endpoint.rsplit(":", 1)[1]
        env = {
            "TUNNELWATCH_SUBSCRIPTIONS": SUB,
            "AzureWebJobsStorage": azurite,
            "PROBE_QUEUE": f"lab{port}",
            "PROBE_BUDGET": "50",
            "TABLE_PREFIX": f"lab{port}",
        }
        w = World(lab, sim, azurite, env)
        mp.setattr(scan_timer, "make_deps", w.scan_deps)
        mp.setattr(probe_worker, "make_deps", w.probe_deps)
        mp.setattr(probe_timer, "make_deps", w.cycle_deps)
        mp.setattr(probe_worker, "_deps", {})
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            scan_timer.scan_timer(TimerRequest(past_due=False))
            probe_timer.probe_cycle_once(env, now=NOW)
            _drain(w)
            store = FindingStore(w.tables(), prefix=env["TABLE_PREFIX"])
            for f in store.open_findings(subscription=SUB):
                w.findings.setdefault(f.cluster_id.rsplit("/", 1)[1], []).append(f)
            ledger = ProbeLedger(w.tables(), prefix=env["TABLE_PREFIX"])
            w.ledger = [e for p in {f"probe-{NOW:%Y%m%dT%H%M%SZ}"} for e in ledger.entries(p)]
            yield w
        finally:
            mp.undo()


def _problems(world: World, cluster: str) -> list[StoredFinding]:
    return [f for f in world.findings.get(cluster, []) if f.finding.kind is Kind.PROBLEM]


def _node(world: World, cluster: str, key: str) -> str:
    return world.lab.nodes[f"{cluster}/{key}"].spec.computer_name


@pytest.mark.parametrize("cluster", ["aks-lab-healthy", "aks-lab-ufw-allow"])
def test_healthy_clusters_have_no_finding_at_all(world: World, cluster: str) -> None:
    # The standard AKS/kube-proxy rules, ufw installed (inactive, or active with the allow),
    # the Azure Linux pool on the nft backend: nothing of it may read as a block.
    assert world.findings.get(cluster, []) == [], [
        (f.finding.check, f.finding.title) for f in world.findings.get(cluster, [])
    ]


@pytest.mark.parametrize(
    "cluster, node, cause, check",
    [
        ("aks-lab-ufw-deny", "system/1", Cause.UFW, "ufw"),
        ("aks-lab-iptables-drop", "user/1", Cause.IPTABLES, "iptables"),
        ("aks-lab-iptables-reject", "system/1", Cause.IPTABLES, "iptables"),
        ("aks-lab-policy-drop", "system/1", Cause.IPTABLES, "iptables"),
        ("aks-lab-reject-all", "system/1", Cause.IPTABLES, "iptables"),
        ("aks-lab-nft-only", "system/1", Cause.IPTABLES, "iptables"),
    ],
)
def test_an_inbound_block_is_found_by_triage_and_named_by_the_deep_probe(
    world: World, cluster: str, node: str, cause: Cause, check: str
) -> None:
    victim = _node(world, cluster, node)
    problems = _problems(world, cluster)
    # triage: the victim's kubelet port is unreachable (cause decided later)
    assert any(
        f.finding.check == "node.kubelet" and f.finding.subject.node == victim for f in problems
    ), [(f.finding.check, f.finding.subject.node) for f in problems]
    # deep: the deciding rule on the victim, with the fix wrapped in run command for it
    (named,) = [f for f in problems if f.finding.cause is cause]
    assert named.finding.subject.node == victim
    assert named.scope == f"probe:deep:{victim}"
    rem = named.finding.remediation
    assert rem is not None and rem.commands
    assert rem.commands[0].startswith("az vmss run-command invoke -g ")
    assert check in rem.commands[0]
    if cluster == "aks-lab-nft-only":
        assert "iptables-nft" in rem.commands[0]  # the block lives in the nft backend only
    assert any("recreate" in n.lower() or "tunnel" in n.lower() for n in rem.notes)


def test_blocked_egress_to_the_api_server_is_cause_4(world: World) -> None:
    problems = _problems(world, "aks-lab-egress-443")
    assert {f.finding.check for f in problems} >= {"node.egress.api"}
    assert all(f.finding.cause is Cause.EGRESS for f in problems if "egress" in f.finding.check)


def test_a_tls_inspecting_middlebox_is_cause_4(world: World) -> None:
    problems = _problems(world, "aks-lab-tls-inspect")
    assert [f.finding.cause for f in problems] == [Cause.EGRESS]
    assert "tls" in problems[0].finding.check


def test_an_oom_killed_agent_is_cause_6(world: World) -> None:
    problems = _problems(world, "aks-lab-oom-agent")
    (agent,) = [f for f in problems if f.finding.cause is Cause.AGENT]
    assert agent.finding.subject.node == _node(world, "aks-lab-oom-agent", "system/0")
    assert "OOM" in agent.finding.title


def test_lockdown_is_a_coverage_finding_and_opt_out_is_never_probed(world: World) -> None:
    (gap,) = world.findings["aks-lab-lockdown"]
    assert gap.finding.kind is Kind.COVERAGE
    assert "aks-lab-probe-off" not in world.findings
    touched = {r.resource_group.lower() for r in world.sim.run_command_requests}
    assert not any("probe-off" in rg for rg in touched)


def test_run_commands_grow_with_pools_and_affected_nodes(world: World) -> None:
    kinds = Counter(e.kind for e in world.ledger if e.run_commands)
    statuses = Counter(e.status for e in world.ledger)
    total = sum(e.run_commands for e in world.ledger)
    linux_nodes = len(world.lab.nodes)
    print(f"probe cycle: {total} run commands for {linux_nodes} Linux nodes ({dict(kinds)})")
    # the ledger counts every run command sent, the denied one included
    assert total == world.sim.calls["virtualMachineScaleSetVMs.runCommand"]
    # one triage per Linux pool, one deep per node found unreachable; never 3 per node
    assert kinds["deep"] == 6  # the six inbound faults
    assert total < linux_nodes
    assert statuses[ProbeStatus.DENIED] == 1  # the locked-down cluster
    assert ProbeStatus.POISONED not in statuses
    # the Windows pool and the deallocated instance were never sent a command
    assert not any(r.vmss.lower().startswith("akswin") for r in world.sim.run_command_requests)
