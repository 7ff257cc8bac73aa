"""The scan: every cluster of each subscription -> NSG and SNAT findings -> storage -> probes.

One code path for the timer function and `tunnelwatch scan`. Everything outside (ARM clients,
Azure Monitor, DNS, Table Storage, the queue, the clock) comes in through ScanDeps, so tests run
it against the ARM simulator and Azurite, and production against Azure.

A cluster is a unit of failure: an exception while checking one cluster makes that cluster's
scan FAILED (its open findings are held, not resolved) and the others go on. A failed cluster
list fails the subscription, recorded in the run's errors.

Coverage is per check family and per cluster, derived from which ARM reads succeeded (the
estate's ReadErrors), never from error text: a check whose input could not be read is not run,
and a check that did not run resolves nothing (its open findings are held). The NSG paths
("nsg") need the VNet, NSG and scale-set lists and the cluster's own references; SNAT ("snat")
needs its load balancer or NAT gateway and their metrics.

SNAT metrics are read for all clusters of a subscription at once, before any cluster is judged:
batched through the metrics data plane (metrics:getBatch, 50 resources a call) when ScanDeps
gives a batch client for the region, per resource through ARM otherwise or as the fallback. A
cluster whose metrics could not be read gets an inconclusive SNAT finding and PARTIAL coverage;
the other clusters are not affected, and fallbacks are recorded in the run's errors.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from shared.analysis.findings import Cause, Finding, Kind, Origin, Severity, Subject
from shared.analysis.nsg import ServiceTags
from shared.analysis.snat.remedies import capacity_findings
from shared.checks.paths import PathChecker
from shared.checks.snat import (
    SnatTarget,
    snat_capacity_of,
    snat_findings,
    snat_inputs,
    snat_target,
)
from shared.core.lifecycle import Coverage, Event, HistoryEvent, Observation
from shared.core.metrics import MetricsRead, MetricsTarget
from shared.core.records import RecordResult, RunStatus, ScanRun
from shared.errors import ArmError, InputError, StorageError
from shared.inventory.model import Cluster, Estate, Read
from shared.jobs.ports import (
    ArmCallCounts,
    FindingRecords,
    Inventory,
    ProbeSender,
    ServiceTagSource,
    SnatMetricsSource,
)
from shared.jobs.probe_cycle import record_refused
from shared.jobs.probe_plan import Refused, triage_request, triage_share
from shared.probe_requests import ProbeRequest

__all__ = ["ClusterOutcome", "ScanDeps", "ScanOptions", "ScanOutcome", "run_scan"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_SUSPECT = (Kind.PROBLEM, Kind.INCONCLUSIVE)  # what makes a cluster worth a node probe
NSG, SNAT = "nsg", "snat"  # the scan's check families: prefixes of their findings' check ids
POOLS = "pools"  # the node inventory (probes): no finding of its own, only coverage
# What the NSG path check reads: without one of these it is not run.
_NSG_INPUTS = frozenset(
    {
        Read.SCALE_SETS,  # NIC NSGs and ASGs come from the scale sets' network profiles
        Read.VNETS,
        Read.NSGS,
        Read.NICS,
        Read.POOL_SCALE_SET,
        Read.NETWORK_REFERENCE,
        Read.PRIVATE_ENDPOINT,
    }
)
_POOL_INPUTS = frozenset({Read.INSTANCES, Read.POOL_NICS})
Resolver = Callable[[str], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ScanOptions:
    subscriptions: tuple[str, ...]
    snat_threshold_percent: int = 80
    snat_window_minutes: int = 5
    snat_min_bad_points: int = 3
    check_legacy_tunnel_ports: bool = False
    probe_budget: int = 20
    service_tags_cache_hours: int = 24


@dataclass
class ScanDeps:
    """What a scan reads and writes, as ports (shared/jobs/ports.py); shared/compose.py builds
    the real ones once per process."""

    inventory: Inventory
    service_tags: ServiceTagSource
    snat_metrics: SnatMetricsSource
    arm_calls: ArmCallCounts
    resolver: Resolver
    clock: Callable[[], datetime]
    store: FindingRecords | None = None
    queue: ProbeSender | None = None
    progress: Callable[[str], None] | None = None
    # (subscription, location) -> (fetched at, tags); kept across scans of one process
    tag_cache: dict[tuple[str, str], tuple[datetime, ServiceTags | None]] = field(
        default_factory=dict
    )


@dataclass
class ClusterOutcome:
    cluster: Cluster
    coverage: Coverage
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)  # skips and partial-coverage reasons
    flows_evaluated: int = 0
    # check families that did not run (or not wholly) -> why; their open findings are held
    not_run: dict[str, str] = field(default_factory=dict)
    stopped: bool = False  # nothing to check: held, but not a gap in the scan

    def hold(self, family: str, reason: str) -> None:
        """`family` did not run for this cluster: say why, and resolve none of its findings."""
        self.not_run.setdefault(family, reason)
        self.notes.append(reason)
        if self.coverage is Coverage.COMPLETE:
            self.coverage = Coverage.PARTIAL

    @property
    def degraded(self) -> bool:
        """A gap in what this scan saw (a stopped cluster is not one)."""
        return self.coverage is not Coverage.COMPLETE and not self.stopped


@dataclass
class ScanOutcome:
    run: ScanRun
    clusters: list[ClusterOutcome]
    probe_requests: list[ProbeRequest]
    arm_calls: Counter[str]
    seconds: float
    storage_error: str = ""  # set when recording failed: the run is FAILED, findings are kept

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.clusters for f in c.findings]


def run_scan(options: ScanOptions, deps: ScanDeps) -> ScanOutcome:
    started = deps.clock()
    t0 = time.perf_counter()
    run_id = f"scan-{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    storage = _Storage(deps.store, run_id)
    storage.write(
        lambda s: s.save_run(ScanRun(run_id, started, subscriptions=options.subscriptions))
    )
    outcomes: list[ClusterOutcome] = []
    errors: list[str] = []
    calls: Counter[str] = Counter()
    for subscription in options.subscriptions:
        # The counts only grow (the clients live as long as the process): this run's are the
        # difference.
        before = Counter(deps.arm_calls(subscription).requests)
        try:
            estate = deps.inventory(subscription)
        except (ArmError, InputError) as exc:
            errors.append(f"subscription {subscription}: cluster list failed: {exc}")
            log.error("subscription %s: cluster list failed: %s", subscription, exc)
            estate = None
        if estate is not None:
            errors.extend(str(e) for e in estate.errors if not e.cluster_id)
            scanned, notes = _scan_estate(estate, options, deps)
            outcomes += scanned
            errors += notes
        calls.update(Counter(deps.arm_calls(subscription).requests) - before)
    finished = deps.clock()
    opened: dict[str, list[Finding]] | None = None
    if deps.store is not None:
        opened = {}
        for o in outcomes:
            recorded = storage.write(functools.partial(_record, o=o, run_id=run_id, now=finished))
            # Not recorded (storage failed): nothing to compare with, every suspect counts.
            opened[o.cluster.id] = (
                _opened(recorded.flips)
                if recorded
                else [f for f in o.findings if f.kind in _SUSPECT]
            )
    # After the write: only then are this scan's flips known. A queue failure here loses the
    # immediate probe only; the probe timer's next cycle triages every pool anyway.
    requests = _probe_requests(outcomes, options, run_id, finished, opened, storage)
    if deps.queue is not None and requests:
        try:
            deps.queue.send_all(requests)
        except StorageError as exc:
            log.error("scan %s: probe requests not queued: %s", run_id, exc)
            errors.append(f"probe requests not queued: {exc}")
    if storage.error is not None:
        errors.append(f"{storage.error} (nothing more was recorded by this run)")
    failed = tuple(o.cluster.id for o in outcomes if o.coverage is Coverage.FAILED)
    counts = Counter(f"{f.kind.value}:{f.cause or '-'}" for o in outcomes for f in o.findings)
    status = (
        RunStatus.FAILED
        if (errors and not outcomes) or storage.error is not None
        else RunStatus.PARTIAL
        if errors or any(o.degraded for o in outcomes)
        else RunStatus.COMPLETE
    )
    run = ScanRun(
        run_id=run_id,
        started=started,
        finished=finished,
        status=status,
        subscriptions=options.subscriptions,
        clusters_scanned=len(outcomes),
        clusters_failed=failed,
        arm_calls=sum(calls.values()),
        arm_calls_by_operation=dict(calls),
        finding_counts=dict(counts),
        errors=tuple(errors),
    )
    storage.write(lambda s: s.save_run(run))
    return ScanOutcome(
        run, outcomes, requests, calls, time.perf_counter() - t0,
        storage_error=str(storage.error) if storage.error is not None else "",
    )  # fmt: skip


def _record(
    store: FindingRecords, *, o: ClusterOutcome, run_id: str, now: datetime
) -> RecordResult:
    reason = "; ".join(o.notes) if o.coverage is not Coverage.COMPLETE else ""
    return store.record_cluster(
        Observation(
            o.cluster.id, o.coverage, tuple(o.findings),
            subscription=o.cluster.subscription, reason=reason,
            not_run=tuple(sorted(o.not_run)) if o.coverage is Coverage.PARTIAL else (),
        ),
        run_id=run_id,
        now=now,
    )  # fmt: skip


@dataclass
class _Storage:
    """The run's writes: after the first StorageError nothing more is written (the store has
    already retried what was safe), and the run ends FAILED with that error; the scan's
    findings are still returned, printed and turned into probe requests."""

    store: FindingRecords | None
    run_id: str
    error: StorageError | None = None

    def write(self, call: Callable[[FindingRecords], _T]) -> _T | None:
        if self.store is None or self.error is not None:
            return None
        try:
            return call(self.store)
        except StorageError as exc:
            log.error("scan %s: %s; nothing more is recorded by this run", self.run_id, exc)
            self.error = exc
            return None


def _opened(flips: Iterable[HistoryEvent]) -> list[Finding]:
    """The suspect findings a write opened (new, or back after a resolution)."""
    return [
        e.finding
        for e in flips
        if e.event in (Event.NEW, Event.REOPENED)
        and e.finding is not None
        and e.finding.kind in _SUSPECT
    ]


def _scan_estate(
    estate: Estate, options: ScanOptions, deps: ScanDeps
) -> tuple[list[ClusterOutcome], list[str]]:
    """Every cluster's outcome, and the subscription-level notes (metrics fallbacks)."""
    live = [c for c in estate.clusters if c.power_state.lower() != "stopped"]
    targets = {c.id: snat_target(estate, c) for c in live}
    now = deps.clock()
    snat = _read_snat(estate.subscription, live, targets, options, deps, now)
    checkers: dict[str, PathChecker] = {}
    out = []
    for n, cluster in enumerate(estate.clusters, 1):
        if deps.progress:
            deps.progress(f"[{n}/{len(estate.clusters)}] {cluster.name}")
        location = cluster.location.lower()
        if location not in checkers:
            tags = _service_tags(estate.subscription, location, options, deps)
            checkers[location] = PathChecker(
                estate, service_tags=tags, check_legacy_ports=options.check_legacy_tunnel_ports
            )
        target = targets.get(cluster.id, "cluster is stopped")
        checker = checkers[location]
        out.append(_scan_cluster(estate, cluster, checker, target, snat, options, deps, now))
    return out, list(snat.notes)


