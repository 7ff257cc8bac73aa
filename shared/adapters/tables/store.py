"""FindingStore: scan runs, current findings and their history in Azure Table storage.

The `TableServiceClient` is handed in (built from a connection string or an endpoint and a
credential elsewhere); this module only reads and writes. The schema and the queries are in
keys.py and docs/storage.md; what a scan changes is decided by the core
(shared.core.lifecycle) and rendered as rows in plan.py.

Write order for one cluster: history rows first, then the open index, then the incidents
(computed by the core from the open findings after the write), then the findings table.
The findings table is what the next scan compares against, so if a write is cut short the
next scan sees the old state and repeats the flip (a duplicate history row at worst) instead
of losing it; the incidents are computed again from the same state. One writer per cluster
at a time is assumed (the scan timer runs as a singleton); concurrent writers would need ETag
conditions.

Failures: every public method retries what is safe to repeat (all writes are upserts with
keys fixed by the content, and record_cluster re-plans from the stored state, which it writes
last), on connection errors and 408/429/5xx answers: azure-core does not retry a `$batch`
POST itself. What still fails raises StorageError (the project's own, never an SDK type),
whose message carries the status and code, not the account or its key.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.arm_inventory import describe_error
from shared.adapters.tables.entities import (
    history_from_entity,
    incident_from_entity,
    incident_properties,
    run_from_entity,
    run_properties,
    stored_from_entity,
)
from shared.adapters.tables.keys import (
    OPEN_PARTITION,
    TableNames,
    TableQuery,
    cluster_query,
    history_query,
    incidents_open_at_query,
    incidents_recent_query,
    month_key,
    open_query,
    run_row_key,
    runs_query,
)
from shared.adapters.tables.limits import transactions
from shared.adapters.tables.model import (
    FindingState,
    HistoryEvent,
    Observation,
    RecordResult,
    ScanRun,
    StoredFinding,
)
from shared.adapters.tables.plan import plan_cluster_write
from shared.core.incidents import INCIDENT_WINDOW, Incident, track
from shared.core.lifecycle import DEFAULT_DAMPING, Damping
from shared.errors import StorageError

__all__ = ["PAGE_SIZE", "FindingStore"]

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # the service's maximum page; continuation tokens bring the rest
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


def transient(exc: AzureError) -> bool:
    """A failure that may pass on a second try: no connection, no answer, busy or 5xx."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in _TRANSIENT_STATUS


