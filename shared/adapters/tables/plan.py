"""Deciding what one cluster's scan changes: flips, held closes and the rows to write.

Pure: given the cluster's stored findings and what the scan reported, returns the entities
for each table and the state flips. The rules:

- reported and unknown -> NEW; reported and resolved -> REOPENED (first_seen is kept, so a
  flapping problem shows how long it has really existed); reported and open -> no flip,
  last_seen moves on;
- open and not reported -> RESOLVED, but only by a scan that ran the finding's check: a
  COMPLETE scan, or a PARTIAL one whose `not_run` does not name that check. Otherwise it is
  held: a CLOSE_HELD history row records why and which findings were kept open (a scan that
  could not look must not report "fixed").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
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
from shared.adapters.tables.model import (
    ClusterScan,
    Event,
    FindingState,
    HistoryEvent,
    StoredFinding,
)
from shared.analysis.findings import Finding

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


def _dedupe(findings: tuple[Finding, ...]) -> tuple[dict[str, Finding], tuple[str, ...]]:
    # Two findings with one fingerprint are a bug of a check; keep the first and say so.
    unique: dict[str, Finding] = {}
    dupes: list[str] = []
    for finding in findings:
        fp = finding.fingerprint
        if fp in unique:
            dupes.append(fp)
        else:
            unique[fp] = finding
    return unique, tuple(dict.fromkeys(dupes))


def plan_cluster_write(
    scan: ClusterScan,
    existing: Mapping[str, StoredFinding],
    *,
    run_id: str,
    now: datetime,
) -> ClusterWritePlan:
    time_key(now)  # rejects a naive "now" before anything is planned
    pk = cluster_key(scan.cluster_id)
    subscription = (scan.subscription or subscription_of(scan.cluster_id)).lower()
    reported, duplicates = _dedupe(scan.findings)
    flips: list[HistoryEvent] = []
    after: list[StoredFinding] = []
    moved: list[str] = []

    for fp, finding in reported.items():
        prev = existing.get(fp)
        seen = finding.seen(now, prev.finding if prev is not None else None)
        if prev is None:
            event: Event | None = Event.NEW
            stored = StoredFinding(
                fp, scan.cluster_id, subscription, FindingState.OPEN, seen, now,
                run_id=run_id, scope=scan.scope,
            )  # fmt: skip
        elif prev.state is FindingState.RESOLVED:
            event = Event.REOPENED
            stored = replace(
                prev,
                subscription=subscription,
                state=FindingState.OPEN,
                finding=seen,
                opened_at=now,
                resolved_at=None,
                reopen_count=prev.reopen_count + 1,
                run_id=run_id,
                truncated=False,
                scope=scan.scope,
            )
        else:
            event = None
            if prev.subscription != subscription:  # re-keyed: drop the old index row
                moved.append(open_row_key(prev.subscription, prev.cluster_id, fp))
            stored = replace(
                prev, subscription=subscription, finding=seen, run_id=run_id, truncated=False,
                scope=scan.scope,
            )  # fmt: skip
        after.append(stored)
        if event is not None:
            flips.append(HistoryEvent(now, scan.cluster_id, event, run_id, fp, seen))

    missing = [
        s
        for fp, s in sorted(existing.items())
        if s.state is FindingState.OPEN and fp not in reported and s.scope == scan.scope
    ]
    held = tuple(s.fingerprint for s in missing if scan.holds(s.finding.check))
    resolved: list[StoredFinding] = []
    for prev in missing:
        if prev.fingerprint in held:
            continue
        # last_seen stays: it is when the problem was last actually observed.
        stored = replace(prev, state=FindingState.RESOLVED, resolved_at=now, run_id=run_id)
        resolved.append(stored)
        flips.append(
            HistoryEvent(
                now, scan.cluster_id, Event.RESOLVED, run_id, prev.fingerprint, prev.finding
            )
        )

    history = [history_properties(pk, history_row_key(f.at, f.fingerprint), f) for f in flips]
    if held:  # nothing kept open, nothing to explain (a stopped cluster with nothing open)
        note = HistoryEvent(
            now,
            scan.cluster_id,
            Event.CLOSE_HELD,
            run_id,
            reason=f"{scan.coverage.value} scan: {scan.reason}",
            held=held,
        )
        history.append(history_properties(pk, history_row_key(now, ""), note))

    def open_key(s: StoredFinding) -> str:
        return open_row_key(s.subscription, s.cluster_id, s.fingerprint)

    return ClusterWritePlan(
        partition=pk,
        current=tuple(stored_properties(pk, s.fingerprint, s) for s in (*after, *resolved)),
        open_upserts=tuple(stored_properties(OPEN_PARTITION, open_key(s), s) for s in after),
        open_deletes=(*moved, *(open_key(s) for s in resolved)),
        history=tuple(history),
        flips=tuple(flips),
        held=held,
        duplicates=duplicates,
        stored=(*after, *resolved),
    )
