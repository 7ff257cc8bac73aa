"""A finding's lifecycle: what one observation of a cluster changes, as domain events.

Pure: given the cluster's stored findings and what a writer (the scan, or one node probe)
observed, `transition()` returns the findings' new states and the flips. Adapters store the
result (the table adapter renders rows) and send it; they do not decide what changed.

The rules (docs/storage.md, "What a scan writes"):
- reported and unknown -> NEW; reported and resolved -> REOPENED (first_seen is kept, so a
  flapping problem shows how long it has really existed); reported and open -> no flip,
  last_seen moves on;
- open and not reported -> RESOLVED, but only by an observation that ran the finding's check:
  a COMPLETE one, or a PARTIAL one whose `not_run` does not name that check. Otherwise it is
  held: a CLOSE_HELD event records why and which findings were kept open (a scan that could
  not look must not report "fixed");
- only findings of the writer's own scope are resolved or held; a finding reported by another
  writer changes owner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from shared.analysis.findings import Finding, Kind

__all__ = [
    "DEFAULT_DAMPING",
    "SCAN_SCOPE",
    "ClusterScan",
    "Coverage",
    "Damping",
    "Event",
    "FindingState",
    "HistoryEvent",
    "Observation",
    "StoredFinding",
    "Transition",
    "inconclusive_covers",
    "transition",
]

SCAN_SCOPE = "scan"
_SCOPE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")  # used with fullmatch only


class FindingState(StrEnum):
    OPEN = "open"  # reported, and not yet absent from RESOLVE_AFTER scans that looked
    RESOLVED = "resolved"  # absent from RESOLVE_AFTER scans in a row that ran its check
    # Observed, but fewer than OPEN_AFTER times in a row: not yet a problem anyone hears of
    # (only with OPEN_AFTER above 1; never in the open index).
    PENDING = "pending"


class Event(StrEnum):
    """What a lifecycle event records. NEW, RESOLVED and REOPENED are the state flips."""

    NEW = "new"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    # A scan of the cluster was partial or failed, so findings it did not report were kept
    # open rather than resolved; the event says why. Never a flip: nothing changed state.
    CLOSE_HELD = "close_held"

    @property
    def is_flip(self) -> bool:
        return self is not Event.CLOSE_HELD


class Coverage(StrEnum):
    """How much of a cluster one scan looked at; only COMPLETE may resolve findings."""

    COMPLETE = "complete"
    PARTIAL = "partial"  # some checks ran, some did not (a call failed, a pool not covered)
    FAILED = "failed"  # the cluster could not be scanned at all


@dataclass(frozen=True, slots=True)
class Observation:
    """What one writer observed on one cluster (any ARM id works, e.g. a subscription).

    The writer is the scan or one node probe (`scope`). `reason` is required unless the
    observation was complete: it is recorded to say why nothing was resolved.
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
    # The scope's subject is gone (a node scaled in, a pool deleted): no observation will
    # ever see it again, so its open findings resolve now, without waiting for RESOLVE_AFTER.
    retired: bool = False

    def holds(self, check: str) -> bool:
        """Whether an open finding of `check` that this write does not report stays open."""
        if self.coverage is Coverage.COMPLETE:
            return False
        if self.coverage is Coverage.FAILED or not self.not_run:
            return True
        return any(check == p or check.startswith(f"{p}.") for p in self.not_run)

    def __post_init__(self) -> None:
        if not self.cluster_id.strip():
            raise ValueError("Observation.cluster_id must not be empty")
        if not _SCOPE.fullmatch(self.scope):
            raise ValueError(f"Observation of {self.cluster_id}: bad scope {self.scope!r}")
        if self.not_run and self.coverage is not Coverage.PARTIAL:
            raise ValueError(
                f"Observation of {self.cluster_id}: not_run is for a partial scan, "
                f"not a {self.coverage} one"
            )
        if self.retired and (self.coverage is not Coverage.COMPLETE or self.findings):
            raise ValueError(
                f"Observation of {self.cluster_id}: a retired scope is observed complete and empty"
            )
        if self.coverage is not Coverage.COMPLETE and not self.reason.strip():
            raise ValueError(
                f"Observation of {self.cluster_id}: a {self.coverage} scan needs a reason"
            )


# The old name (it also records node probes' results, not only scans): kept until the test
# fakes and contract suites that still say it are moved over; say Observation.
ClusterScan = Observation


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """A finding's current state: the finding (with first/last seen) and its state."""

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
    # Damping counters. `streak`: observations in a row while PENDING or RESOLVED (it opens
    # at OPEN_AFTER); `missed`: observations in a row that ran its check without reporting it
    # while OPEN (it resolves at RESOLVE_AFTER). Observations that held it change neither.
    streak: int = 0
    missed: int = 0


