"""What the finding store records for the jobs: a scan run's bookkeeping, and what one
cluster's write did (its flips, held findings and incidents). Rendered into rows by
shared/adapters/tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.core.incidents import Incident
from shared.core.lifecycle import Coverage, HistoryEvent, StoredFinding

__all__ = ["RecordResult", "RunStatus", "ScanRun"]


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"  # some clusters failed or were partial
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What `FindingStore.record_cluster` did; notifications fire on `flips` only."""

    cluster_id: str
    run_id: str
    coverage: Coverage
    flips: tuple[HistoryEvent, ...]
    open_count: int  # open findings of the cluster after the write
    held: tuple[str, ...] = ()  # open fingerprints not reported but kept (scan incomplete)
    duplicates: tuple[str, ...] = ()  # fingerprints reported more than once (first kept)
    transactions: int = 0  # batch transactions submitted
    stored: tuple[StoredFinding, ...] = ()
    incidents: tuple[Incident, ...] = ()  # incidents this write opened, changed or resolved

    def incident_of(self, fingerprint: str) -> Incident | None:
        """The incident a flip of this write belongs to (every flip changes its incident)."""
        return next((i for i in self.incidents if fingerprint in i.findings), None)


@dataclass(frozen=True, slots=True)
class ScanRun:
    """One scan run's bookkeeping. Saved at start (RUNNING) and again when it finishes."""

    run_id: str
    started: datetime
    finished: datetime | None = None
    status: RunStatus = RunStatus.RUNNING
    subscriptions: tuple[str, ...] = ()
    clusters_scanned: int = 0
    clusters_failed: tuple[str, ...] = ()  # resource ids
    arm_calls: int = 0
    arm_calls_by_operation: Mapping[str, int] = field(default_factory=dict)
    finding_counts: Mapping[str, int] = field(default_factory=dict)  # e.g. open, new, resolved
    errors: tuple[str, ...] = ()
