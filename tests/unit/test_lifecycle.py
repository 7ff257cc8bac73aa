"""The finding lifecycle in the core (shared.core.lifecycle): pure, no storage, milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from shared.analysis.findings import Cause, Finding, Kind, Severity, Subject
from shared.core.incidents import Incident, group_of, incident_id, track
from shared.core.lifecycle import (
    DEFAULT_DAMPING,
    Coverage,
    Damping,
    Event,
    FindingState,
    Observation,
    StoredFinding,
    Transition,
    transition,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
NO_DAMPING = Damping(open_after=1, resolve_after=1)
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
    """A cluster's stored state carried from one observation to the next, as a store would.

    Without damping (OPEN_AFTER=RESOLVE_AFTER=1) unless told: the damping tests say so.
    """

    def __init__(self, damping: Damping = NO_DAMPING) -> None:
        self.damping = damping
        self.state: dict[str, StoredFinding] = {}
        self.now = T0
        self.runs = 0

    def observe(self, scan: Observation) -> Transition:
        self.runs += 1
        change = transition(
            scan,
            self.state,
            subscription="sub-1",
            run_id=f"r{self.runs}",
            now=self.now,
            damping=self.damping,
        )
        self.state.update({s.fingerprint: s for s in change.stored})
        self.now += STEP
        return change

    def scan(self, *found: Finding, **kw: object) -> Transition:
        coverage = kw.pop("coverage", Coverage.COMPLETE)
        return self.observe(Observation(CLUSTER, coverage, found, **kw))  # type: ignore[arg-type]

    def states(self) -> Mapping[str, FindingState]:
        return {fp: s.state for fp, s in self.state.items()}


def kinds(change: Transition) -> list[tuple[Event, str]]:
    return [(e.event, e.fingerprint) for e in change.flips]


def test_new_then_seen_again_is_no_flip_and_keeps_first_seen() -> None:
    c, f = Cluster(), finding()
    assert kinds(c.scan(f)) == [(Event.NEW, f.fingerprint)]
    again = c.scan(f)
    assert again.flips == () and again.note is None
    (s,) = again.changed
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
    assert not Observation(CLUSTER, Coverage.PARTIAL, reason="x", not_run=("nsg",)).holds(
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
        Observation(CLUSTER, Coverage.COMPLETE, (f,)),
        c.state, subscription="sub-2", run_id="r", now=c.now,
    )  # fmt: skip
    assert [s.subscription for s in moved.rekeyed] == ["sub-1"]


def test_now_must_be_aware_and_incomplete_scans_need_a_reason() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        transition(
            Observation(CLUSTER, Coverage.COMPLETE), {}, subscription="s", run_id="r",
            now=datetime(2024, 1, 1),
        )  # fmt: skip
    with pytest.raises(ValueError, match="needs a reason"):
        Observation(CLUSTER, Coverage.FAILED)


# ---- damping: OPEN_AFTER, RESOLVE_AFTER, inconclusive results ----------------------------


def test_default_damping_opens_at_once_and_resolves_after_two_clean_scans() -> None:
    assert (DEFAULT_DAMPING.open_after, DEFAULT_DAMPING.resolve_after) == (1, 2)
    c, f = Cluster(DEFAULT_DAMPING), finding()
    assert kinds(c.scan(f)) == [(Event.NEW, f.fingerprint)]
    first_clean = c.scan()
    assert first_clean.flips == ()  # one clean scan only counts towards resolving
    assert c.state[f.fingerprint].state is FindingState.OPEN
    assert first_clean.open == (c.state[f.fingerprint],)  # the open index gets the counter
    assert c.state[f.fingerprint].missed == 1
    assert kinds(c.scan()) == [(Event.RESOLVED, f.fingerprint)]
    r = c.state[f.fingerprint]
    assert r.resolved_at == T0 + 2 * STEP and r.finding.last_seen == T0


def test_seen_again_before_resolving_starts_the_count_again() -> None:
    c, f = Cluster(DEFAULT_DAMPING), finding()
    c.scan(f)
    c.scan()
    assert c.scan(f).flips == ()  # a blip, not a flap: no resolve, no reopen
    assert c.state[f.fingerprint].missed == 0
    assert c.scan().flips == ()
    assert kinds(c.scan()) == [(Event.RESOLVED, f.fingerprint)]
    assert c.state[f.fingerprint].reopen_count == 0


def test_held_observations_neither_count_nor_reset_towards_resolving() -> None:
    c, f = Cluster(Damping(resolve_after=3)), finding("nsg.inbound")
    c.scan(f)
    c.scan()
    held = c.scan(coverage=Coverage.PARTIAL, reason="nsg read failed", not_run=("nsg",))
    assert held.held == (f.fingerprint,) and c.state[f.fingerprint].missed == 1
    c.scan(coverage=Coverage.FAILED, reason="cluster unreachable")
    assert c.state[f.fingerprint].missed == 1
    assert c.scan().flips == ()
    assert kinds(c.scan()) == [(Event.RESOLVED, f.fingerprint)]


def test_open_after_needs_consecutive_observations_to_open_and_to_reopen() -> None:
    c, f = Cluster(Damping(open_after=2, resolve_after=1)), finding()
    once = c.scan(f)
    assert once.flips == () and once.open == ()  # pending: not in the open index
    assert c.state[f.fingerprint].state is FindingState.PENDING
    c.scan()  # the streak is broken by an observation that ran the check
    assert (c.state[f.fingerprint].state, c.state[f.fingerprint].streak) == (
        FindingState.PENDING, 0,
    )  # fmt: skip
    c.scan(f)
    c.scan(coverage=Coverage.FAILED, reason="unreachable")  # held: the streak survives
    assert kinds(c.scan(f)) == [(Event.NEW, f.fingerprint)]
    s = c.state[f.fingerprint]
    assert (s.state, s.opened_at, s.finding.first_seen) == (FindingState.OPEN, c.now - STEP, T0)
    assert kinds(c.scan()) == [(Event.RESOLVED, f.fingerprint)]
    assert c.scan(f).flips == ()  # once: still resolved
    assert c.state[f.fingerprint].state is FindingState.RESOLVED
    assert kinds(c.scan(f)) == [(Event.REOPENED, f.fingerprint)]
    assert c.state[f.fingerprint].reopen_count == 1


def test_an_inconclusive_result_never_resolves_what_it_speaks_for() -> None:
    c = Cluster(DEFAULT_DAMPING)
    on_node1 = finding("node.iptables", pool="p", node="node1")
    on_node2 = finding("node.iptables", pool="p", node="node2")
    other_check = finding("node.ufw", pool="p", node="node1")
    c.scan(on_node1, on_node2, other_check)
    cannot_tell = finding(
        "node.iptables", pool="p", node="node1", kind=Kind.INCONCLUSIVE, key="error:iptables"
    )
    for _ in range(3):
        change = c.scan(cannot_tell)
        assert [e.event for e in change.flips if e.fingerprint == on_node1.fingerprint] == []
        assert on_node1.fingerprint in change.held
        assert change.note is not None and "inconclusive" in change.note.reason
    assert c.state[on_node1.fingerprint].state is FindingState.OPEN
    assert c.state[on_node1.fingerprint].missed == 0
    # it speaks for node1's iptables only: node2 and the UFW finding resolve as usual
    assert c.state[on_node2.fingerprint].state is FindingState.RESOLVED
    assert c.state[other_check.fingerprint].state is FindingState.RESOLVED
    # a conclusive clean result counts again, and the inconclusive finding resolves like any
    c.scan()
    assert {e.fingerprint for e in c.scan().flips} == {
        on_node1.fingerprint, cannot_tell.fingerprint,
    }  # fmt: skip


def test_a_pool_wide_inconclusive_result_holds_its_nodes_and_damping_is_validated() -> None:
    c = Cluster()
    on_node = finding("node.iptables", pool="p", node="n1")
    c.scan(on_node)
    pool_unsure = finding("node.iptables", pool="p", kind=Kind.INCONCLUSIVE)
    assert c.scan(pool_unsure).held == (on_node.fingerprint,)
    other_pool = finding("node.iptables", pool="q", kind=Kind.INCONCLUSIVE)
    assert set(kinds(c.scan(other_pool))) == {
        (Event.NEW, other_pool.fingerprint),
        (Event.RESOLVED, on_node.fingerprint),
        (Event.RESOLVED, pool_unsure.fingerprint),
    }
    with pytest.raises(ValueError, match="resolve_after must be 1-100"):
        Damping(resolve_after=0)


def test_a_retired_scope_resolves_at_once_and_only_when_observed_empty() -> None:
    c, f = Cluster(DEFAULT_DAMPING), finding("node.ruleset", node="gone-node")
    scope = "probe:deep:gone-node"
    c.scan(f, scope=scope)
    assert kinds(c.scan(scope=scope, retired=True)) == [(Event.RESOLVED, f.fingerprint)]
    with pytest.raises(ValueError, match="retired scope is observed complete and empty"):
        Observation(CLUSTER, Coverage.COMPLETE, (f,), retired=True)


# ---- incidents ---------------------------------------------------------------------------


class Incidents:
    """A cluster's observations with its incidents kept as a store keeps them."""

    def __init__(self, damping: Damping = NO_DAMPING) -> None:
        self.cluster = Cluster(damping)
        self.all: dict[str, Incident] = {}

    def scan(self, *found: Finding, **kw: object) -> tuple[Incident, ...]:
        now = self.cluster.now
        self.cluster.scan(*found, **kw)
        open_now = {fp: s for fp, s in self.cluster.state.items() if s.state is FindingState.OPEN}
        changed = track(CLUSTER, self.all.values(), open_now, now=now, window=timedelta(minutes=30))
        self.all.update({i.incident_id: i for i in changed})
        return changed


