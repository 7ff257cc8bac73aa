"""Fault runs of the probe worker: a clean triage, the same triage with one fault, a clean one.

The worker goes through the production wiring (`probe_deps` -> `handle_probe_message`) against
the simulator's run command, answered by scripted nodes (tests/armsim/scripted.py) of the
demo estate. One node of aks-healthy's `apps` pool does not answer on 10250, so the baseline
triage of the `system` pool stores an open problem for it; a fault must never close it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from azure.data.tables import TableServiceClient

from shared.adapters.probe_ledger import ProbeLedger, ProbeStatus
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import FindingStore
from shared.compose import probe_deps
from shared.jobs.probe import ProbeDeps, ProbeOptions, handle_probe_message
from shared.probe_requests import ProbeKind, ProbeRequest
from tests.armsim import ArmSimulator, Faults
from tests.armsim.scripted import ScriptedNodes
from tests.faults.rigs import FAST_RETRY, READ_TIMEOUT, STEP, STORAGE_RETRY, SUB, T0
from tests.faults.snapshot import compare, snapshot
from tests.faults.tally import TALLY, Counts, Row

__all__ = ["RUN_COMMAND_TIMEOUT", "NodeTamper", "ProbeRig"]

RUN_COMMAND_TIMEOUT = 1.5  # seconds the worker waits for one run command (production: 300)
CLUSTER = (
    f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.ContainerService/"
    "managedClusters/aks-healthy"
)


@dataclass
class NodeTamper:
    """The executor of the simulator: scripted nodes, with their output changed on demand
    (`transform`), a failure of the extension itself (`fail`), or a command that hangs."""

    nodes: ScriptedNodes
    transform: Callable[[str], str] | None = None
    fail: bool = False
    outputs: list[str] = field(default_factory=list)

    def __call__(
        self, sub: str, rg: str, vmss: str, iid: str, script: Sequence[str],
        params: Sequence[tuple[str, str]],
    ) -> tuple[str, str]:  # fmt: skip
        if self.fail:
            raise RuntimeError("the VM agent did not answer (armsim injected)")
        stdout, stderr = self.nodes(sub, rg, vmss, iid, script, params)
        self.outputs.append(stdout)
        if self.transform is not None:
            stdout = self.transform(stdout)
        return stdout, stderr


class ProbeRig:
    _ids = itertools.count(1)

    def __init__(self, sim: ArmSimulator, tamper: NodeTamper, connection_string: str) -> None:
        self.sim = sim
        self.tamper = tamper
        self.conn = connection_string
        self.service = TableServiceClient.from_connection_string(connection_string, **STORAGE_RETRY)
        self.options = ProbeOptions(subscriptions=(SUB,), max_attempts=3)
        self._now = T0
        self._target: tuple[str, str, str, str] | None = None

    def _deps(self) -> tuple[ProbeDeps, FindingStore]:
        prefix = f"fp{next(self._ids)}t{int(time.time() * 1000) % 10**9}"
        store = FindingStore(self.service, prefix=prefix)
        store.ensure_tables()
        ledger = ProbeLedger(self.service, prefix=prefix)
        ledger.ensure()
        queue = ProbeQueue.from_connection_string(self.conn, f"{prefix}-probes")
        queue.ensure()
        poison = queue.sibling(f"{prefix}-poison")
        poison.ensure()
        deps = probe_deps(
            self.sim.credential(), arm_endpoint=self.sim.endpoint, ca_bundle=self.sim.ca_path,
            store=store, ledger=ledger, queue=queue, poison=poison, clock=lambda: self._now,
            retry=FAST_RETRY, read_timeout=READ_TIMEOUT, run_command_timeout=RUN_COMMAND_TIMEOUT,
        )  # fmt: skip
        deps.jitter = lambda: 0.0
        return deps, store

    def _triage(self, deps: ProbeDeps, at: datetime, run_id: str) -> ProbeRequest:
        """A triage of aks-healthy's system pool, as the scan would queue it. The target is
        looked up once, before any fault, so the worker's own inventory read meets it."""
        self._now = at
        if self._target is None:
            estate = deps.inventory(SUB)
            cluster = next(c for c in estate.clusters if c.id.lower() == CLUSTER.lower())
            system = next(p for p in cluster.pools if p.name == "system")
            apps = next(p for p in cluster.pools if p.name == "apps")
            # one node of the other pool does not answer on 10250
            self.tamper.nodes.unreachable.add(apps.instances[1].private_ips[0])
            self._target = (
                cluster.id, cluster.node_resource_group, system.vmss_name or "",
                system.instances[0].instance_id,
            )  # fmt: skip
        cluster_id, node_rg, vmss, instance = self._target
        return ProbeRequest.new(
            ProbeKind.TRIAGE, run_id=run_id, subscription=SUB, cluster_id=cluster_id,
            node_resource_group=node_rg, vmss=vmss, instance_id=instance, reason="fault run",
            now=at,
        )  # fmt: skip

    def run(
        self,
        name: str,
        faults: Faults | None = None,
        *,
        before: Callable[[], None] | None = None,
        after: Callable[[], None] | None = None,
    ) -> Counts:
        started = time.perf_counter()
        deps, store = self._deps()
        base = handle_probe_message(self._triage(deps, T0, "fi-base").to_json(), self.options, deps)
        if base.status is not ProbeStatus.DONE:
            raise RuntimeError(f"clean baseline triage did not finish: {base.detail}")
        first = snapshot(self.service, store.names)
        if not first.open:
            raise RuntimeError("the baseline triage stored no open finding: nothing to compare")

        counts = Counts()
        request = self._triage(deps, T0 + STEP, "fi-fault")
        if before is not None:
            before()
        try:
            with self.sim.faulted(faults):
                result = handle_probe_message(request.to_json(), self.options, deps)
            status = result.status.value if result.status else "refused"
            counts.outcome = f"{status}: {result.detail}"
        except Exception as exc:
            counts.crashes += 1
            counts.outcome = f"raised {type(exc).__name__}"
            counts.symptoms.append(f"crash: {type(exc).__name__}: {exc}"[:300])
        finally:
            if after is not None:
                after()
            self.sim.run_commands.wait_idle(timeout=30)
        during = snapshot(self.service, store.names)

        final = handle_probe_message(
            self._triage(deps, T0 + 2 * STEP, "fi-final").to_json(), self.options, deps
        )
        if final.status is not ProbeStatus.DONE:
            counts.symptoms.append(f"the clean triage after the fault: {final.detail}"[:300])
        last = snapshot(self.service, store.names)
        compare(first, during, last, fault_at=T0 + STEP, final_at=T0 + 2 * STEP, counts=counts)
        TALLY.add(Row("probe", name, counts, time.perf_counter() - started))
        return counts