def _read_snat(
    subscription: str,
    clusters: list[Cluster],
    targets: dict[str, SnatTarget | str],
    options: ScanOptions,
    deps: ScanDeps,
    now: datetime,
) -> MetricsRead:
    """SNAT metrics of every cluster's target, read before any cluster is judged."""
    wanted = [
        # The outbound LB / NAT gateway is in the cluster's region (a NAT gateway serves
        # subnets of its own region only), so the cluster's location groups the batch.
        MetricsTarget(t.resource_id, c.location, t.nat_gateway)
        for c in clusters
        if isinstance(t := targets[c.id], SnatTarget)
    ]
    if not wanted:
        return MetricsRead()
    if deps.progress:
        deps.progress(f"SNAT metrics of {len(wanted)} resource(s)")
    read = deps.snat_metrics(
        subscription, wanted, now=now, window_minutes=options.snat_window_minutes
    )
    log.info(
        "subscription %s: SNAT metrics of %d resource(s), %d unreadable, %d fallback(s)",
        subscription, len(wanted), len(read.errors), len(read.notes),
    )  # fmt: skip
    return read


def _scan_cluster(
    estate: Estate,
    cluster: Cluster,
    checker: PathChecker,
    target: SnatTarget | str,
    snat: MetricsRead,
    options: ScanOptions,
    deps: ScanDeps,
    now: datetime,
) -> ClusterOutcome:
    own = [e for e in estate.errors if e.cluster_id and e.concerns(cluster.id)]
    outcome = ClusterOutcome(cluster, Coverage.COMPLETE, [], [str(e) for e in own])
    if cluster.power_state.lower() == "stopped":
        outcome.stopped = True
        outcome.hold(NSG, "cluster is stopped: nothing to check (open findings are kept)")
        outcome.hold(SNAT, "cluster is stopped: SNAT not checked")
        return outcome
    missing = estate.missing(cluster.id)
    if missing & _POOL_INPUTS:
        outcome.hold(POOLS, "node inventory incomplete: " + _reads(missing & _POOL_INPUTS))
    try:
        _nsg_paths(estate, cluster, checker, missing, deps, outcome)
        snat_missing = missing & snat_inputs(cluster)
        if snat_missing:
            outcome.hold(SNAT, f"SNAT not checked: {_reads(snat_missing)} could not be read")
        elif isinstance(target, str):
            if snat_inputs(cluster):  # it should exist: not found is not "nothing to check"
                outcome.hold(SNAT, f"SNAT not checked: {target}")
            else:
                outcome.notes.append(f"SNAT not checked: {target}")
        else:
            outcome.findings += _snat(cluster, target, snat, options, now, outcome)
    except (ArmError, InputError) as exc:
        log.error("cluster %s: scan failed: %s", cluster.id, exc)
        outcome.coverage = Coverage.FAILED
        outcome.notes.append(f"scan failed: {exc}")
    return outcome


