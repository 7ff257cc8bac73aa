"""Which nodes to probe and with what: the probe cycle, a request checked against the inventory,
the parameters of one run command, and the deep probes a triage asks for. Pure: no I/O.

Run commands per cycle grow with node pools plus affected nodes, never with all nodes: a cycle
asks for one TRIAGE per Linux scale-set pool (one running node tests every node of its cluster
on 10250 and the API server, in slices of at most MAX_TARGETS per run command), and each triage
asks for a DEEP probe only of the nodes it found unreachable, plus the nodes that still hold
open findings of an earlier deep probe (to confirm a fix), within a per-triage limit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from shared.analysis.findings import Finding, Kind
from shared.checks.probe_outcomes import refused_request_finding
from shared.errors import InputError
from shared.inventory.model import AgentPool, Cluster, Estate, Instance, PowerState
from shared.probe.params import MAX_TARGETS, validate_probe_parameters
from shared.probe_requests import ProbeKind, ProbeRequest

__all__ = [
    "PlannedRun",
    "Refused",
    "Resolved",
    "cycle_requests",
    "deep_follow_ups",
    "plan_runs",
    "resolve_request",
    "scope_of",
    "triage_request",
]

API_PORT = 443
_NAMESPACE = uuid.UUID("6f1c3b0e-7a51-4a8e-9a57-2f7d0c3c8a10")  # deep request ids derive from it


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request matched to the inventory: the cluster, pool and running instance to use."""

    cluster: Cluster
    pool: AgentPool
    instance: Instance
    note: str = ""  # e.g. "instance 3 is stopped; probing instance 4 of the pool instead"


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One run command: its validated parameters and the peers it tests (address -> node)."""

    parameters: tuple[tuple[str, str], ...]
    peers: Mapping[str, str]
    tests_api: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """A probe that could not be requested (a name outside the request's rules): the
    COVERAGE finding that says so, to be stored in the pool's triage scope."""

    cluster: Cluster
    pool: AgentPool
    finding: Finding
    why: str

    @property
    def scope(self) -> str:
        return f"probe:triage:{self.pool.name}"


def triage_request(
    cluster: Cluster, pool: AgentPool, instance: Instance, *, run_id: str, reason: str,
    now: datetime,
) -> ProbeRequest | Refused:  # fmt: skip
    """The TRIAGE request of one pool, or the finding that says why there is none: one
    unusual name stops the probes of its own pool, never the others'."""
    try:
        return ProbeRequest.new(
            ProbeKind.TRIAGE,
            run_id=run_id,
            subscription=cluster.subscription,
            cluster_id=cluster.id,
            node_resource_group=cluster.node_resource_group,
            vmss=pool.vmss_name or "",
            instance_id=instance.instance_id,
            reason=reason,
            now=now,
        )
    except InputError as exc:
        why = f"no probe request for pool {pool.name}: {exc.message}"
        return Refused(cluster, pool, refused_request_finding(cluster, pool, why, now), why)


def scope_of(kind: ProbeKind, pool: AgentPool, instance: Instance) -> str:
    """The storage scope a probe's findings belong to (see Observation.scope)."""
    if kind is ProbeKind.TRIAGE:
        return f"probe:triage:{pool.name}"
    return f"probe:deep:{instance.computer_name}"


def _running(instances: Iterable[Instance]) -> list[Instance]:
    return [i for i in instances if i.power_state is PowerState.RUNNING]


def _probeable(cluster: Cluster, pool: AgentPool) -> str:
    """Why this pool is not probed, or "" when it is."""
    if cluster.probe_opt_out:
        return "the cluster is tagged tunnelwatch-probe=off"
    if pool.probe_opt_out:
        return f"pool {pool.name} is tagged tunnelwatch-probe=off"
    if pool.os_type.lower() != "linux":
        return f"pool {pool.name} runs {pool.os_type}: the probe is a bash script for Linux nodes"
    if not pool.vmss_name:
        return f"pool {pool.name} has no scale set (run command here needs one)"
    return ""


_T = TypeVar("_T")


def _rotated(items: list[_T], cycle_id: str) -> list[_T]:
    """`items` starting at a place the cycle id picks: what a limit leaves out changes from one
    cycle to the next, so over successive cycles every item has its turn."""
    if not items:
        return items
    start = int(hashlib.sha256(cycle_id.encode()).hexdigest(), 16) % len(items)
    return items[start:] + items[:start]


def triage_share(budget: int) -> int:
    """How many of a cycle's `budget` run commands its triages may take: three quarters
    (all of a budget under 4); the rest is kept for the deep probes the triages ask for and
    for retries of busy or throttled nodes, which the worker draws from the same budget."""
    return budget - budget // 4


def cycle_requests(
    estates: Sequence[Estate], *, cycle_id: str, budget: int, now: datetime, reason: str
) -> tuple[list[ProbeRequest], list[str], list[Refused]]:
    """A triage per probeable pool, at most `triage_share(budget)`; (requests, what was left
    out and why, the pools whose request a name made impossible).

    When the budget is smaller than the pools, the starting point rotates with the cycle id,
    so every pool gets its turn over successive cycles instead of the first ones every time.
    """
    candidates: list[tuple[Cluster, AgentPool, ProbeRequest]] = []
    skipped: list[str] = []
    refused: list[Refused] = []
    for estate in estates:
        for cluster in sorted(estate.clusters, key=lambda c: c.id.lower()):
            if cluster.power_state.lower() == "stopped":
                skipped.append(f"{cluster.id}: the cluster is stopped")
                continue
            for pool in cluster.pools:
                why = _probeable(cluster, pool)
                running = _running(pool.instances)
                if not why and not running:
                    why = f"pool {pool.name} has no running instance"
                if why:
                    skipped.append(f"{cluster.id}: {why}")
                    continue
                request = triage_request(
                    cluster, pool, running[0], run_id=cycle_id, reason=reason, now=now
                )
                if isinstance(request, Refused):
                    refused.append(request)
                    skipped.append(f"{cluster.id}: {request.why}")
                else:
                    candidates.append((cluster, pool, request))
    share = triage_share(budget)
    if len(candidates) > share:
        rotated = _rotated(candidates, cycle_id)
        skipped += [
            f"{c.id}: pool {p.name} over this cycle's budget of {budget} run commands "
            f"({share} for triages)"
            for c, p, _ in rotated[share:]
        ]
        candidates = rotated[:share]
    return [request for _, _, request in candidates], skipped, refused


def resolve_request(
    request: ProbeRequest, estate: Estate, subscriptions: Iterable[str]
) -> Resolved | str:
    """The inventory's cluster/pool/instance for `request`, or why it cannot be probed.

    Raises InputError when the request names something the inventory does not hold (a
    forged or stale message: nothing is run for it); returns a reason string when the request
    is genuine but must be skipped (opted out, Windows, stopped).
    """
    source = f"probe request {request.request_id}"
    if request.subscription.lower() not in {s.lower() for s in subscriptions}:
        raise InputError(source, f"subscription {request.subscription} is not one we watch")
    cluster = next((c for c in estate.clusters if c.id.lower() == request.cluster_id.lower()), None)
    if cluster is None:
        raise InputError(source, f"cluster {request.cluster_id} is not in the inventory")
    if cluster.node_resource_group.lower() != request.node_resource_group.lower():
        raise InputError(
            source,
            f"node resource group {request.node_resource_group!r} is not the cluster's "
            f"({cluster.node_resource_group})",
        )
    pool = next(
        (p for p in cluster.pools if (p.vmss_name or "").lower() == request.vmss.lower()), None
    )
    if pool is None:
        raise InputError(source, f"scale set {request.vmss!r} is not a pool of {cluster.name}")
    instance = next((i for i in pool.instances if i.instance_id == request.instance_id), None)
    if instance is None:
        raise InputError(
            source, f"instance {request.instance_id} is not in scale set {request.vmss}"
        )
    why = _probeable(cluster, pool)
    if why:
        return why
    if instance.power_state is not PowerState.RUNNING:
        state = instance.power_state.value
        if request.kind is ProbeKind.DEEP:
            return f"instance {instance.instance_id} ({instance.computer_name}) is {state}"
        running = _running(pool.instances)
        if not running:
            return f"pool {pool.name} has no running instance ({instance.computer_name} is {state})"
        note = (
            f"instance {instance.instance_id} is {state}; probing instance "
            f"{running[0].instance_id} of the pool instead"
        )
        return Resolved(cluster, pool, running[0], note)
    return Resolved(cluster, pool, instance)


def _ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def peers_of(cluster: Cluster, instance: Instance) -> dict[str, str]:
    """Primary IPv4 address -> node name of every other running node of the cluster."""
    peers: dict[str, str] = {}
    for pool in cluster.pools:
        for other in _running(pool.instances):
            if other.computer_name == instance.computer_name:
                continue
            primary = next((ip for ip in other.private_ips if _ipv4(ip)), None)
            if primary is not None:
                peers[primary] = other.computer_name
    return peers


def api_host(cluster: Cluster) -> str:
    """The name the node's tunnel agent dials: the private FQDN of a private cluster."""
    if cluster.private_cluster and cluster.private_fqdn:
        return cluster.private_fqdn
    return cluster.fqdn or cluster.private_fqdn or ""


def plan_runs(kind: ProbeKind, resolved: Resolved) -> tuple[list[PlannedRun], list[str]]:
    """The run commands of one request (a triage of a big cluster needs several), and notes.

    Raises InputError when the inventory holds a value the probe parameters refuse; the
    caller records it and runs nothing.
    """
    notes: list[str] = []
    peers = peers_of(resolved.cluster, resolved.instance)
    host = api_host(resolved.cluster)
    if not host:
        notes.append("the cluster reports no API server FQDN: the API server was not tested")
    slices: list[dict[str, str]] = [{}]
    if kind is ProbeKind.TRIAGE and peers:
        items = list(peers.items())
        slices = [dict(items[i : i + MAX_TARGETS]) for i in range(0, len(items), MAX_TARGETS)]
    runs = []
    for n, part in enumerate(slices):
        # Only the first run command of a request tests the API server: once is enough.
        test_api = n == 0 and bool(host)
        params = validate_probe_parameters(
            list(part), host if test_api else "", API_PORT, kind.value
        )
        runs.append(PlannedRun(tuple(params), part, test_api))
    return runs, notes


def _blocked_targets(findings: Iterable[Finding]) -> list[str]:
    return [
        f.subject.resource
        for f in findings
        if f.check == "node.kubelet" and f.kind is Kind.PROBLEM and f.subject.resource
    ]


_Wanted = tuple[str, tuple[AgentPool, Instance, str]]  # node name, (pool, instance, why)


def deep_follow_ups(
    triage: ProbeRequest,
    resolved: Resolved,
    findings: Sequence[Finding],
    recheck_nodes: Iterable[str],
    *,
    limit: int,
    now: datetime,
) -> tuple[list[ProbeRequest], list[str]]:
    """DEEP requests for the nodes the triage found unreachable, then for `recheck_nodes`
    (nodes whose earlier deep findings are still open), at most `limit`; and what was left.

    Request ids derive from the cycle (scan id), the node and why, so two triages of one
    cycle that both found a node unreachable ask for ONE deep probe of it, and a redelivered
    triage asks for the same ones again; the ledger drops the repeats.
    """
    by_ip: dict[str, tuple[AgentPool, Instance]] = {}
    by_name: dict[str, tuple[AgentPool, Instance]] = {}
    for pool in resolved.cluster.pools:
        for inst in pool.instances:
            by_name[inst.computer_name] = (pool, inst)
            for ip in inst.private_ips:
                by_ip[ip] = (pool, inst)
    unreachable: dict[str, tuple[AgentPool, Instance, str]] = {}
    for ip in _blocked_targets(findings):
        if ip in by_ip:
            pool, inst = by_ip[ip]
            unreachable.setdefault(
                inst.computer_name,
                (pool, inst, f"10250 unreachable from {resolved.instance.computer_name}"),
            )
    rechecks: list[_Wanted] = [
        (name, (*by_name[name], "re-check: an earlier deep probe's findings are open"))
        for name in recheck_nodes
        if name in by_name and name not in unreachable
    ]
    # Beyond the limit, the unreachable nodes probed rotate with the cycle (the same first
    # ten every hour would leave the others undiagnosed), and re-checks, which close the
    # findings of fixed nodes, alternate with them instead of waiting behind them.
    wanted = dict(_alternate(_rotated(list(unreachable.items()), triage.run_id), rechecks))
    requests: list[ProbeRequest] = []
    left: list[str] = []
    for name, (pool, inst, why) in wanted.items():
        reason = _probeable(resolved.cluster, pool)
        if reason or inst.power_state is not PowerState.RUNNING:
            left.append(f"{name}: {reason or 'not running'}")
            continue
        if len(requests) >= limit:
            left.append(f"{name}: over the limit of {limit} deep probes per triage")
            continue
        try:
            request = ProbeRequest.new(
                ProbeKind.DEEP,
                run_id=triage.run_id,
                subscription=triage.subscription,
                cluster_id=triage.cluster_id,
                node_resource_group=resolved.cluster.node_resource_group,
                vmss=pool.vmss_name or "",
                instance_id=inst.instance_id,
                reason=f"{why}"[:200],
                now=now,
                # One deep probe per node and cycle, however many triages found it
                # unreachable; the same id again on redelivery, which the ledger recognises.
                request_id=str(uuid.uuid5(_NAMESPACE, f"{triage.run_id}:{name}:{why[:8]}")),
            )
        except InputError as exc:  # a name of another pool: that node only is not probed
            left.append(f"{name}: no deep probe request: {exc.message}"[:300])
            continue
        requests.append(request)
    return requests, left


def _alternate(a: list[_Wanted], b: list[_Wanted]) -> Iterator[_Wanted]:
    """a[0], b[0], a[1], b[1], ... then the rest of the longer one."""
    for x, y in itertools.zip_longest(a, b, fillvalue=None):
        if x is not None:
            yield x
        if y is not None:
            yield y
