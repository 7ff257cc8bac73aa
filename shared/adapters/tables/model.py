"""The records storage keeps and returns: stored findings, history events, scan runs.

These are tunnelwatch's own types, all defined in the core and re-exported here; no SDK type
crosses the storage boundary. The lifecycle's (ClusterScan, StoredFinding, HistoryEvent,
Coverage, Event ...) are shared.core.lifecycle's, the run records (ScanRun, RunStatus,
RecordResult) shared.core.records'; a `Finding` is wrapped, never copied field by field.
"""

from __future__ import annotations

from shared.core.incidents import Incident
from shared.core.lifecycle import (
    SCAN_SCOPE,
    ClusterScan,
    Coverage,
    Event,
    FindingState,
    HistoryEvent,
    StoredFinding,
)
from shared.core.records import RecordResult, RunStatus, ScanRun

__all__ = [
    "SCAN_SCOPE",
    "ClusterScan",
    "Coverage",
    "Event",
    "FindingState",
    "HistoryEvent",
    "Incident",
    "RecordResult",
    "RunStatus",
    "ScanRun",
    "StoredFinding",
]