def _nsg_paths(
    estate: Estate,
    cluster: Cluster,
    checker: PathChecker,
    missing: frozenset[Read],
    deps: ScanDeps,
    outcome: ClusterOutcome,
) -> None:
    """Cause 1 and egress (cause 4): run only on complete inputs; held where part is unknown."""
    needed = _NSG_INPUTS | ({Read.LOAD_BALANCERS} if cluster.vnet_integration else set())
    if missing & needed:
        outcome.hold(NSG, f"NSG paths not checked: {_reads(missing & needed)} could not be read")
        return
    api_ips = _api_server_ips(estate, cluster, deps.resolver)
    paths = checker.check(cluster, api_ips)
    outcome.findings += paths.findings
    outcome.flows_evaluated = paths.flows_evaluated
    if checker.service_tags is None:
        # rules naming a service tag are undecided this time: what they decided stays open
        outcome.hold(NSG, "service tags unavailable: NSG findings are held, not resolved")
    if not api_ips and any(p.os_type.lower() == "linux" for p in cluster.pools):
        outcome.hold(NSG, "API server address unknown: egress findings are held, not resolved")


def _reads(reads: frozenset[Read]) -> str:
    return ", ".join(sorted(r.value for r in reads))


def _snat(
    cluster: Cluster,
    target: SnatTarget,
    snat: MetricsRead,
    options: ScanOptions,
    now: datetime,
    outcome: ClusterOutcome,
) -> list[Finding]:
    metrics = snat.body(target.resource_id)
    if metrics is None:
        reason = snat.error(target.resource_id)
        log.warning("cluster %s: SNAT not judged: %s", cluster.id, reason)
        outcome.notes.append(f"SNAT not judged: {reason}")
        outcome.not_run.setdefault(SNAT, f"SNAT not judged: {reason}")
        if outcome.coverage is Coverage.COMPLETE:
            outcome.coverage = Coverage.PARTIAL  # open SNAT findings are held, not resolved
        return _snat_unread(cluster, target, reason)
    return snat_findings(
        cluster,
        target,
        metrics,
        threshold=options.snat_threshold_percent,
        window=options.snat_window_minutes,
        min_bad=options.snat_min_bad_points,
        now=now,
    )


