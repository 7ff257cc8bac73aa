"""Fault runs: a clean scan (or probe), the same with one fault, a clean one again; then count.

One ARM simulator (the demo estate, scripted nodes for run command) and one Azurite serve every
run; each run gets tables and queues of its own through a unique prefix. Scans go through the
production wiring (`scan_deps` -> `run_scan`), probes through `probe_deps` ->
`handle_probe_message`, the CLI as a subprocess. The only test-specific settings are shorter
retry delays and timeouts (same policies, smaller numbers) so that a run takes seconds.
"""

from __future__ import annotations

import itertools
import queue as queue_
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.data.tables import TableServiceClient
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    LinearRetry,
    QueueClient,
    TextBase64EncodePolicy,
)

from shared.adapters.clients import RetrySettings
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import FindingStore, Observation, RecordResult, RunStatus, ScanRun
from shared.compose import scan_deps, static_resolver
from shared.jobs.scan import ScanDeps, ScanOptions, ScanOutcome, run_scan
from tests.armsim import ArmSimulator, Faults
from tests.faults.snapshot import Snapshot, compare, snapshot
from tests.faults.tally import TALLY, Counts, Row

__all__ = [
    "FAST_RETRY",
    "HANG_SECONDS",
    "READ_TIMEOUT",
    "SUB",
    "T0",
    "Faulted",
    "HookedStore",
    "ScanRig",
    "TriggerFaults",
    "run_parallel",
]

K = TypeVar("K")
SUB = "11111111-1111-1111-1111-111111111111"
# A day ago: before the wall clock, which the CLI (no clock option) writes with.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0)
STEP = timedelta(minutes=5)
# Production: 6 retries, 0.8 s exponential backoff, 60 s read timeout. Same policy, shorter.
FAST_RETRY = RetrySettings(
    total=2, status=2, backoff_factor=0.05, backoff_max=1, max_retry_after=60, timeout=60
)
READ_TIMEOUT = 0.5  # seconds per response
HANG_SECONDS = 1.0  # a "timeout" fault: the simulator answers this late (> READ_TIMEOUT)
API_SERVER_IP = "20.61.14.2"  # every API server name resolves here (one address is enough)
# The storage SDKs' own retry policies with shorter waits (production: tables 0.8 s
# exponential; queues 15 s, then 18 s, then 24 s).
STORAGE_RETRY: dict[str, Any] = {"retry_backoff_factor": 0.05}
_SUFFIXES = ("runs", "findings", "history", "open", "incidents")  # TableNames.all() order


class HookedStore(FindingStore):
    """The real store, with a hook called before each cluster write (0, 1, 2, ...) and before
    each run-row write: where a test stops storage in the middle of a scan."""

    def __init__(
        self, service: TableServiceClient, *, prefix: str, before_write: Callable[[int], None]
    ) -> None:
        super().__init__(service, prefix=prefix)
        self._before = before_write
        self.writes = 0

    def record_cluster(self, scan: Observation, *, run_id: str, now: datetime) -> RecordResult:
        n, self.writes = self.writes, self.writes + 1
        self._before(n)
        return super().record_cluster(scan, run_id=run_id, now=now)

    def save_run(self, run: ScanRun) -> None:
        self._before(-1)
        super().save_run(run)


@dataclass
class TriggerFaults(Faults):
    """Faults that also call `action` once, the first time `operation` reaches the simulator
    (before it answers): a storage outage timed by the scan's own progress."""

    operation: str = ""
    action: Callable[[], None] | None = None
    _fired: bool = field(default=False, repr=False)

    def check(self, operation: str, path: str) -> Any:
        if operation == self.operation and self.action is not None:
            with self._lock:
                fire, self._fired = not self._fired, True
            if fire:
                self.action()
        return super().check(operation, path)


@dataclass(frozen=True, slots=True)
class Faulted:
    """How the faulted run went: when it wrote, how it ended, what crashed (empty: nothing)."""

    at: datetime
    outcome: str
    crash: str = ""


@dataclass
class Phase:
    at: datetime
    outcome: ScanOutcome | None = None
    error: BaseException | None = None