@dataclass(frozen=True, slots=True)
class Damping:
    """How many observations open and resolve a finding (OPEN_AFTER, RESOLVE_AFTER)."""

    open_after: int = 1  # observations in a row that open it (1: the first one does)
    resolve_after: int = 2  # observations in a row that ran its check and did not report it

    def __post_init__(self) -> None:
        for name in ("open_after", "resolve_after"):
            value = getattr(self, name)
            if not 1 <= value <= 100:
                raise ValueError(f"Damping.{name} must be 1-100, got {value}")


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One lifecycle event of a cluster: a state flip of one finding, or a held close."""

    at: datetime
    cluster_id: str
    event: Event
    run_id: str
    fingerprint: str = ""  # empty for cluster-level events (CLOSE_HELD)
    finding: Finding | None = None
    reason: str = ""
    held: tuple[str, ...] = ()  # CLOSE_HELD: fingerprints kept open


@dataclass(frozen=True, slots=True)
class Transition:
    """What one observation changes on its cluster."""

    # States written that are not resolutions: the reported findings in report order, then
    # unreported ones whose damping counters moved (still open, or a broken streak).
    changed: tuple[StoredFinding, ...]
    resolved: tuple[StoredFinding, ...]  # findings resolved by this observation
    flips: tuple[HistoryEvent, ...]  # NEW, REOPENED, RESOLVED
    note: HistoryEvent | None  # CLOSE_HELD, when something was held
    held: tuple[str, ...]  # open fingerprints not reported but kept (check not run)
    duplicates: tuple[str, ...]  # fingerprints reported more than once (the first is kept)
    rekeyed: tuple[StoredFinding, ...]  # open findings whose subscription changed (as before)

    @property
    def stored(self) -> tuple[StoredFinding, ...]:
        """Every state this observation changed: `changed`, then `resolved`."""
        return (*self.changed, *self.resolved)

    @property
    def open(self) -> tuple[StoredFinding, ...]:
        """The changed states that are open (the rows of the open index to write)."""
        return tuple(s for s in self.changed if s.state is FindingState.OPEN)


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


DEFAULT_DAMPING = Damping()


def inconclusive_covers(inconclusive: Finding, other: Finding) -> bool:
    """Whether an inconclusive result speaks for `other`: the same check, and a subject that
    contains `other`'s (an empty pool, node or resource is the whole of it)."""
    a, b = inconclusive.subject, other.subject
    return (
        inconclusive.check == other.check
        and a.cluster.lower() == b.cluster.lower()
        and all(not x or x == y for x, y in ((a.node_pool, b.node_pool), (a.node, b.node)))
        and (not a.resource or a.resource.lower() == b.resource.lower())
    )


def transition(
    scan: Observation,
    existing: Mapping[str, StoredFinding],
    *,
    subscription: str,
    run_id: str,
    now: datetime,
    damping: Damping = DEFAULT_DAMPING,
) -> Transition:
    """The new states and events after `scan`, given the cluster's stored findings.

    `subscription` is the (lower-case) subscription the findings are filed under.
    """
    if now.tzinfo is None:
        raise ValueError(f"transition of {scan.cluster_id}: 'now' must be timezone-aware")
    reported, duplicates = _dedupe(scan.findings)
    flips: list[HistoryEvent] = []
    after: list[StoredFinding] = []
    rekeyed: list[StoredFinding] = []

    for fp, finding in reported.items():
        prev = existing.get(fp)
        seen = finding.seen(now, prev.finding if prev is not None else None)
        if prev is None or prev.state is FindingState.PENDING:
            streak = 1 if prev is None else prev.streak + 1
            opens = streak >= damping.open_after
            event: Event | None = Event.NEW if opens else None
            stored = StoredFinding(
                fp, scan.cluster_id, subscription,
                FindingState.OPEN if opens else FindingState.PENDING, seen,
                now if opens or prev is None else prev.opened_at,
                run_id=run_id, scope=scan.scope, streak=0 if opens else streak,
            )  # fmt: skip
        elif prev.state is FindingState.RESOLVED:
            streak = prev.streak + 1
            if streak < damping.open_after:  # seen again, not yet reopened: it stays resolved
                event = None
                stored = replace(prev, run_id=run_id, streak=streak, scope=scan.scope)
            else:
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
                    streak=0,
                    missed=0,
                )
        else:
            event = None
            if prev.subscription != subscription:
                rekeyed.append(prev)
            stored = replace(
                prev, subscription=subscription, finding=seen, run_id=run_id, truncated=False,
                scope=scan.scope, missed=0,
            )  # fmt: skip
        after.append(stored)
        if event is not None:
            flips.append(HistoryEvent(now, scan.cluster_id, event, run_id, fp, seen))

    # An inconclusive result is not evidence of a fix: what it speaks for is held.
    unsure = [f for f in reported.values() if f.kind is Kind.INCONCLUSIVE]

    def holds(s: StoredFinding) -> bool:
        return scan.holds(s.finding.check) or any(inconclusive_covers(u, s.finding) for u in unsure)

    missing = [
        s for fp, s in sorted(existing.items()) if fp not in reported and s.scope == scan.scope
    ]
    held = tuple(s.fingerprint for s in missing if s.state is FindingState.OPEN and holds(s))
    resolved: list[StoredFinding] = []
    for prev in missing:
        if holds(prev):
            continue
        if prev.state is not FindingState.OPEN:
            if prev.streak:  # the streak towards opening is broken
                after.append(replace(prev, streak=0, run_id=run_id))
            continue
        if not scan.retired and prev.missed + 1 < damping.resolve_after:  # counts, still open
            after.append(replace(prev, missed=prev.missed + 1, run_id=run_id))
            continue
        # last_seen stays: it is when the problem was last actually observed.
        stored = replace(
            prev, state=FindingState.RESOLVED, resolved_at=now, run_id=run_id, streak=0, missed=0
        )
        resolved.append(stored)
        flips.append(
            HistoryEvent(
                now, scan.cluster_id, Event.RESOLVED, run_id, prev.fingerprint, prev.finding
            )
        )

    note = None
    if held:  # nothing kept open, nothing to explain (a stopped cluster with nothing open)
        note = HistoryEvent(
            now,
            scan.cluster_id,
            Event.CLOSE_HELD,
            run_id,
            reason=f"{scan.coverage.value} scan: {scan.reason}"
            if scan.coverage is not Coverage.COMPLETE
            else f"complete scan: {len(unsure)} inconclusive results are not evidence of a fix",
            held=held,
        )
    return Transition(
        changed=tuple(after),
        resolved=tuple(resolved),
        flips=tuple(flips),
        note=note,
        held=held,
        duplicates=duplicates,
        rekeyed=tuple(rekeyed),
    )