def _snat_unread(cluster: Cluster, target: SnatTarget, reason: str) -> list[Finding]:
    """Metrics unreadable: SNAT usage is undecided (same finding as "could not be judged"),
    while the capacity, which needs no metrics, is still checked."""
    subject = Subject(
        subscription=cluster.subscription, cluster=cluster.id, resource=target.resource_id
    )
    what = "NAT gateway" if target.nat_gateway else "outbound load balancer"
    out = [
        Finding(
            "snat.nat_gateway" if target.nat_gateway else "snat.load_balancer",
            Cause.SNAT,
            Kind.INCONCLUSIVE,
            Severity.WARNING,
            subject,
            f"SNAT usage of the {what} could not be judged",
            (f"Azure Monitor metrics of {target.resource_id}: {reason}",),
            key="undecided",
            origin=Origin.TUNNELWATCH if target.nat_gateway else Origin.ARTICLE,
        )
    ]
    capacity = snat_capacity_of(cluster, target.load_balancer) if target.load_balancer else None
    if capacity is not None:
        out += capacity_findings(
            capacity, subject, resource_group=cluster.resource_group, cluster=cluster.name
        )
    return out


def _api_server_ips(estate: Estate, cluster: Cluster, resolver: Resolver) -> tuple[str, ...]:
    """Where the nodes' tunnel goes: the internal load balancer with VNet integration, the
    private FQDN of a private cluster, the public FQDN otherwise (resolved by `resolver`)."""
    if cluster.vnet_integration:
        node_rg = cluster.node_resource_group.lower()
        for lb in estate.load_balancers:
            internal = lb.name.lower() == "kube-apiserver" and lb.private_frontend_ips
            if lb.resource_group.lower() == node_rg and internal:
                return lb.private_frontend_ips
    if cluster.private_cluster and cluster.api_server_private_ips:
        return cluster.api_server_private_ips  # the private endpoint, read from ARM
    name = cluster.private_fqdn if cluster.private_cluster else cluster.fqdn
    if not name:
        return ()
    try:
        return resolver(name)
    except OSError as exc:
        log.info("cluster %s: cannot resolve %s: %s", cluster.id, name, exc)
        return ()


