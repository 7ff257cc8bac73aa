"""What both probe-worker rigs do the same way, whatever stands behind their ports (the
in-memory fakes of tests/fakes, or Azurite and the ARM simulator): find a pool, make a
request for one of its nodes, hand it to the worker, and leave a claim as another worker
would have."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.core.probe_claims import LedgerEntry, ProbeStatus
from shared.inventory.model import AgentPool, Cluster
from shared.jobs.probe import ProbeDeps, ProbeOptions, handle_probe_message
from shared.probe_requests import ProbeKind, ProbeRequest

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class ProbeRigMethods:
    """Mixed into a rig that sets `subscription`, `deps`, `options` and `ledger`."""

    subscription: str
    deps: ProbeDeps
    options: ProbeOptions
    ledger: Any  # the ProbeClaims port: the fake or the real ledger

    def pool(self, cluster_id: str, name: str) -> tuple[Cluster, AgentPool]:
        estate = self.deps.inventory(self.subscription)
        cluster = next(c for c in estate.clusters if c.id.lower() == cluster_id.lower())
        return cluster, next(p for p in cluster.pools if p.name == name)

    def request(self, cluster_id: str, pool: str, instance: str = "0",
                kind: ProbeKind = ProbeKind.TRIAGE) -> ProbeRequest:  # fmt: skip
        cluster, p = self.pool(cluster_id, pool)
        return ProbeRequest.new(
            kind, run_id="probe-test", subscription=self.subscription, cluster_id=cluster.id,
            node_resource_group=cluster.node_resource_group, vmss=p.vmss_name,
            instance_id=instance, reason="test", now=NOW,
        )  # fmt: skip

    def handle(self, request: ProbeRequest | str, message_id: str = ""):  # type: ignore[no-untyped-def]
        text = request if isinstance(request, str) else request.to_json()
        return handle_probe_message(text, self.options, self.deps, message_id=message_id)

    def claimed(self, request: ProbeRequest, owner: str, at: datetime) -> None:
        """A RUNNING row as a worker holding `request` would have left it."""
        self.ledger.put(
            LedgerEntry(
                request.run_id, request.request_id, ProbeStatus.RUNNING, request.attempt,
                request.kind.value, request.cluster_id, f"{request.vmss}/{request.instance_id}",
                "running", 0, at, owner,
            )
        )  # fmt: skip
