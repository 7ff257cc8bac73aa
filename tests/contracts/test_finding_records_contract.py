"""The finding store's contract (FindingRecords, and the reads FindingStore offers), held by the
in-memory fake (tests/fakes/storage.py) and the real FindingStore on Azurite alike.

Every test runs twice, `fake` (milliseconds) and `azurite` (an integration test: skipped with
its reason where Azurite cannot run, failing under CI=true). An assertion that only one of them
passes means the fake lies, and every job test on it with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tables import FindingStore, RunStatus, ScanRun
from shared.adapters.tables.limits import TRUNCATION_MARK
from shared.analysis.findings import Cause, Finding, Kind, Origin, Remediation, Severity, Subject
from shared.core.incidents import Incident
from shared.core.lifecycle import (
    ClusterScan,
    Coverage,
    Damping,
    Event,
    FindingState,
    HistoryEvent,
    StoredFinding,
)
from shared.jobs.ports import FindingRecords
from tests.azurite import azurite  # noqa: F401  (the session fixture)
from tests.fakes.storage import FakeFindingStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000c1"
OTHER_SUB = "00000000-0000-0000-0000-0000000000c2"
RG = "/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters"
CLUSTER = f"/subscriptions/{SUB}{RG}/aks1"
CLUSTER2 = f"/subscriptions/{SUB}{RG}/aks2"
CLUSTER3 = f"/subscriptions/{OTHER_SUB}{RG}/aks3"


class Store(FindingRecords, Protocol):
    """The port plus the reads both implementations offer."""

    def open_findings(
        self, *, subscription: str | None = None, cluster_id: str | None = None
    ) -> list[StoredFinding]: ...

    def history(self, cluster_id: str, start: datetime, end: datetime) -> list[HistoryEvent]: ...

    def incidents_open_at(self, cluster_id: str, moment: datetime) -> list[Incident]: ...

    def runs_between(self, start: datetime, end: datetime) -> list[ScanRun]: ...


MakeStore = Callable[..., Store]
_prefixes = itertools.count()


@pytest.fixture(params=["fake", "azurite"])
def make_store(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    """store(damping=..., incident_window=...) -> an empty store of the parametrized kind."""
    if request.param == "fake":
        yield FakeFindingStore
        return
    conn: str = request.getfixturevalue("azurite")
    service = TableServiceClient.from_connection_string(conn)
    made: list[FindingStore] = []

    def make(**kw: Any) -> Store:
        store = FindingStore(service, prefix=f"c{next(_prefixes)}x{id(made) % 10**6}", **kw)
        store.ensure_tables()
        made.append(store)
        return store

    yield make
    for store in made:
        for name in store.names.all():
            service.delete_table(name)


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()


def finding(n: int, *, cluster: str = CLUSTER, node: str = "", check: str = "nsg.inbound",
            kind: Kind = Kind.PROBLEM, pool: str = "") -> Finding:  # fmt: skip
    sub = cluster.split("/")[2]
    return Finding(
        check=check,
        cause=Cause.NSG,
        kind=kind,
        severity=Severity.CRITICAL,
        subject=Subject(sub, cluster, pool or f"pool{n}", node, "nsg-1"),
        title=f"NSG denies TCP 10250 to pool{n}",
        evidence=(f"rule deny-10250 priority {100 + n}",),
        remediation=Remediation("allow it", ("az network nsg rule create ...",), ()),
        key=f"rule-{n}",
        origin=Origin.ARTICLE,
    )


def complete(*findings: Finding, cluster: str = CLUSTER, scope: str = "scan") -> ClusterScan:
    return ClusterScan(cluster, Coverage.COMPLETE, findings, scope=scope)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def states(store: Store, cluster: str = CLUSTER) -> dict[str, FindingState]:
    return {s.fingerprint: s.state for s in store.current_findings(cluster)}


def test_new_findings_round_trip_and_are_listed_open(store: Store) -> None:
    f1, f2 = finding(1), finding(2, kind=Kind.COVERAGE)
    result = store.record_cluster(complete(f1, f2), run_id="run-1", now=T0)
    assert sorted((e.event, e.fingerprint) for e in result.flips) == sorted(
        [(Event.NEW, f1.fingerprint), (Event.NEW, f2.fingerprint)]
    )
    assert (result.cluster_id, result.run_id, result.coverage) == (
        CLUSTER,
        "run-1",
        Coverage.COMPLETE,
    )
    assert result.open_count == 2 and result.held == () and result.duplicates == ()
    stored = {s.fingerprint: s for s in store.current_findings(CLUSTER)}
    assert [s.fingerprint for s in store.current_findings(CLUSTER)] == sorted(stored)
    for original in (f1, f2):
        back = stored[original.fingerprint]
        assert back.finding == original
        assert (back.finding.first_seen, back.finding.last_seen) == (T0, T0)
        assert (back.state, back.cluster_id, back.subscription) == (FindingState.OPEN, CLUSTER, SUB)
        assert (back.opened_at, back.resolved_at, back.reopen_count) == (T0, None, 0)
        assert (back.run_id, back.scope) == ("run-1", "scan")
    assert set(result.stored) == set(stored.values())
    assert {s.fingerprint for s in store.open_findings()} == {f1.fingerprint, f2.fingerprint}


def test_cluster_ids_are_case_insensitive(store: Store) -> None:
    f = finding(1)
    store.record_cluster(complete(f), run_id="r", now=T0)
    assert [s.fingerprint for s in store.current_findings(CLUSTER.upper())] == [f.fingerprint]


def test_open_findings_by_subscription_and_cluster(store: Store) -> None:
    a, b, c = finding(1), finding(2, cluster=CLUSTER2), finding(3, cluster=CLUSTER3)
    for f in (a, b, c):
        store.record_cluster(complete(f, cluster=f.subject.cluster), run_id="r", now=T0)
    assert {s.fingerprint for s in store.open_findings()} == {
        a.fingerprint,
        b.fingerprint,
        c.fingerprint,
    }
    assert {s.fingerprint for s in store.open_findings(subscription=SUB)} == {
        a.fingerprint,
        b.fingerprint,
    }
    assert [s.fingerprint for s in store.open_findings(subscription=SUB, cluster_id=CLUSTER2)] == [
        b.fingerprint
    ]
    assert store.open_findings(subscription=OTHER_SUB, cluster_id=CLUSTER) == []
    with pytest.raises(ValueError, match="subscription"):
        store.open_findings(cluster_id=CLUSTER)


def test_resolve_takes_two_complete_scans_and_a_return_reopens(store: Store) -> None:
    f, g = finding(1), finding(2)
    store.record_cluster(complete(f, g), run_id="r1", now=at(0))
    first = store.record_cluster(complete(g), run_id="r2", now=at(5))
    assert first.flips == () and first.open_count == 2
    (missed,) = [s for s in store.current_findings(CLUSTER) if s.fingerprint == f.fingerprint]
    assert (missed.state, missed.missed, missed.run_id) == (FindingState.OPEN, 1, "r2")
    assert missed.finding.last_seen == at(0)  # when it was last actually observed

    second = store.record_cluster(complete(g), run_id="r3", now=at(10))
    assert [(e.event, e.fingerprint) for e in second.flips] == [(Event.RESOLVED, f.fingerprint)]
    assert second.open_count == 1
    gone = store.current_findings(CLUSTER, state=FindingState.RESOLVED)
    assert [(s.fingerprint, s.resolved_at) for s in gone] == [(f.fingerprint, at(10))]
    assert {s.fingerprint for s in store.open_findings()} == {g.fingerprint}

    back = store.record_cluster(complete(f, g), run_id="r4", now=at(15))
    assert [(e.event, e.fingerprint) for e in back.flips] == [(Event.REOPENED, f.fingerprint)]
    (again,) = [s for s in store.current_findings(CLUSTER) if s.fingerprint == f.fingerprint]
    assert (again.state, again.reopen_count, again.opened_at) == (FindingState.OPEN, 1, at(15))
    assert again.finding.first_seen == at(0)  # how long it has really existed


def test_partial_and_failed_scans_hold_open_findings(store: Store) -> None:
    nsg, snat = finding(1), finding(2, check="snat.ports")
    store.record_cluster(complete(nsg, snat), run_id="r1", now=at(0))
    for minute in (5, 10):
        failed = ClusterScan(CLUSTER, Coverage.FAILED, (), reason="ARM said 503")
        result = store.record_cluster(failed, run_id=f"f{minute}", now=at(minute))
        assert result.flips == ()
        assert set(result.held) == {nsg.fingerprint, snat.fingerprint} and result.open_count == 2
    assert set(states(store).values()) == {FindingState.OPEN}
    held = [e for e in store.history(CLUSTER, at(0), at(60)) if e.event is Event.CLOSE_HELD]
    assert len(held) == 2 and "ARM said 503" in held[0].reason
    assert set(held[0].held) == {nsg.fingerprint, snat.fingerprint}

    # A partial scan that says which checks did not run resolves the others (after two).
    for minute in (15, 20):
        partial = ClusterScan(
            CLUSTER, Coverage.PARTIAL, (), reason="metrics unreadable", not_run=("snat",)
        )
        result = store.record_cluster(partial, run_id=f"p{minute}", now=at(minute))
        assert result.held == (snat.fingerprint,)
    assert states(store) == {
        nsg.fingerprint: FindingState.RESOLVED,
        snat.fingerprint: FindingState.OPEN,
    }


def test_an_inconclusive_result_holds_what_it_speaks_for(store: Store) -> None:
    f = finding(1, pool="apps")
    store.record_cluster(complete(f), run_id="r1", now=at(0))
    unsure = finding(9, pool="apps", kind=Kind.INCONCLUSIVE)
    for minute in (5, 10):
        result = store.record_cluster(complete(unsure), run_id=f"r{minute}", now=at(minute))
        assert f.fingerprint in result.held
    assert states(store)[f.fingerprint] is FindingState.OPEN


def test_only_the_owning_scope_resolves_a_finding(store: Store) -> None:
    probe = finding(1, node="aks-apps-0", check="iptables.input")
    store.record_cluster(complete(probe, scope="probe:deep:aks-apps-0"), run_id="p1", now=at(0))
    for minute in (5, 10, 15):
        assert store.record_cluster(complete(), run_id=f"s{minute}", now=at(minute)).flips == ()
    (row,) = store.current_findings(CLUSTER)
    assert (row.state, row.scope) == (FindingState.OPEN, "probe:deep:aks-apps-0")
    for minute in (20, 25):
        store.record_cluster(complete(scope="probe:deep:aks-apps-0"), run_id="p", now=at(minute))
    assert states(store) == {probe.fingerprint: FindingState.RESOLVED}


def test_a_retired_scope_resolves_at_once(store: Store) -> None:
    f = finding(1, node="aks-apps-3")
    store.record_cluster(complete(f, scope="probe:deep:aks-apps-3"), run_id="p1", now=at(0))
    gone = ClusterScan(CLUSTER, Coverage.COMPLETE, (), scope="probe:deep:aks-apps-3", retired=True)
    result = store.record_cluster(gone, run_id="p2", now=at(5))
    assert [e.event for e in result.flips] == [Event.RESOLVED]


def test_open_after_damps_opening(make_store: MakeStore) -> None:
    store = make_store(damping=Damping(open_after=2, resolve_after=1))
    f = finding(1)
    first = store.record_cluster(complete(f), run_id="r1", now=at(0))
    assert first.flips == () and first.open_count == 0
    assert [s.state for s in store.current_findings(CLUSTER)] == [FindingState.PENDING]
    assert store.current_findings(CLUSTER, state=FindingState.OPEN) == []
    assert store.open_findings() == []
    second = store.record_cluster(complete(f), run_id="r2", now=at(5))
    assert [e.event for e in second.flips] == [Event.NEW]
    (row,) = store.current_findings(CLUSTER, state=FindingState.OPEN)
    assert row.opened_at == at(5) and row.finding.first_seen == at(0)
    # RESOLVE_AFTER=1: one complete scan without it resolves it
    assert [e.event for e in store.record_cluster(complete(), run_id="r3", now=at(10)).flips] == [
        Event.RESOLVED
    ]
    # a broken streak starts again
    store.record_cluster(complete(f), run_id="r4", now=at(15))
    store.record_cluster(complete(), run_id="r5", now=at(20))
    assert store.record_cluster(complete(f), run_id="r6", now=at(25)).flips == ()


def test_duplicates_are_reported_and_the_first_kept(store: Store) -> None:
    f = finding(1)
    twin = replace(f, title="again")  # same fingerprint: titles are not part of it
    result = store.record_cluster(complete(f, twin), run_id="r1", now=T0)
    assert result.duplicates == (f.fingerprint,)
    assert [s.finding.title for s in store.current_findings(CLUSTER)] == [f.title]


def test_history_holds_the_flips_in_time_order(store: Store) -> None:
    f = finding(1)
    store.record_cluster(complete(f), run_id="r1", now=at(0))
    store.record_cluster(complete(), run_id="r2", now=at(5))
    store.record_cluster(complete(), run_id="r3", now=at(10))
    store.record_cluster(complete(f), run_id="r4", now=at(15))
    events = store.history(CLUSTER, at(0), at(60))
    assert [(e.event, e.at, e.run_id) for e in events] == [
        (Event.NEW, at(0), "r1"),
        (Event.RESOLVED, at(10), "r3"),
        (Event.REOPENED, at(15), "r4"),
    ]
    assert all(e.fingerprint == f.fingerprint and e.finding == f for e in events)
    assert [e.event for e in store.history(CLUSTER, at(5), at(15))] == [Event.RESOLVED]
    assert store.history(CLUSTER2, at(0), at(60)) == []


def test_incidents_group_a_nodes_findings_and_a_quick_reopen_continues_one(
    make_store: MakeStore,
) -> None:
    store = make_store(damping=Damping(resolve_after=1), incident_window=timedelta(hours=1))
    a = finding(1, node="aks-apps-0")
    b = finding(2, node="aks-apps-0", check="iptables.input")
    other = finding(3, node="aks-apps-1")
    first = store.record_cluster(complete(a, other), run_id="r1", now=at(0))
    assert len(first.incidents) == 2
    node0 = first.incident_of(a.fingerprint)
    assert node0 is not None and node0.group == "node:aks-apps-0" and node0.is_open
    assert node0.opened_at == at(0) and node0.findings == (a.fingerprint,)

    second = store.record_cluster(complete(a, b, other), run_id="r2", now=at(5))
    joined = second.incident_of(b.fingerprint)
    assert joined is not None and joined.incident_id == node0.incident_id
    assert set(joined.findings) == {a.fingerprint, b.fingerprint}

    third = store.record_cluster(complete(other), run_id="r3", now=at(10))
    (closed,) = [i for i in third.incidents if i.incident_id == node0.incident_id]
    assert (closed.resolved_at, closed.open_findings) == (at(10), ())

    fourth = store.record_cluster(complete(a, other), run_id="r4", now=at(40))
    continued = fourth.incident_of(a.fingerprint)
    assert continued is not None and continued.incident_id == node0.incident_id
    assert (continued.reopen_count, continued.resolved_at) == (1, None)

    ids = lambda moment: [i.incident_id for i in store.incidents_open_at(CLUSTER, moment)]  # noqa: E731
    assert node0.incident_id in ids(at(0)) and node0.incident_id in ids(at(20))  # spans the gap
    assert len(ids(at(20))) == 2 and ids(T0 - timedelta(minutes=1)) == []

    store.record_cluster(complete(other), run_id="r5", now=at(50))
    late = store.record_cluster(complete(a, other), run_id="r6", now=at(200))  # window passed
    fresh = late.incident_of(a.fingerprint)
    assert fresh is not None and fresh.incident_id != node0.incident_id
    assert fresh.reopen_count == 0 and fresh.opened_at == at(200)
    assert node0.incident_id not in ids(at(100)) and fresh.incident_id in ids(at(200))


def test_runs_are_saved_replaced_and_listed_by_start(store: Store) -> None:
    run = ScanRun("run-1", at(0), subscriptions=(SUB,))
    store.save_run(run)
    store.save_run(ScanRun("run-0", at(-30)))
    done = ScanRun(
        "run-1", at(0), finished=at(3), status=RunStatus.COMPLETE, subscriptions=(SUB,),
        clusters_scanned=2, arm_calls=7, finding_counts={"open": 1, "new": 1},
        errors=("GET https://management.azure.com/x?sig=abc123secret: 500",),
    )  # fmt: skip
    store.save_run(done)
    runs = store.runs_between(at(-60), at(60))
    assert [(r.run_id, r.status) for r in runs] == [
        ("run-0", RunStatus.RUNNING),
        ("run-1", RunStatus.COMPLETE),
    ]
    back = runs[1]
    assert (back.finished, back.clusters_scanned, back.arm_calls) == (at(3), 2, 7)
    assert dict(back.finding_counts) == {"open": 1, "new": 1}
    (error,) = back.errors  # stored without the secret
    assert error.startswith("GET https://management.azure.com/x?sig=***")
    assert [r.run_id for r in store.runs_between(at(-10), at(60))] == ["run-1"]


def test_a_naive_now_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match=r"timezone-aware|naive"):
        store.record_cluster(complete(finding(1)), run_id="r", now=datetime(2024, 5, 1))


def test_oversized_text_is_cut_and_secrets_masked_as_stored(store: Store) -> None:
    huge = tuple("é" * 5000 + f" line {i}" for i in range(20))
    big = replace(
        finding(1),
        evidence=("GET https://x.example/y?sig=abc123secretvalue", *huge),
        title="T" * 20_000,
    )
    result = store.record_cluster(complete(big), run_id="r1", now=T0)
    assert [e.event for e in result.flips] == [Event.NEW]
    (back,) = store.current_findings(CLUSTER)
    assert back.truncated and back.fingerprint == big.fingerprint
    assert TRUNCATION_MARK in back.finding.title and TRUNCATION_MARK in back.finding.evidence[-1]
    assert "abc123secretvalue" not in back.finding.evidence[0]
    assert back.finding.evidence[0].startswith("GET https://x.example/y?sig=***")
    (event,) = store.history(CLUSTER, T0, T0 + timedelta(seconds=1))
    assert event.finding is not None and TRUNCATION_MARK in event.finding.title
    # the next scan compares by the stored fingerprint, not the cut text: no flip
    again = store.record_cluster(complete(big), run_id="r2", now=T0 + timedelta(minutes=5))
    assert again.flips == ()