def test_findings_of_one_node_share_an_incident_and_it_resolves_with_the_last() -> None:
    tracker = Incidents()
    a = finding("node.ruleset", pool="p", node="n1")
    b = finding("node.kubelet", pool="p", node="n1")
    other = finding("nsg.inbound", pool="q")
    (first,) = tracker.scan(a)
    assert (first.group, first.opened_at, first.open_findings) == ("node:n1", T0, (a.fingerprint,))
    changed = tracker.scan(a, b, other)
    assert {i.group: i.open_findings for i in changed} == {
        "node:n1": tuple(sorted((a.fingerprint, b.fingerprint))),
        "pool:q": (other.fingerprint,),
    }
    assert tracker.all[first.incident_id].opened_at == T0  # the same incident, not a new one
    assert [i.resolved_at for i in tracker.scan(b, other)] == [None]  # a resolved, b still open
    (done,) = tracker.scan(other)
    assert (done.incident_id, done.resolved_at) == (first.incident_id, T0 + 3 * STEP)
    assert set(done.findings) == {a.fingerprint, b.fingerprint} and done.open_findings == ()
    assert tracker.scan(other) == ()  # nothing changed, nothing to write


def test_a_reopen_within_the_window_continues_the_incident_and_later_opens_a_new_one() -> None:
    tracker, f = Incidents(), finding(node="n1")
    (first,) = tracker.scan(f)
    tracker.scan()  # resolved at T0 + 5 min
    (again,) = tracker.scan(f)  # 5 minutes later: within the 30-minute window
    assert (again.incident_id, again.reopen_count, again.resolved_at) == (
        first.incident_id, 1, None,
    )  # fmt: skip
    tracker.scan()
    for _ in range(7):  # 35 quiet minutes: past the window
        assert tracker.scan() == ()
    (new,) = tracker.scan(f)
    assert new.incident_id != first.incident_id and new.reopen_count == 0
    assert len(tracker.all) == 2


def test_incidents_follow_damping_and_open_at_is_half_open() -> None:
    tracker, f = Incidents(DEFAULT_DAMPING), finding(pool="p")
    assert [i.opened_at for i in tracker.scan(f)] == [T0]
    assert tracker.scan() == ()  # one clean scan counts towards resolving: the incident stays
    (closed,) = tracker.scan()
    assert closed.resolved_at == T0 + 2 * STEP
    assert closed.open_at(T0) and closed.open_at(T0 + 2 * STEP - timedelta(microseconds=1))
    assert not closed.open_at(T0 + 2 * STEP) and not closed.open_at(T0 - timedelta(seconds=1))
    assert closed.incident_id == incident_id(CLUSTER, "pool:p", T0)
    assert group_of(finding(pool="", node="")) == "cluster"


def test_findings_open_before_incidents_existed_get_one_from_their_opening() -> None:
    c, f = Cluster(), finding(node="n1")
    c.scan(f)
    c.scan(f)
    (late,) = track(CLUSTER, (), {f.fingerprint: c.state[f.fingerprint]}, now=c.now)
    assert late.opened_at == T0 and late.open_findings == (f.fingerprint,)
