"""The stored state of one run's tables, and the comparison that yields the four counts.

Read straight from the tables (every row, not through the store's queries), so a row the
store would not find still counts:

    open      (cluster, fingerprint) whose findings row says open AND whose open-index row
              exists: what the next scan compares against and what a user is shown;
    stale     open-index rows whose findings row is not open (a finding shown twice or
              shown after it was resolved);
    history   every history row.

Comparison of a sequence baseline (clean) -> faulted -> final (clean), with the faulted and
final writes at known times:
    wrongly resolved  open in the baseline, not open after the faulted run;
    lost              open in the baseline, not open after the final clean run;
    duplicated        a NEW or REOPENED flip, in the faulted or the final run, of a finding
                      that was open just before that run; plus stale index rows after either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from azure.data.tables import TableServiceClient

from shared.adapters.tables import Event, FindingState, HistoryEvent, TableNames
from shared.adapters.tables.entities import history_from_entity, stored_from_entity
from tests.faults.tally import Counts

__all__ = ["Key", "Snapshot", "compare", "snapshot"]

Key = tuple[str, str]  # (cluster id lower-cased, fingerprint)


@dataclass(frozen=True, slots=True)
class Snapshot:
    open: dict[Key, str]  # -> title
    stale: frozenset[Key]
    history: tuple[HistoryEvent, ...]


def _rows(service: TableServiceClient, table: str) -> Iterable[dict[str, object]]:
    return (dict(e) for e in service.get_table_client(table).list_entities())


def snapshot(service: TableServiceClient, names: TableNames) -> Snapshot:
    table_open: dict[Key, str] = {}
    for e in _rows(service, names.findings):
        s = stored_from_entity(names.findings, e)
        if s.state is FindingState.OPEN:
            table_open[(s.cluster_id.lower(), s.fingerprint)] = s.finding.title
    index = set()
    for e in _rows(service, names.open):
        s = stored_from_entity(names.open, e)
        index.add((s.cluster_id.lower(), s.fingerprint))
    history = tuple(history_from_entity(names.history, e) for e in _rows(service, names.history))
    return Snapshot(
        open={k: t for k, t in table_open.items() if k in index},
        stale=frozenset(index - set(table_open)),
        history=history,
    )


def _reflips(snap: Snapshot, was_open: dict[Key, str], since: datetime, until: datetime | None):  # type: ignore[no-untyped-def]
    for h in snap.history:
        if h.at < since or (until is not None and h.at >= until):
            continue
        key = (h.cluster_id.lower(), h.fingerprint)
        if h.event in (Event.NEW, Event.REOPENED) and key in was_open:
            yield h.event.value, was_open[key]


def compare(
    baseline: Snapshot,
    faulted: Snapshot,
    final: Snapshot,
    *,
    fault_at: datetime,
    final_at: datetime,
    counts: Counts,
) -> Counts:
    """Fill the three stored-state counts of `counts` (crashes are the caller's)."""
    wrong = [t for k, t in baseline.open.items() if k not in faulted.open]
    lost = [t for k, t in baseline.open.items() if k not in final.open]
    dups = list(_reflips(final, baseline.open, fault_at, final_at))
    dups += list(_reflips(final, faulted.open, final_at, None))
    counts.wrongly_resolved += len(wrong)
    counts.lost += len(lost)
    counts.duplicated += len(dups) + len(faulted.stale) + len(final.stale)
    if wrong:
        counts.symptoms.append("resolved: " + " | ".join(sorted(w[:70] for w in wrong)))
    if lost:
        counts.symptoms.append("lost: " + " | ".join(sorted(w[:70] for w in lost)))
    if dups:
        counts.symptoms.append(
            "re-flipped while open: " + " | ".join(f"{e} {t[:60]}" for e, t in dups)
        )
    if faulted.stale or final.stale:
        counts.symptoms.append(f"stale index rows: {len(faulted.stale)} then {len(final.stale)}")
    left = [t for k, t in final.open.items() if k not in baseline.open]
    if left:  # not one of the four counts: shown so a reader sees what the fault left behind
        counts.symptoms.append("still open after the clean run: " + " | ".join(sorted(left))[:200])
    return counts
