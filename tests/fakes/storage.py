"""In-memory fakes of the storage ports: the finding store, the probe queue, the probe ledger.

They keep what the real adapters keep (shared/adapters/tables, queues.py, probe_ledger.py) in
dicts and lists, and decide what the real ones decide with the same code: the finding store
runs the core's lifecycle (shared.core.lifecycle.transition) and incidents
(shared.core.incidents.track) exactly as FindingStore does, and keeps findings and history as
the tables give them back (rendered and read by the adapter's pure entity code: masked, cut to
the entity limits), runs likewise; the ledger keeps its detail masked and cut likewise. The contract
suites in tests/contracts/ run the same assertions against each fake and its real adapter on
Azurite, so a job test on a fake says something about production.

Each fake can be made to fail (`fail_with`): the next calls raise that StorageError, as the
real adapter does when storage is down after its retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from shared.adapters.tables.entities import (
    history_from_entity,
    history_properties,
    run_from_entity,
    run_properties,
    stored_from_entity,
    stored_properties,
)
from shared.adapters.tables.limits import fit_text
from shared.core.incidents import INCIDENT_WINDOW, Incident, track
from shared.core.lifecycle import (
    DEFAULT_DAMPING,
    ClusterScan,
    Damping,
    FindingState,
    HistoryEvent,
    StoredFinding,
    transition,
)
from shared.core.probe_claims import LedgerEntry, is_duplicate
from shared.core.records import RecordResult, ScanRun
from shared.errors import InputError, StorageError
from shared.jobs.ports import FindingRecords, ProbeClaims, ProbeSender
from shared.probe_requests import ProbeRequest
from shared.redaction import redact

__all__ = ["FakeFindingStore", "FakeProbeLedger", "FakeProbeQueue", "subscription_of"]

MAX_DELAY_SECONDS = 7 * 24 * 3600  # as the queue service (shared.adapters.queues)


def subscription_of(resource_id: str) -> str:
    """The (lower-case) subscription of an ARM id, '' when it is not one."""
    parts = resource_id.strip().split("/")
    if len(parts) > 2 and parts[0] == "" and parts[1].lower() == "subscriptions":
        return parts[2].lower()
    return ""


class _Failing:
    fail_with: StorageError | None = None

    def _check(self, operation: str) -> None:
        if self.fail_with is not None:
            raise StorageError(operation, self.fail_with.message)


def _row(stored: StoredFinding) -> StoredFinding:
    """A finding as the findings table gives it back: rendered and read by the same pure code
    (shared.adapters.tables.entities), so text is masked and cut to the entity limits
    (`truncated`) exactly as in the table."""
    return stored_from_entity("fake", stored_properties("fake", stored.fingerprint, stored))


def _event(event: HistoryEvent) -> HistoryEvent:
    """A history event as the history table gives it back (the same rendering)."""
    return history_from_entity("fake", history_properties("fake", "fake", event))


class FakeFindingStore(_Failing):
    """FindingRecords in memory, plus the reads the real store offers (open findings, history,
    incidents, runs). Clusters are keyed case-insensitively, as the table keys are."""

    def __init__(
        self,
        *,
        damping: Damping = DEFAULT_DAMPING,
        incident_window: timedelta = INCIDENT_WINDOW,
    ) -> None:
        self.damping = damping
        self.incident_window = incident_window
        self.findings: dict[str, dict[str, StoredFinding]] = {}
        self.events: dict[str, list[HistoryEvent]] = {}
        self.incidents: dict[str, dict[str, Incident]] = {}
        self.runs: dict[str, ScanRun] = {}
        self.writes = 0  # record_cluster calls that wrote

    def ensure_tables(self) -> None:
        self._check("create tables")

    def record_cluster(self, scan: ClusterScan, *, run_id: str, now: datetime) -> RecordResult:
        self._check(f"record cluster {scan.cluster_id}")
        key = scan.cluster_id.strip().lower()
        existing = dict(self.findings.get(key, {}))
        subscription = (scan.subscription or subscription_of(scan.cluster_id)).lower()
        change = transition(
            scan, existing, subscription=subscription, run_id=run_id, now=now,
            damping=self.damping,
        )  # fmt: skip
        notes = (change.note,) if change.note is not None else ()
        self.events.setdefault(key, []).extend(_event(e) for e in (*change.flips, *notes))
        after = {**existing, **{s.fingerprint: s for s in change.stored}}
        open_now = {fp: s for fp, s in after.items() if s.state is FindingState.OPEN}
        since = now - self.incident_window
        recent = [
            i
            for i in self.incidents.get(key, {}).values()
            if i.resolved_at is None or i.resolved_at >= since
        ]
        incidents = track(scan.cluster_id, recent, open_now, now=now, window=self.incident_window)
        self.incidents.setdefault(key, {}).update((i.incident_id, i) for i in incidents)
        self.findings[key] = {fp: _row(s) for fp, s in after.items()}
        self.writes += 1
        open_count = sum(1 for s in change.stored if s.state is FindingState.OPEN)
        return RecordResult(
            cluster_id=scan.cluster_id,
            run_id=run_id,
            coverage=scan.coverage,
            flips=change.flips,
            open_count=open_count + len(change.held),
            held=change.held,
            duplicates=change.duplicates,
            stored=change.stored,
            incidents=incidents,
        )

    def save_run(self, run: ScanRun) -> None:
        self._check(f"save run {run.run_id}")
        self.runs[run.run_id] = run_from_entity("fake", run_properties("fake", "fake", run))

    def current_findings(
        self, cluster_id: str, *, state: FindingState | None = None
    ) -> list[StoredFinding]:
        self._check(f"read findings of {cluster_id}")
        rows = self.findings.get(cluster_id.strip().lower(), {})
        return [rows[fp] for fp in sorted(rows) if state is None or rows[fp].state is state]

    def open_findings(
        self, *, subscription: str | None = None, cluster_id: str | None = None
    ) -> list[StoredFinding]:
        self._check("read open findings")
        if subscription is None and cluster_id is not None:
            raise ValueError("open_findings: a cluster needs its subscription")
        found = [
            s
            for rows in self.findings.values()
            for s in rows.values()
            if s.state is FindingState.OPEN
            and (subscription is None or s.subscription == subscription.strip().lower())
            and (cluster_id is None or s.cluster_id.lower() == cluster_id.strip().lower())
        ]
        return sorted(found, key=lambda s: (s.subscription, s.cluster_id.lower(), s.fingerprint))

    def history(self, cluster_id: str, start: datetime, end: datetime) -> list[HistoryEvent]:
        self._check(f"read history of {cluster_id}")
        if end < start:
            raise ValueError(f"history window ends ({end}) before it starts ({start})")
        events = self.events.get(cluster_id.strip().lower(), [])
        return sorted(
            (e for e in events if start <= e.at < end), key=lambda e: (e.at, e.fingerprint)
        )

    def incidents_open_at(self, cluster_id: str, moment: datetime) -> list[Incident]:
        self._check(f"read incidents of {cluster_id}")
        found = self.incidents.get(cluster_id.strip().lower(), {}).values()
        return sorted((i for i in found if i.open_at(moment)), key=lambda i: i.incident_id)

    def runs_between(self, start: datetime, end: datetime) -> list[ScanRun]:
        self._check("read scan runs")
        return sorted(
            (r for r in self.runs.values() if start <= r.started < end),
            key=lambda r: (r.started, r.run_id),
        )


@dataclass
class _Message:
    request: ProbeRequest
    visible_at: datetime


@dataclass
class FakeProbeQueue(_Failing):
    """ProbeSender in memory: what was sent, visible once its delay has passed on `clock`.

    `take()` hands messages over as the Functions host would (their JSON text, removed)."""

    name: str = "probe-requests"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    messages: list[_Message] = field(default_factory=list)

    def ensure(self) -> None:
        self._check(f"create queue {self.name}")

    def sibling(self, name: str) -> FakeProbeQueue:
        return FakeProbeQueue(name, self.clock)

    def send(self, request: ProbeRequest, *, delay_seconds: int = 0) -> None:
        request.to_json()  # validates, as the real queue does before sending
        self._check(f"queue to {self.name}")
        delay = max(0, min(delay_seconds, MAX_DELAY_SECONDS))
        self.messages.append(_Message(request, self.clock() + timedelta(seconds=delay)))

    def send_all(self, requests: Iterable[ProbeRequest]) -> int:
        count = 0
        for request in requests:
            self.send(request)
            count += 1
        return count

    def _visible(self) -> list[_Message]:
        now = self.clock()
        return [m for m in self.messages if m.visible_at <= now]

    def peek(self, max_messages: int = 32) -> Iterator[ProbeRequest | InputError]:
        for message in self._visible()[:max_messages]:
            yield message.request

    def take(self, max_messages: int = 32) -> list[str]:
        taken = self._visible()[:max_messages]
        for message in taken:
            self.messages.remove(message)
        return [m.request.to_json() for m in taken]

    def delayed(self) -> list[tuple[ProbeRequest, datetime]]:
        """Messages not visible yet, with the time they become visible."""
        now = self.clock()
        return [(m.request, m.visible_at) for m in self.messages if m.visible_at > now]


class FakeProbeLedger(_Failing):
    """ProbeClaims in memory: the rows and budget counters, each change atomic under a lock
    (what the real ledger's ETag conditions give across workers)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], LedgerEntry] = {}
        self.budgets: dict[str, int] = {}
        self._lock = threading.Lock()

    def ensure(self) -> None:
        self._check("create ledger")

    def get(self, scan_id: str, request_id: str) -> LedgerEntry | None:
        self._check(f"read ledger row {request_id}")
        return self.rows.get((scan_id, request_id))

    def put(self, entry: LedgerEntry) -> None:
        self._check(f"write ledger row {entry.request_id}")
        with self._lock:
            self.rows[(entry.scan_id, entry.request_id)] = _kept(entry)

    def claim(self, entry: LedgerEntry, *, lease: timedelta) -> tuple[bool, LedgerEntry]:
        self._check(f"claim ledger row {entry.request_id}")
        key = (entry.scan_id, entry.request_id)
        with self._lock:
            seen = self.rows.get(key)
            if seen is None:
                self.rows[key] = _kept(entry)
                return True, entry
            if is_duplicate(seen, entry, lease):
                return False, seen
            mine = replace(entry, run_commands=entry.run_commands + seen.run_commands)
            self.rows[key] = _kept(mine)
            return True, mine

    def spend(self, scan_id: str, count: int, budget: int) -> bool:
        self._check(f"spend budget of {scan_id}")
        with self._lock:
            spent = self.budgets.get(scan_id, 0)
            if spent + count > budget:
                return False
            self.budgets[scan_id] = spent + count
            return True

    def spent(self, scan_id: str) -> int:
        return self.budgets.get(scan_id, 0)

    def entries(self, scan_id: str) -> Iterator[LedgerEntry]:
        for key in sorted(self.rows):
            if key[0] == scan_id:
                yield self.rows[key]


def _kept(entry: LedgerEntry) -> LedgerEntry:
    """The row as stored: the detail masked and cut to fit, as the real ledger writes it
    (run-command errors quote ARM text)."""
    return replace(entry, detail=fit_text(redact(entry.detail), 8_000)[0])


if TYPE_CHECKING:  # the fakes have the ports' shapes (mypy tests/fakes)
    _records: FindingRecords = FakeFindingStore()
    _sender: ProbeSender = FakeProbeQueue()
    _claims: ProbeClaims = FakeProbeLedger()