def _service_tags(
    subscription: str, location: str, options: ScanOptions, deps: ScanDeps
) -> ServiceTags | None:
    key = (subscription, location)
    now = deps.clock()
    cached = deps.tag_cache.get(key)
    if cached and now - cached[0] < timedelta(hours=options.service_tags_cache_hours):
        return cached[1]
    try:
        tags = deps.service_tags(subscription, location)
    except (ArmError, InputError) as exc:
        # Without tags, rules naming them are undecided (never guessed): findings say so, and
        # the NSG findings are held. Not cached: the next scan asks again.
        log.warning("service tags for %s unavailable: %s", location, exc)
        return None
    deps.tag_cache[key] = (now, tags)
    return tags


def _probe_requests(
    outcomes: Iterable[ClusterOutcome],
    options: ScanOptions,
    run_id: str,
    now: datetime,
    opened: Mapping[str, list[Finding]] | None,
    storage: _Storage | None = None,
) -> list[ProbeRequest]:
    """A triage probe per Linux scale-set pool of each cluster where this scan OPENED a
    suspect finding (new, or reopened), on one running node of the pool, within the probe
    budget. A finding that stays open asks for nothing more: the scan runs every few minutes
    and each run command is root on a node and blocks the owners' own run commands, so
    persisting problems wait for the probe timer's cycle. Without storage (`opened` None:
    nothing to compare against) every suspect finding counts. Clusters or pools tagged
    tunnelwatch-probe=off are never probed. A pool whose request a name makes impossible gets
    a COVERAGE finding (stored in its triage scope, and shown with the cluster's findings);
    the other pools and clusters are requested as usual."""
    requests: list[ProbeRequest] = []
    refused: list[Refused] = []
    for o in outcomes:
        if opened is None:
            suspect = [f for f in o.findings if f.kind in _SUSPECT]
        else:
            suspect = opened.get(o.cluster.id, [])
        if not suspect or o.cluster.probe_opt_out:
            continue
        reason = f"scan opened {len(suspect)} finding(s): {suspect[0].title}"
        for pool in o.cluster.pools:
            if len(requests) >= triage_share(options.probe_budget):
                break
            if pool.probe_opt_out or pool.os_type.lower() != "linux" or not pool.vmss_name:
                continue
            running = [i for i in pool.instances if i.power_state.value == "running"]
            if not running:
                continue
            request = triage_request(
                o.cluster, pool, running[0], run_id=run_id, reason=reason, now=now
            )
            if isinstance(request, Refused):
                refused.append(request)
                o.findings.append(request.finding)
                o.notes.append(request.why)
            else:
                requests.append(request)
    if storage is not None and refused:
        storage.write(lambda s: record_refused(s, refused, run_id=run_id, now=now))
    return requests