class ScanRig:
    """Scans of the demo estate through the production wiring, each run on fresh tables.

    The baseline of every run is the state one clean scan left (copied row by row into the
    run's tables: the same rows a clean scan would write, at a fraction of the time). The
    ARM clients are built once, as in a warm Functions host; the service-tag cache is not
    kept between scans, so each scan reads the tags again.
    """

    _ids = itertools.count(1)

    def __init__(self, sim: ArmSimulator, connection_string: str) -> None:
        self.sim = sim
        self.conn = connection_string
        self.service = TableServiceClient.from_connection_string(connection_string, **STORAGE_RETRY)
        self._deps: ScanDeps | None = None
        self._golden: dict[str, list[dict[str, Any]]] | None = None
        self.api_server_names: list[str] = []  # of the demo estate, for the CLI's --resolve

    def _base_deps(self) -> ScanDeps:
        if self._deps is None:
            self._deps = scan_deps(
                self.sim.credential(), arm_endpoint=self.sim.endpoint,
                ca_bundle=self.sim.ca_path,
                resolver=static_resolver({}, lambda name: (API_SERVER_IP,)), store=None,
                queue=None, metrics_endpoint=self.sim.endpoint, retry=FAST_RETRY,
                read_timeout=READ_TIMEOUT,
            )  # fmt: skip
        return self._deps

    def fresh(self, prefix: str | None = None) -> tuple[FindingStore, ProbeQueue]:
        reused = prefix is not None
        prefix = prefix or f"fi{next(self._ids)}t{int(time.time() * 1000) % 10**9}"
        store = FindingStore(self.service, prefix=prefix)
        if reused:
            for name in store.names.all():
                self.service.delete_table(name)  # no error when it does not exist
        store.ensure_tables()
        client = QueueClient.from_connection_string(
            self.conn, f"{prefix.lower()}-probes", message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy(),
            retry_policy=LinearRetry(backoff=0.05, random_jitter_range=0),
        )  # fmt: skip
        queue = ProbeQueue(client)
        queue.ensure()
        return store, queue

    def seed_baseline(self, store: FindingStore) -> None:
        """Copy what one clean scan stored (scanned once per rig) into `store`'s tables."""
        if self._golden is None:
            for _ in range(3):  # a busy machine may time a read out: the baseline must be whole
                gold, queue = self.fresh()
                phase = self.scan(gold, queue, T0)
                if phase.outcome is not None and phase.outcome.run.status is RunStatus.COMPLETE:
                    break
            if phase.error is not None or phase.outcome is None:  # the rig itself is broken
                raise RuntimeError(f"clean baseline scan failed: {phase.error!r}")
            if phase.outcome.run.status is not RunStatus.COMPLETE:
                raise RuntimeError(f"clean baseline scan incomplete: {phase.outcome.run.errors}")
            self.api_server_names = sorted(
                {
                    n
                    for o in phase.outcome.clusters
                    for n in (o.cluster.fqdn, o.cluster.private_fqdn)
                    if n
                }
            )
            self._golden = {
                suffix: [dict(e) for e in self.service.get_table_client(name).list_entities()]
                for suffix, name in zip(_SUFFIXES, gold.names.all(), strict=True)
            }
        for suffix, name in zip(_SUFFIXES, store.names.all(), strict=True):
            table = self.service.get_table_client(name)
            rows = self._golden[suffix]
            for pk in {r["PartitionKey"] for r in rows}:
                part = [r for r in rows if r["PartitionKey"] == pk]
                for i in range(0, len(part), 100):
                    table.submit_transaction([("upsert", r) for r in part[i : i + 100]])

    def scan(
        self, store: FindingStore, queue: ProbeQueue, at: datetime, faults: Faults | None = None
    ) -> Phase:
        phase = Phase(at)
        deps = replace(self._base_deps(), store=store, queue=queue, clock=lambda: at, tag_cache={})
        with self.sim.faulted(faults):
            try:
                phase.outcome = run_scan(ScanOptions(subscriptions=(SUB,)), deps)
            except Exception as exc:
                phase.error = exc
        return phase

    def snapshot(self, store: FindingStore) -> Snapshot:
        return snapshot(self.service, store.names)

    def run(
        self,
        group: str,
        name: str,
        faults: Faults | None = None,
        *,
        store_hook: Callable[[int], None] | None = None,
        after_fault: Callable[[], None] | None = None,
        faulted: Callable[[FindingStore, ProbeQueue], Faulted] | None = None,
        prefix: str | None = None,
    ) -> Counts:
        """baseline (one clean scan's rows) -> faulted scan -> clean scan; the counts, also
        in TALLY. `faulted` replaces the in-process faulted scan (the CLI); `prefix` names
        the tables (the CLI's are the default ones), dropped and made again first."""
        started = time.perf_counter()
        store, queue = self.fresh(prefix)
        self.seed_baseline(store)
        before = self.snapshot(store)
        if not before.open:
            raise RuntimeError("the baseline stored no open finding: nothing to compare")

        counts = Counts()
        try:
            if faulted is not None:
                result = faulted(store, queue)
            else:
                faulted_store = store
                if store_hook is not None:
                    faulted_store = HookedStore(
                        self.service, prefix=store.names.prefix, before_write=store_hook
                    )
                result = self._in_process(self.scan(faulted_store, queue, T0 + STEP, faults))
        finally:
            if after_fault is not None:
                after_fault()
        counts.outcome = result.outcome
        if result.crash:
            counts.crashes += 1
            counts.symptoms.append(f"crash: {result.crash}"[:300])
        during = self.snapshot(store)

        final_at = max(result.at, T0 + STEP) + STEP
        final = self.scan(store, queue, final_at)
        if final.error is not None:
            counts.crashes += 1
            counts.symptoms.append(f"the clean scan after the fault raised {final.error!r}"[:300])
        after = self.snapshot(store)
        compare(before, during, after, fault_at=result.at, final_at=final_at, counts=counts)
        TALLY.add(Row(group, name, counts, time.perf_counter() - started))
        return counts

    @staticmethod
    def _in_process(phase: Phase) -> Faulted:
        if phase.error is not None:
            err = phase.error
            return Faulted(phase.at, f"raised {type(err).__name__}", f"{type(err).__name__}: {err}")
        run = phase.outcome.run if phase.outcome is not None else None
        outcome = f"run {run.status.value}, {len(run.errors)} error(s)" if run else "no outcome"
        return Faulted(phase.at, outcome)


def run_parallel(
    jobs: Mapping[K, Callable[[ScanRig], Counts]], rigs: Sequence[ScanRig]
) -> dict[K, Counts]:
    """Run independent fault runs on several rigs at once (each rig, with its own simulator,
    runs one job at a time): the runs mostly wait on I/O, so the suite stays short."""
    free: queue_.Queue[ScanRig] = queue_.Queue()
    for rig in rigs:
        free.put(rig)

    def one(job: Callable[[ScanRig], Counts]) -> Counts:
        rig = free.get()
        try:
            return job(rig)
        finally:
            free.put(rig)

    with ThreadPoolExecutor(max_workers=len(rigs)) as pool:
        futures = {key: pool.submit(one, job) for key, job in jobs.items()}
        return {key: f.result() for key, f in futures.items()}
