"""FindingStore against a real Azurite: round trips, flips, key-range queries, batching, paging."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tables import (
    Coverage,
    Event,
    FindingState,
    FindingStore,
    Observation,
    RunStatus,
    ScanRun,
    TableQuery,
    cluster_key,
)
from shared.adapters.tables.limits import MAX_STRING_BYTES, TRUNCATION_MARK, utf16_size
from shared.analysis.findings import Cause, Finding, Kind, Origin, Remediation, Severity, Subject
from shared.core.lifecycle import Damping
from tests.azurite import azurite  # noqa: F401  (the session fixture)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-000000000001"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1"


@dataclass
class Recorder:
    """Every HTTP request the SDK sends (a hook handed to the client, nothing patched)."""

    requests: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, request: Any) -> None:
        http = request.http_request
        self.requests.append((http.method, http.url))

    def clear(self) -> None:
        self.requests.clear()

    def filters(self) -> list[str]:
        return [
            parse_qs(urlsplit(url).query).get("$filter", [""])[0]
            for method, url in self.requests
            if method == "GET"
        ]

    def gets(self) -> list[dict[str, list[str]]]:
        return [parse_qs(urlsplit(u).query) for m, u in self.requests if m == "GET"]

    def batches(self) -> int:
        return sum(1 for m, u in self.requests if m == "POST" and u.endswith("/$batch"))


_counter = iter(range(10**6))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def store(azurite: str, recorder: Recorder) -> Iterator[FindingStore]:  # noqa: F811
    service = TableServiceClient.from_connection_string(azurite, raw_request_hook=recorder)
    s = FindingStore(service, prefix=f"t{next(_counter)}x{id(recorder) % 10**6}")
    s.ensure_tables()
    recorder.clear()
    yield s
    for name in s.names.all():
        service.delete_table(name)


def finding(n: int, cluster: str = CLUSTER, **kw: Any) -> Finding:
    base: dict[str, Any] = {
        "check": "nsg.inbound",
        "cause": Cause.NSG,
        "kind": Kind.PROBLEM,
        "severity": Severity.CRITICAL,
        "subject": Subject(SUB, cluster, f"pool{n}", "", "nsg-1"),
        "title": f"NSG denies TCP 10250 to pool{n}",
        "evidence": (f"rule deny-10250 priority {100 + n}", "ünïcode ✓"),
        "remediation": Remediation("allow it", ("az network nsg rule create ...",), ("recreate",)),
        "key": f"rule-{n}",
        "origin": Origin.ARTICLE,
    }
    base.update(kw)
    return Finding(**base)


def complete(*findings: Finding, cluster: str = CLUSTER) -> Observation:
    return Observation(cluster, Coverage.COMPLETE, findings, subscription=SUB)


def test_round_trip_of_findings(store: FindingStore) -> None:
    f1, f2 = finding(1), finding(2, cause=None, remediation=None, kind=Kind.COVERAGE)
    result = store.record_cluster(complete(f1, f2), run_id="run-1", now=T0)
    assert sorted(e.event for e in result.flips) == [Event.NEW, Event.NEW]
    stored = {s.fingerprint: s for s in store.current_findings(CLUSTER)}
    assert set(stored) == {f1.fingerprint, f2.fingerprint}
    for original in (f1, f2):
        back = stored[original.fingerprint]
        assert back.finding == original
        assert back.finding.fingerprint == original.fingerprint
        assert back.finding.remediation == original.remediation
        assert back.finding.evidence == original.evidence
        assert (back.finding.first_seen, back.finding.last_seen) == (T0, T0)
        assert type(back.finding.first_seen) is datetime  # no SDK subclass escapes
        assert (back.state, back.cluster_id, back.subscription) == (FindingState.OPEN, CLUSTER, SUB)
        assert back.run_id == "run-1"
    opened = store.open_findings()
    assert {s.fingerprint for s in opened} == {f1.fingerprint, f2.fingerprint}


def test_first_seen_kept_across_scans(store: FindingStore) -> None:
    f1 = finding(1)
    store.record_cluster(complete(f1), run_id="r1", now=T0)
    later = T0 + timedelta(minutes=5)
    result = store.record_cluster(
        complete(f1.__class__(**{**vars_of(f1), "title": "reworded"})), run_id="r2", now=later
    )
    assert result.flips == ()
    (s,) = store.current_findings(CLUSTER)
    assert (s.finding.first_seen, s.finding.last_seen, s.opened_at) == (T0, later, T0)
    assert s.finding.title == "reworded"
    (o,) = store.open_findings(subscription=SUB)
    assert o.finding.last_seen == later  # the index is refreshed too


def vars_of(f: Finding) -> dict[str, Any]:
    return {n: getattr(f, n) for n in f.__dataclass_fields__}


def test_resolve_after_two_complete_scans(store: FindingStore) -> None:
    f1, f2 = finding(1), finding(2)
    store.record_cluster(complete(f1, f2), run_id="r1", now=T0)
    # RESOLVE_AFTER=2 (the default): the first clean scan only counts towards resolving
    first = store.record_cluster(complete(f1), run_id="r2", now=T0 + timedelta(minutes=2))
    assert first.flips == () and first.open_count == 2
    assert {s.fingerprint: s.missed for s in store.open_findings()} == {
        f1.fingerprint: 0,
        f2.fingerprint: 1,
    }
    t1 = T0 + timedelta(minutes=5)
    result = store.record_cluster(complete(f1), run_id="r3", now=t1)
    assert [(e.event, e.fingerprint) for e in result.flips] == [(Event.RESOLVED, f2.fingerprint)]
    assert result.open_count == 1
    resolved = store.current_findings(CLUSTER, state=FindingState.RESOLVED)
    assert [(s.fingerprint, s.resolved_at, s.finding.last_seen) for s in resolved] == [
        (f2.fingerprint, t1, T0)
    ]
    assert [s.fingerprint for s in store.open_findings()] == [f1.fingerprint]
    events = store.history(CLUSTER, T0, t1 + timedelta(seconds=1))
    assert [e.event for e in events if e.fingerprint == f2.fingerprint] == [
        Event.NEW,
        Event.RESOLVED,
    ]


@pytest.mark.parametrize("coverage", [Coverage.FAILED, Coverage.PARTIAL])
def test_no_resolve_on_failed_or_partial_scan(store: FindingStore, coverage: Coverage) -> None:
    f1, f2 = finding(1), finding(2)
    store.record_cluster(complete(f1, f2), run_id="r1", now=T0)
    t1 = T0 + timedelta(minutes=5)
    scan = Observation(
        CLUSTER, coverage, (), subscription=SUB, reason="ARM returned 500 for scale sets"
    )
    result = store.record_cluster(scan, run_id="r2", now=t1)
    assert result.flips == ()
    assert set(result.held) == {f1.fingerprint, f2.fingerprint}
    assert result.open_count == 2
    assert {s.state for s in store.current_findings(CLUSTER)} == {FindingState.OPEN}
    assert len(store.open_findings()) == 2
    (held,) = [e for e in store.history(CLUSTER, t1, t1 + timedelta(seconds=1))]
    assert held.event is Event.CLOSE_HELD
    assert held.reason == f"{coverage.value} scan: ARM returned 500 for scale sets"
    assert set(held.held) == {f1.fingerprint, f2.fingerprint}
    assert held.run_id == "r2"


def test_reopen(store: FindingStore) -> None:
    f1 = finding(1)
    store.record_cluster(complete(f1), run_id="r1", now=T0)
    store.record_cluster(complete(), run_id="r2a", now=T0 + timedelta(minutes=2))
    store.record_cluster(complete(), run_id="r2", now=T0 + timedelta(minutes=5))
    assert store.open_findings() == []
    t2 = T0 + timedelta(minutes=10)
    result = store.record_cluster(complete(f1), run_id="r3", now=t2)
    assert [e.event for e in result.flips] == [Event.REOPENED]
    (s,) = store.current_findings(CLUSTER)
    assert (s.state, s.reopen_count, s.resolved_at, s.opened_at) == (FindingState.OPEN, 1, None, t2)
    assert s.finding.first_seen == T0
    assert [o.fingerprint for o in store.open_findings()] == [f1.fingerprint]
    kinds = [e.event for e in store.history(CLUSTER, T0, t2 + timedelta(seconds=1))]
    assert kinds == [Event.NEW, Event.RESOLVED, Event.REOPENED]


def test_history_range_is_exactly_the_window_from_one_partition(
    store: FindingStore, recorder: Recorder
) -> None:
    other = CLUSTER + "-other"
    f1 = finding(1)
    store.damping = Damping(resolve_after=1)  # a flip per scan, to fill the window
    times = [T0 + timedelta(minutes=5 * i) for i in range(6)]
    for i, t in enumerate(times):  # alternate: new, resolved, reopened, resolved, ...
        store.record_cluster(complete(*((f1,) if i % 2 == 0 else ())), run_id=f"r{i}", now=t)
        store.record_cluster(
            complete(finding(9, cluster=other), cluster=other), run_id=f"r{i}", now=t
        )
    recorder.clear()
    window = store.history(CLUSTER, times[1], times[4])
    assert [e.at for e in window] == times[1:4]  # start included, end excluded
    assert [e.event for e in window] == [Event.RESOLVED, Event.REOPENED, Event.RESOLVED]
    assert {e.cluster_id for e in window} == {CLUSTER}
    # the request on the wire is a key range of one partition, values quoted by the SDK
    (sent,) = recorder.filters()
    pk = cluster_key(CLUSTER)
    assert sent == (
        f"PartitionKey eq '{pk}' and RowKey ge '2024-05-01T12:05:00.000000Z' "
        "and RowKey lt '2024-05-01T12:20:00.000000Z'"
    )
    raw = list(store.query(TableQuery(store.names.history, "PartitionKey eq @pk", {"pk": pk})))
    assert {e["PartitionKey"] for e in raw} == {pk}
    assert len(raw) == 6


def test_more_than_100_findings_in_one_partition_are_batched(
    store: FindingStore, recorder: Recorder
) -> None:
    findings = tuple(finding(i) for i in range(250))
    result = store.record_cluster(complete(*findings), run_id="r1", now=T0)
    per_table = math.ceil(250 / 100)
    # history (250 NEW rows), open index, incidents (one per pool), findings: 3 batches each
    assert result.transactions == 4 * per_table
    assert recorder.batches() == 4 * per_table
    assert len(result.incidents) == 250
    assert len(store.current_findings(CLUSTER)) == 250
    assert len(result.flips) == 250


def test_more_than_1000_results_are_paged(store: FindingStore, recorder: Recorder) -> None:
    n = 1205
    store.record_cluster(complete(*(finding(i) for i in range(n))), run_id="r1", now=T0)
    recorder.clear()
    assert len({s.fingerprint for s in store.current_findings(CLUSTER)}) == n
    gets = recorder.gets()
    assert len(gets) == 2
    assert "NextRowKey" not in gets[0]
    assert "NextRowKey" in gets[1]  # the second page follows the continuation token
    assert all(g.get("$top") == ["1000"] for g in gets)
    recorder.clear()
    assert len(store.open_findings(subscription=SUB, cluster_id=CLUSTER)) == n
    assert len(recorder.gets()) == 2


HOSTILE = [
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/x/managedClusters/it's",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/x/managedClusters/' or ''='",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/x/managedClusters/@pk",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/x/managedClusters/ünï😀 #?\\%",
]


def test_hostile_ids_do_not_break_filters(store: FindingStore) -> None:
    for i, cid in enumerate(HOSTILE):
        store.record_cluster(complete(finding(i, cluster=cid), cluster=cid), run_id="r'@1", now=T0)
    for i, cid in enumerate(HOSTILE):
        (s,) = store.current_findings(cid)
        assert (s.cluster_id, s.finding.subject.node_pool) == (cid, f"pool{i}")
        assert store.current_findings(cid.upper())[0].fingerprint == s.fingerprint
        assert [h.cluster_id for h in store.history(cid, T0, T0 + timedelta(1))] == [cid]
        assert [o.cluster_id for o in store.open_findings(subscription=SUB, cluster_id=cid)] == [
            cid
        ]
    assert len(store.open_findings(subscription=SUB)) == len(HOSTILE)
    assert store.open_findings(subscription="' or ''='") == []
    # a property filter with a hostile value: the SDK's parameter quoting, end to end
    for cid in HOSTILE:
        q = TableQuery(
            store.names.open,
            "PartitionKey eq @pk and cluster_id eq @cid",
            {"pk": "open", "cid": cid},
        )
        assert [e["cluster_id"] for e in store.query(q)] == [cid]


def test_scan_runs_are_recorded_and_queried_by_time(store: FindingStore) -> None:
    starts = [datetime(2024, 1, 31, 23, 50, tzinfo=UTC) + timedelta(days=10 * i) for i in range(5)]
    for i, start in enumerate(starts):
        store.save_run(ScanRun(f"run/{i}'#?", start, subscriptions=(SUB,)))
    finished = ScanRun(
        "run/1'#?",
        starts[1],
        starts[1] + timedelta(minutes=2),
        RunStatus.PARTIAL,
        (SUB, "sub-2"),
        clusters_scanned=7,
        clusters_failed=(HOSTILE[0],),
        arm_calls=123,
        arm_calls_by_operation={"managedClusters.list": 2, "virtualMachineScaleSetVMs.list": 14},
        finding_counts={"open": 4, "new": 1, "resolved": 2},
        errors=("GET https://management.azure.com/x?sig=abc123secret: 500",),
    )
    store.save_run(finished)
    window = store.runs_between(starts[1], starts[4])  # spans three month partitions
    assert [r.run_id for r in window] == ["run/1'#?", "run/2'#?", "run/3'#?"]
    first = window[0]
    assert first.status is RunStatus.PARTIAL
    assert first.finished == finished.finished
    assert (first.arm_calls, dict(first.arm_calls_by_operation)) == (
        123,
        dict(finished.arm_calls_by_operation),
    )
    assert (first.clusters_scanned, first.clusters_failed) == (7, (HOSTILE[0],))
    assert dict(first.finding_counts) == {"open": 4, "new": 1, "resolved": 2}
    (error,) = first.errors  # stored without the secret
    assert "abc123secret" not in error
    assert error.startswith("GET https://management.azure.com/x?sig=***")
    assert window[1].status is RunStatus.RUNNING
    assert store.runs_between(starts[4] + timedelta(seconds=1), starts[4] + timedelta(days=1)) == []


def test_oversized_findings_are_truncated_and_accepted(
    store: FindingStore, recorder: Recorder
) -> None:
    huge = tuple("é" * 5000 + f" line {i}" for i in range(20))  # 100 K characters each
    findings = tuple(finding(i, evidence=huge, title="T" * 20_000) for i in range(40))
    result = store.record_cluster(complete(*findings), run_id="r1", now=T0)
    # evidence is cut to 64 KiB (UTF-16), up to ~200 KB as escaped JSON on the wire: 40
    # of them (fewer than 100 operations) cannot go in one 4 MiB batch per table
    assert result.transactions >= 6
    assert recorder.batches() == result.transactions
    stored = store.current_findings(CLUSTER)
    assert len(stored) == 40
    for s in stored:
        assert s.truncated
        assert TRUNCATION_MARK in s.finding.evidence[-1]
        assert TRUNCATION_MARK in s.finding.title
        assert s.finding.evidence[0] == huge[0]
    raw = next(
        iter(
            store.query(
                TableQuery(
                    store.names.findings, "PartitionKey eq @pk", {"pk": cluster_key(CLUSTER)}
                )
            )
        )
    )
    assert all(utf16_size(v) <= MAX_STRING_BYTES for v in raw.values() if isinstance(v, str))


def on_node(n: int, node: str = "aks-nodes-vmss000001", **kw: Any) -> Finding:
    return finding(n, subject=Subject(SUB, CLUSTER, "nodes", node, ""), **kw)


def test_incidents_open_at_answer_from_the_incidents_table_only(
    store: FindingStore, recorder: Recorder
) -> None:
    a, b = on_node(1), on_node(2, check="node.ruleset")
    minute = timedelta(minutes=1)
    t = [T0 + 5 * i * minute for i in range(8)]
    store.record_cluster(complete(a), run_id="r0", now=t[0])
    second = store.record_cluster(complete(a, b), run_id="r1", now=t[1])
    (incident,) = second.incidents  # b joins the node's incident
    (flip,) = second.flips
    assert second.incident_of(flip.fingerprint) == incident and second.incident_of("x") is None
    assert (incident.opened_at, set(incident.open_findings)) == (
        t[0],
        {a.fingerprint, b.fingerprint},
    )
    store.record_cluster(complete(b), run_id="r2", now=t[2])  # a counts towards resolving
    store.record_cluster(complete(b), run_id="r3", now=t[3])  # a resolves; b keeps it open
    store.record_cluster(complete(), run_id="r4", now=t[4])
    closed = store.record_cluster(complete(), run_id="r5", now=t[5])  # b resolves: so does it
    (done,) = closed.incidents
    assert (done.incident_id, done.resolved_at) == (incident.incident_id, t[5])
    # The same node 40 minutes later: within the hour (the window), the incident continues.
    back = store.record_cluster(complete(a), run_id="r6", now=t[5] + 40 * minute)
    assert [(i.incident_id, i.reopen_count) for i in back.incidents] == [(incident.incident_id, 1)]
    store.record_cluster(complete(), run_id="r7", now=t[5] + 45 * minute)
    store.record_cluster(complete(), run_id="r8", now=t[5] + 50 * minute)
    later = store.record_cluster(complete(a), run_id="r9", now=t[5] + 200 * minute)
    (fresh,) = later.incidents
    assert fresh.incident_id != incident.incident_id and fresh.opened_at == t[5] + 200 * minute

    recorder.clear()
    ids = lambda moment: [i.incident_id for i in store.incidents_open_at(CLUSTER, moment)]  # noqa: E731
    assert ids(t[0] - minute) == []
    assert ids(t[0]) == [incident.incident_id]  # opened exactly at T: open at T
    assert ids(t[4]) == [incident.incident_id]
    # the reopen continued it: one incident from its opening to its last resolution
    assert ids(t[5]) == ids(t[5] + 41 * minute) == [incident.incident_id]
    assert ids(t[5] + 50 * minute - timedelta(microseconds=1)) == [incident.incident_id]
    assert ids(t[5] + 50 * minute) == []  # resolved exactly at T: not open at T
    assert ids(t[5] + 10 * 24 * 60 * minute) == [fresh.incident_id]  # still open, long after
    # each question is one query of the cluster's incidents partition, values as parameters
    sent = recorder.filters()
    assert len(sent) == 8
    pk = cluster_key(CLUSTER)
    assert sent[1] == (
        f"PartitionKey eq '{pk}' and RowKey lt '2024-05-01T12:00:00.000000Z`' "
        "and until gt '2024-05-01T12:00:00.000000Z'"
    )
    assert not any(store.names.history in u for _, u in recorder.requests)
