"""The finding lifecycle in the core (shared.core.lifecycle): pure, no storage, milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from shared.analysis.findings import Cause, Finding, Kind, Severity, Subject
from shared.core.lifecycle import (
    ClusterScan,
    Coverage,
    Event,
    FindingState,
    StoredFinding,
    Transition,
    transition,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
CLUSTER = (
    "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a"
)


def finding(
    check: str = "nsg.inbound", pool: str = "pool1", node: str = "", **kw: object
) -> Finding:
    base: dict[str, object] = {
        "check": check,
        "cause": Cause.NSG,
        "kind": Kind.PROBLEM,
        "severity": Severity.CRITICAL,
        "subject": Subject(subscription="sub-1", cluster=CLUSTER, node_pool=pool, node=node),
        "title": f"{check} on {pool}/{node}",
    }
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


class Cluster:
    """A cluster's stored state carried from one observation to the next, as a store would."""

    def __init__(self) -> None:
        self.state: dict[str, StoredFinding] = {}
        self.now = T0
        self.runs = 0

    def observe(self, scan: ClusterScan) -> Transition:
        self.runs += 1
        change = transition(
            scan, self.state, subscription="sub-1", run_id=f"r{self.runs}", now=self.now
        )
        self.state.update({s.fingerprint: s for s in change.stored})
        self.now += STEP
        return change

    def scan(self, *found: Finding, **kw: object) -> Transition:
        coverage = kw.pop("coverage", Coverage.COMPLETE)
        return self.observe(ClusterScan(CLUSTER, coverage, found, **kw))  # type: ignore[arg-type]

    def states(self) -> Mapping[str, FindingState]:
        return {fp: s.state for fp, s in self.state.items()}


def kinds(change: Transition) -> list[tuple[Event, str]]:
    return [(e.event, e.fingerprint) for e in change.flips]


def test_new_then_seen_again_is_no_flip_and_keeps_first_seen() -> None:
    c, f = Cluster(), finding()
    assert kinds(c.scan(f)) == [(Event.NEW, f.fingerprint)]
    again = c.scan(f)
    assert again.flips == () and again.note is None
    (s,) = again.reported
    assert (s.finding.first_seen, s.finding.last_seen, s.opened_at) == (T0, T0 + STEP, T0)


def test_absent_from_a_complete_scan_resolves_and_reporting_again_reopens() -> None:
    c, f, g = Cluster(), finding(pool="p1"), finding(pool="p2")
    c.scan(f, g)
    done = c.scan(f)
    assert kinds(done) == [(Event.RESOLVED, g.fingerprint)]
    (r,) = done.resolved
    assert (r.state, r.resolved_at, r.finding.last_seen) == (FindingState.RESOLVED, T0 + STEP, T0)
    back = c.scan(f, g)
    assert kinds(back) == [(Event.REOPENED, g.fingerprint)]
    s = c.state[g.fingerprint]
    assert (s.state, s.reopen_count, s.resolved_at, s.finding.first_seen) == (
        FindingState.OPEN, 1, None, T0,
    )  # fmt: skip


@pytest.mark.parametrize("coverage", [Coverage.PARTIAL, Coverage.FAILED])
def test_incomplete_scan_holds_and_says_why(coverage: Coverage) -> None:
    c, f = Cluster(), finding()
    c.scan(f)
    held = c.scan(coverage=coverage, reason="scale set list failed")
    assert held.flips == () and held.held == (f.fingerprint,)
    assert held.note is not None and held.note.event is Event.CLOSE_HELD
    assert held.note.reason == f"{coverage.value} scan: scale set list failed"
    assert c.states() == {f.fingerprint: FindingState.OPEN}


def test_partial_scan_resolves_only_the_checks_that_ran() -> None:
    c = Cluster()
    nsg, snat, udr = finding("nsg.inbound"), finding("snat.exhaustion"), finding("udr.egress")
    c.scan(nsg, snat, udr)
    change = c.scan(coverage=Coverage.PARTIAL, reason="metrics denied", not_run=("snat", "nsg"))
    assert kinds(change) == [(Event.RESOLVED, udr.fingerprint)]
    assert set(change.held) == {nsg.fingerprint, snat.fingerprint}
    # a prefix names a family, not any check that starts with the same letters
    assert not ClusterScan(CLUSTER, Coverage.PARTIAL, reason="x", not_run=("nsg",)).holds(
        "nsgx.inbound"
    )


def test_a_writer_resolves_only_its_own_scope_and_a_report_takes_ownership() -> None:
    c = Cluster()
    probe = "probe:deep:node1"
    ufw = finding("node.ufw", node="node1")
    c.scan(ufw, scope=probe)
    assert c.scan().flips == ()  # the scan cannot see UFW: it never resolves the probe's finding
    assert c.state[ufw.fingerprint].state is FindingState.OPEN
    c.scan(ufw)  # the scan reports it now: it owns it
    assert c.state[ufw.fingerprint].scope == "scan"
    assert kinds(c.scan(scope=probe)) == []
    assert kinds(c.scan()) == [(Event.RESOLVED, ufw.fingerprint)]


def test_duplicates_keep_the_first_and_rekeyed_findings_are_named() -> None:
    c, f = Cluster(), finding()
    c.scan(f)
    twice = c.scan(f, finding(title="another wording"))
    assert twice.duplicates == (f.fingerprint,)
    assert c.state[f.fingerprint].finding.title == f.title
    moved = transition(
        ClusterScan(CLUSTER, Coverage.COMPLETE, (f,)),
        c.state, subscription="sub-2", run_id="r", now=c.now,
    )  # fmt: skip
    assert [s.subscription for s in moved.rekeyed] == ["sub-1"]


def test_now_must_be_aware_and_incomplete_scans_need_a_reason() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        transition(
            ClusterScan(CLUSTER, Coverage.COMPLETE), {}, subscription="s", run_id="r",
            now=datetime(2024, 1, 1),
        )  # fmt: skip
    with pytest.raises(ValueError, match="needs a reason"):
        ClusterScan(CLUSTER, Coverage.FAILED)
