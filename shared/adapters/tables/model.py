"""The records storage keeps and returns: stored findings, history events, scan runs.

These are tunnelwatch's own types, all defined in the core and re-exported here; no SDK type
crosses the storage boundary. The lifecycle's (Observation, StoredFinding, HistoryEvent,
Coverage, Event ...) are shared.core.lifecycle's, the run records (ScanRun, RunStatus,
RecordResult) shared.core.records'; a `Finding` is wrapped, never copied field by field.
"""

from __future__ import annotations

from shared.core.incidents import Incident
from shared.core.lifecycle import (
    SCAN_SCOPE,
    Coverage,
    Event,
    FindingState,
    HistoryEvent,
    Observation,
    StoredFinding,
)
from shared.core.records import RecordResult, RunStatus, ScanRun

__all__ = [
    "SCAN_SCOPE",
    "Coverage",
    "Event",
    "FindingState",
    "HistoryEvent",
    "Incident",
    "Observation",
    "RecordResult",
    "RunStatus",
    "ScanRun",
    "StoredFinding",
]
