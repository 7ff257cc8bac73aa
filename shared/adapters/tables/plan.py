"""The rows one cluster's scan writes, rendered from the core's decision.

Pure: the lifecycle (shared.core.lifecycle.transition) decides the new states and the flips;
this module only renders them as entities for each table, under the keys of docs/storage.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.adapters.tables.entities import history_properties, stored_properties
from shared.adapters.tables.keys import (
    OPEN_PARTITION,
    cluster_key,
    history_row_key,
    open_row_key,
    subscription_of,
    time_key,
)
from shared.core.lifecycle import (
    DEFAULT_DAMPING,
    Damping,
    HistoryEvent,
    Observation,
    StoredFinding,
    transition,
)

__all__ = ["ClusterWritePlan", "plan_cluster_write"]

Entity = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClusterWritePlan:
    partition: str  # the cluster's key in the findings and history tables
    current: tuple[Entity, ...]  # findings table: every touched row (upsert, replace)
    open_upserts: tuple[Entity, ...]  # open index rows of findings open after the scan
    open_deletes: tuple[str, ...]  # open index RowKeys of findings just resolved
    history: tuple[Entity, ...]  # history rows (flips and a CLOSE_HELD row)
    flips: tuple[HistoryEvent, ...]
    held: tuple[str, ...]
    duplicates: tuple[str, ...]
    stored: tuple[StoredFinding, ...]  # the state after the write, in report order


def plan_cluster_write(
    scan: Observation,
    existing: Mapping[str, StoredFinding],
    *,
    run_id: str,
    now: datetime,
    damping: Damping = DEFAULT_DAMPING,
) -> ClusterWritePlan:
    time_key(now)  # rejects a naive "now" before anything is planned
    pk = cluster_key(scan.cluster_id)
    subscription = (scan.subscription or subscription_of(scan.cluster_id)).lower()
    change = transition(
        scan, existing, subscription=subscription, run_id=run_id, now=now, damping=damping
    )

    def open_key(s: StoredFinding) -> str:
        return open_row_key(s.subscription, s.cluster_id, s.fingerprint)

    events = (*change.flips, *((change.note,) if change.note is not None else ()))
    return ClusterWritePlan(
        partition=pk,
        current=tuple(stored_properties(pk, s.fingerprint, s) for s in change.stored),
        open_upserts=tuple(stored_properties(OPEN_PARTITION, open_key(s), s) for s in change.open),
        # a re-keyed finding's old index row goes, and so do the resolved ones'
        open_deletes=(*map(open_key, change.rekeyed), *map(open_key, change.resolved)),
        history=tuple(
            history_properties(pk, history_row_key(e.at, e.fingerprint), e) for e in events
        ),
        flips=change.flips,
        held=change.held,
        duplicates=change.duplicates,
        stored=change.stored,
    )
