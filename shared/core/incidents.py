"""Incidents: the findings of one node (or pool, or the cluster) grouped while any is open.

Pure, like the lifecycle: given a cluster's recent incidents and its open findings after an
observation, `track()` returns the incidents that changed. The rule (docs/storage.md):

- a finding belongs to the group of its subject: its node, else its pool, else the cluster;
- a group has at most one open incident: it opens with the group's first open finding,
  gathers every finding that opens in the group while it is open, and resolves when the
  group's last open finding resolves;
- a finding that opens in a group whose incident resolved less than `window` ago reopens that
  incident (same id, `reopen_count` + 1): a flap is one incident, not many, and the incident
  spans the quiet gap (it is open from its first opening to its last resolution).

Incidents are computed from the open findings, not from the flips alone, so a write that
is repeated after a failure computes the same incidents, and findings that were open before
incidents existed get one at the next observation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from shared.analysis.findings import Finding
from shared.core.lifecycle import StoredFinding

__all__ = ["INCIDENT_WINDOW", "Incident", "group_of", "incident_id", "track"]

INCIDENT_WINDOW = timedelta(hours=1)  # a reopen within this continues the incident


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident of a cluster: opened, resolved, its findings and how often it reopened."""

    incident_id: str
    cluster_id: str
    group: str  # "node:<name>", "pool:<name>" or "cluster"
    opened_at: datetime
    resolved_at: datetime | None = None
    findings: tuple[str, ...] = ()  # every fingerprint that was open in it, first first
    open_findings: tuple[str, ...] = ()  # those open now (empty once resolved)
    reopen_count: int = 0

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def open_at(self, moment: datetime) -> bool:
        """Open at `moment`: opened at or before it, resolved after it (or not yet)."""
        return self.opened_at <= moment and (self.resolved_at is None or moment < self.resolved_at)


def group_of(finding: Finding) -> str:
    """The incident group of a finding: its node, else its pool, else the whole cluster."""
    s = finding.subject
    if s.node:
        return f"node:{s.node.lower()}"
    if s.node_pool:
        return f"pool:{s.node_pool.lower()}"
    return "cluster"


def incident_id(cluster_id: str, group: str, opened_at: datetime) -> str:
    """`<opened, fixed-width UTC>_<12 hex of cluster and group>`: key-safe, sorts by opening."""
    if opened_at.tzinfo is None:
        raise ValueError(f"incident of {cluster_id}: opened_at must be timezone-aware")
    when = opened_at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    digest = hashlib.sha256(f"{cluster_id.lower()}\x1f{group}".encode()).hexdigest()[:12]
    return f"{when}Z_{digest}"


def track(
    cluster_id: str,
    recent: Iterable[Incident],
    open_now: Mapping[str, StoredFinding],
    *,
    now: datetime,
    window: timedelta = INCIDENT_WINDOW,
) -> tuple[Incident, ...]:
    """The incidents that change, given the cluster's open and recently resolved incidents
    (`recent`) and its open findings after an observation (`open_now`, by fingerprint)."""
    if now.tzinfo is None:
        raise ValueError(f"incidents of {cluster_id}: 'now' must be timezone-aware")
    groups: dict[str, list[StoredFinding]] = {}
    for fp in sorted(open_now):
        groups.setdefault(group_of(open_now[fp].finding), []).append(open_now[fp])
    latest: dict[str, Incident] = {}
    for incident in sorted(recent, key=lambda i: i.opened_at):
        kept = latest.get(incident.group)
        if kept is None or kept.resolved_at is not None:  # an open one wins over a resolved
            latest[incident.group] = incident

    changed: list[Incident] = []
    for group, members in sorted(groups.items()):
        fps = tuple(s.fingerprint for s in members)
        prev = latest.get(group)
        if prev is not None and prev.is_open:
            after = replace(
                prev,
                findings=tuple(dict.fromkeys((*prev.findings, *fps))),
                open_findings=fps,
            )
        elif prev is not None and prev.resolved_at is not None and now - prev.resolved_at < window:
            after = replace(
                prev,
                resolved_at=None,
                findings=tuple(dict.fromkeys((*prev.findings, *fps))),
                open_findings=fps,
                reopen_count=prev.reopen_count + 1,
            )
        else:
            opened = min([*(s.opened_at for s in members), now])
            after = Incident(
                incident_id(cluster_id, group, opened), cluster_id, group, opened,
                findings=fps, open_findings=fps,
            )  # fmt: skip
        if after != prev:
            changed.append(after)
    for group, prev in sorted(latest.items()):
        if prev.is_open and group not in groups:
            changed.append(replace(prev, resolved_at=now, open_findings=()))
    return tuple(changed)
