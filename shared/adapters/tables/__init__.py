"""Storage of scan runs, findings and finding history in Azure Table storage.

    store.py     FindingStore: the SDK calls (the TableServiceClient is passed in)
    plan.py      the rows one cluster's scan writes, rendered from the core's lifecycle (pure)
    keys.py      table names, keys and the parameterized key-range queries (pure)
    entities.py  records <-> entities, checked on the way back (pure)
    limits.py    entity and batch limits, truncation markers, secret masking (pure)
    model.py     the records: StoredFinding, HistoryEvent, ScanRun, Observation ...

The schema is documented in docs/storage.md.
"""

from __future__ import annotations

from shared.adapters.tables.keys import TableNames, TableQuery, cluster_key
from shared.adapters.tables.model import (
    Coverage,
    Event,
    FindingState,
    HistoryEvent,
    Incident,
    Observation,
    RecordResult,
    RunStatus,
    ScanRun,
    StoredFinding,
)
from shared.adapters.tables.store import FindingStore

__all__ = [
    "Coverage",
    "Event",
    "FindingState",
    "FindingStore",
    "HistoryEvent",
    "Incident",
    "Observation",
    "RecordResult",
    "RunStatus",
    "ScanRun",
    "StoredFinding",
    "TableNames",
    "TableQuery",
    "cluster_key",
]
