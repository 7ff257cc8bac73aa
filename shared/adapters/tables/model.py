"""The records storage keeps and returns: stored findings, history events, scan runs.

These are tunnelwatch's own types; no SDK type crosses the storage boundary. A `Finding`
(shared.analysis.findings) is wrapped, never copied field by field into a second model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.analysis.findings import Finding

__all__ = [
    "SCAN_SCOPE",
    "ClusterScan",
    "Coverage",
    "Event",
    "FindingState",
    "HistoryEvent",
    "RecordResult",
    "RunStatus",
    "ScanRun",
    "StoredFinding",
]

SCAN_SCOPE = "scan"
_SCOPE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")  # used with fullmatch only


class FindingState(StrEnum):
    OPEN = "open"  # reported by the latest scan that looked at it
    RESOLVED = "resolved"  # a complete scan of its cluster no longer reported it


class Event(StrEnum):
    """What a history row records. NEW, RESOLVED and REOPENED are the state flips."""

    NEW = "new"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    # A scan of the cluster was partial or failed, so findings it did not report were kept
    # open rather than resolved; the row says why. Never a flip: nothing changed state.
    CLOSE_HELD = "close_held"

    @property
    def is_flip(self) -> bool:
        return self is not Event.CLOSE_HELD


class Coverage(StrEnum):
    """How much of a cluster one scan looked at; only COMPLETE may resolve findings."""

    COMPLETE = "complete"
    PARTIAL = "partial"  # some checks ran, some did not (a call failed, a pool not covered)
    FAILED = "failed"  # the cluster could not be scanned at all


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"  # some clusters failed or were partial
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ClusterScan:
    """What one scan found on one cluster (any ARM id works as the scope, e.g. a subscription).

    `reason` is required unless the scan was complete: it is recorded to say why nothing
    was resolved.
    """

    cluster_id: str
    coverage: Coverage
    findings: tuple[Finding, ...] = ()
    subscription: str = ""  # empty: taken from the cluster's resource id
    reason: str = ""
    # The writer: the scan, or one node probe ("probe:triage:<pool>", "probe:deep:<node>").
    # Only findings of the same scope are resolved or held by this write; the others are
    # another writer's and are left as they are.
    scope: str = SCAN_SCOPE
    # A PARTIAL scan that knows which of its checks did not run (their inputs could not be
    # read): the check families, as check-id prefixes ("nsg", "snat"). Open findings of those
    # checks are held; the others are resolved as after a complete scan. Empty: every open
    # finding of the scope is held (nothing says which checks ran).
    not_run: tuple[str, ...] = ()

    def holds(self, check: str) -> bool:
        """Whether an open finding of `check` that this write does not report stays open."""
        if self.coverage is Coverage.COMPLETE:
            return False
        if self.coverage is Coverage.FAILED or not self.not_run:
            return True
        return any(check == p or check.startswith(f"{p}.") for p in self.not_run)

    def __post_init__(self) -> None:
        if not self.cluster_id.strip():
            raise ValueError("ClusterScan.cluster_id must not be empty")
        if not _SCOPE.fullmatch(self.scope):
            raise ValueError(f"ClusterScan of {self.cluster_id}: bad scope {self.scope!r}")
        if self.not_run and self.coverage is not Coverage.PARTIAL:
            raise ValueError(
                f"ClusterScan of {self.cluster_id}: not_run is for a partial scan, "
                f"not a {self.coverage} one"
            )
        if self.coverage is not Coverage.COMPLETE and not self.reason.strip():
            raise ValueError(
                f"ClusterScan of {self.cluster_id}: a {self.coverage} scan needs a reason"
            )


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """A finding's current state as stored: the finding (with first/last seen) and its state."""

    fingerprint: str  # the stored one (authoritative even if an identity field was truncated)
    cluster_id: str
    subscription: str
    state: FindingState
    finding: Finding
    opened_at: datetime  # when it was last opened (first seen, or reopened)
    resolved_at: datetime | None = None
    reopen_count: int = 0
    run_id: str = ""  # the last scan run that wrote this row
    truncated: bool = False  # some text was cut to fit the entity limits (a marker says where)
    scope: str = SCAN_SCOPE  # which writer owns the row (only it may resolve the finding)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One row of a cluster's history: a state flip of one finding, or a held close."""

    at: datetime
    cluster_id: str
    event: Event
    run_id: str
    fingerprint: str = ""  # empty for cluster-level rows (CLOSE_HELD)
    finding: Finding | None = None
    reason: str = ""
    held: tuple[str, ...] = ()  # CLOSE_HELD: fingerprints kept open


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