def retrying(
    operation: str,
    call: Callable[[], T],
    *,
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, again after transient failures (it must be safe to repeat); StorageError
    when it still fails or fails otherwise."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except AzureError as exc:
            if attempt < attempts and transient(exc):
                log.warning(
                    "storage: %s failed (attempt %d of %d), trying again: %s",
                    operation, attempt, attempts, describe_error(exc),
                )  # fmt: skip
                sleep(backoff * 2 ** (attempt - 1))
                continue
            raise StorageError(operation, describe_error(exc)) from None
    raise AssertionError("unreachable")  # the loop returns or raises


class FindingStore:
    """Keeps scan runs, the current state of every finding, and each cluster's history."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = "tunnelwatch",
        page_size: int = PAGE_SIZE,
        attempts: int = 2,  # azure-core already retries each request but a $batch inside
        backoff: float = 1.0,
        damping: Damping = DEFAULT_DAMPING,  # OPEN_AFTER / RESOLVE_AFTER (shared.config)
        incident_window: timedelta = INCIDENT_WINDOW,  # a reopen within it continues one
    ) -> None:
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be 1-{PAGE_SIZE}, got {page_size}")
        if attempts < 1 or backoff < 0:
            raise ValueError("attempts must be 1 or more and backoff not negative")
        self.names = TableNames(prefix)
        self._service = service
        self._page_size = page_size
        self._clients: dict[str, TableClient] = {}
        self._attempts = attempts
        self._backoff = backoff
        self.damping = damping
        self.incident_window = incident_window

    def _retrying(self, operation: str, call: Callable[[], T]) -> T:
        return retrying(operation, call, attempts=self._attempts, backoff=self._backoff)

    def ensure_tables(self) -> None:
        """Create the five tables if they do not exist (idempotent)."""
        for name in self.names.all():
            create = functools.partial(self._service.create_table_if_not_exists, name)
            self._retrying(f"create table {name}", create)

    # ---- writing -------------------------------------------------------------------

    def record_cluster(self, scan: Observation, *, run_id: str, now: datetime) -> RecordResult:
        """Store one cluster's scan result; returns the flips (new, resolved, reopened)."""
        return self._retrying(
            f"record cluster {scan.cluster_id}",
            lambda: self._record_cluster(scan, run_id=run_id, now=now),
        )

    def _record_cluster(self, scan: Observation, *, run_id: str, now: datetime) -> RecordResult:
        existing = {s.fingerprint: s for s in self.current_findings(scan.cluster_id)}
        plan = plan_cluster_write(scan, existing, run_id=run_id, now=now, damping=self.damping)
        count = self._upsert(self.names.history, plan.history)
        count += self._upsert(self.names.open, plan.open_upserts)
        open_table = self._table(self.names.open)
        for row_key in plan.open_deletes:
            # Resolutions are rare; single deletes tolerate a row already gone (a retried
            # write), which a batch delete would turn into a failed transaction.
            open_table.delete_entity(partition_key=OPEN_PARTITION, row_key=row_key)
        incidents = self._track_incidents(scan.cluster_id, existing, plan.stored, now)
        count += self._upsert(
            self.names.incidents,
            [incident_properties(plan.partition, i) for i in incidents],
        )
        count += self._upsert(self.names.findings, plan.current)
        if plan.duplicates:
            log.warning(
                "cluster %s: %d fingerprints reported more than once; kept the first",
                scan.cluster_id,
                len(plan.duplicates),
            )
        if plan.held:
            log.info(
                "cluster %s: %s scan, %d open findings kept open: %s",
                scan.cluster_id,
                scan.coverage.value,
                len(plan.held),
                scan.reason,
            )
        open_count = sum(1 for s in plan.stored if s.state is FindingState.OPEN) + len(plan.held)
        log.info(
            "cluster %s: stored %d findings (%d flips, %d open) in %d transactions",
            scan.cluster_id,
            len(plan.current),
            len(plan.flips),
            open_count,
            count,
        )
        return RecordResult(
            cluster_id=scan.cluster_id,
            run_id=run_id,
            coverage=scan.coverage,
            flips=plan.flips,
            open_count=open_count,
            held=plan.held,
            duplicates=plan.duplicates,
            transactions=count,
            stored=plan.stored,
            incidents=incidents,
        )

    def _track_incidents(
        self,
        cluster_id: str,
        existing: Mapping[str, StoredFinding],
        stored: Sequence[StoredFinding],
        now: datetime,
    ) -> tuple[Incident, ...]:
        after = {**existing, **{s.fingerprint: s for s in stored}}
        open_now = {fp: s for fp, s in after.items() if s.state is FindingState.OPEN}
        q = incidents_recent_query(self.names, cluster_id, now - self.incident_window)
        recent = [incident_from_entity(q.table, e) for e in self.query(q)]
        return track(cluster_id, recent, open_now, now=now, window=self.incident_window)

    def save_run(self, run: ScanRun) -> None:
        """Write a scan run (at start, and again when it finishes: same keys, replaced)."""
        entity = run_properties(month_key(run.started), run_row_key(run.started, run.run_id), run)
        table = self._table(self.names.runs)
        self._retrying(
            f"save run {run.run_id}",
            lambda: table.upsert_entity(entity, mode=UpdateMode.REPLACE),
        )

    # ---- reading -------------------------------------------------------------------

    def current_findings(
        self, cluster_id: str, *, state: FindingState | None = None
    ) -> list[StoredFinding]:
        q = cluster_query(self.names, cluster_id, state)
        return self._retrying(
            f"read findings of {cluster_id}",
            lambda: [stored_from_entity(q.table, e) for e in self.query(q)],
        )

    def open_findings(
        self, *, subscription: str | None = None, cluster_id: str | None = None
    ) -> list[StoredFinding]:
        """Open findings of everything, of one subscription, or of one of its clusters."""
        q = open_query(self.names, subscription, cluster_id)
        return self._retrying(
            "read open findings", lambda: [stored_from_entity(q.table, e) for e in self.query(q)]
        )

    def history(self, cluster_id: str, start: datetime, end: datetime) -> list[HistoryEvent]:
        """A cluster's history rows in [start, end), oldest first."""
        q = history_query(self.names, cluster_id, start, end)
        return self._retrying(
            f"read history of {cluster_id}",
            lambda: [history_from_entity(q.table, e) for e in self.query(q)],
        )

    def incidents_open_at(self, cluster_id: str, moment: datetime) -> list[Incident]:
        """The cluster's incidents open at `moment` (opened at or before, resolved after), oldest
        first: one query of its incidents, never its history."""
        q = incidents_open_at_query(self.names, cluster_id, moment)
        return self._retrying(
            f"read incidents of {cluster_id}",
            lambda: [incident_from_entity(q.table, e) for e in self.query(q)],
        )

    def runs_between(self, start: datetime, end: datetime) -> list[ScanRun]:
        """Scan runs started in [start, end), oldest first."""
        q = runs_query(self.names, start, end)
        return self._retrying(
            "read scan runs", lambda: [run_from_entity(q.table, e) for e in self.query(q)]
        )

    def query(self, q: TableQuery) -> Iterator[Mapping[str, Any]]:
        """Run a parameterized query, following continuation page by page."""
        pager = self._table(q.table).query_entities(
            query_filter=q.filter, parameters=dict(q.parameters), results_per_page=self._page_size
        )
        for page in pager.by_page():
            yield from page

    # ---- plumbing ------------------------------------------------------------------

    def _table(self, name: str) -> TableClient:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self._service.get_table_client(name)
        return client

    def _upsert(self, table: str, entities: Sequence[Mapping[str, Any]]) -> int:
        client = self._table(table)
        batches = transactions(entities)
        for batch in batches:
            client.submit_transaction(
                [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in batch]
            )
        return len(batches)
