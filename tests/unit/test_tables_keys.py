"""Keys, queries, limits and the write plan of the table storage (pure, no Azurite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.adapters.tables import Coverage, Event, FindingState, Observation, TableNames
from shared.adapters.tables.entities import (
    history_from_entity,
    run_from_entity,
    run_properties,
    stored_from_entity,
    stored_properties,
)
from shared.adapters.tables.keys import (
    cluster_key,
    cluster_query,
    history_query,
    history_row_key,
    open_query,
    open_row_key,
    run_row_key,
    runs_query,
    subscription_of,
    time_key,
)
from shared.adapters.tables.limits import (
    MAX_STRING_BYTES,
    TRUNCATION_MARK,
    fit_json_list,
    fit_json_mapping,
    fit_text,
    transactions,
    utf16_size,
)
from shared.adapters.tables.model import RunStatus, ScanRun
from shared.adapters.tables.plan import plan_cluster_write
from shared.analysis.findings import Cause, Finding, Kind, Remediation, Severity, Subject
from shared.core.lifecycle import Damping
from shared.errors import InputError
from shared.redaction import redact

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CLUSTER = (
    "/subscriptions/SUB-1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a"
)
NAMES = TableNames("tw")


def finding(n: int = 1, **kw: object) -> Finding:
    base: dict[str, object] = {
        "check": "nsg.inbound",
        "cause": Cause.NSG,
        "kind": Kind.PROBLEM,
        "severity": Severity.CRITICAL,
        "subject": Subject(subscription="sub-1", cluster=CLUSTER, node_pool=f"pool{n}"),
        "title": f"NSG denies 10250 to pool{n}",
        "evidence": ("rule deny-all priority 100",),
        "remediation": Remediation("allow it", ("az network nsg rule create ...",), ("note",)),
    }
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


# ---- keys ------------------------------------------------------------------------------


def test_cluster_key_is_case_insensitive_hex_and_key_safe() -> None:
    key = cluster_key(CLUSTER)
    assert key == cluster_key(CLUSTER.upper()) == cluster_key(f"  {CLUSTER.lower()} ")
    assert len(key) == 32
    assert set(key) <= set("0123456789abcdef")
    assert cluster_key(CLUSTER + "b") != key
    with pytest.raises(ValueError, match="empty"):
        cluster_key("  ")


def test_time_key_is_fixed_width_utc_and_sorts_like_time() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert time_key(datetime(2024, 5, 1, 14, 0, tzinfo=plus2)) == "2024-05-01T12:00:00.000000Z"
    assert time_key(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"
    times = [T0 + timedelta(microseconds=7**i) for i in range(12)]
    assert sorted(times, key=time_key) == sorted(times)
    with pytest.raises(ValueError, match="naive"):
        time_key(datetime(2024, 5, 1))


def test_subscription_of_arm_ids() -> None:
    assert subscription_of(CLUSTER) == "sub-1"
    assert subscription_of("/SUBSCRIPTIONS/X") == "x"
    assert subscription_of("not-an-arm-id") == ""


def test_run_row_key_escapes_forbidden_key_characters() -> None:
    rk = run_row_key(T0, "a/b\\c#d?e'f\x01ü")
    assert rk.startswith("2024-05-01T12:00:00.000000Z_")
    assert not set("/\\#?'\x01ü") & set(rk)
    assert run_row_key(T0, "a/b") != run_row_key(T0, "a%2Fb")  # the escaping is injective
    with pytest.raises(ValueError, match="too long"):
        run_row_key(T0, "x" * 600)


def test_table_names_validated() -> None:
    assert NAMES.all() == (
        "twRuns", "twFindings", "twFindingHistory", "twOpenFindings", "twIncidents",
    )  # fmt: skip
    for bad in ("", "1abc", "a-b", "x" * 50):
        with pytest.raises(ValueError, match="table prefix"):
            TableNames(bad)


# ---- queries: exact filters, parameters only ------------------------------------------


def test_history_query_is_one_partition_key_range() -> None:
    q = history_query(NAMES, CLUSTER, T0, T0 + timedelta(hours=1))
    assert q.table == "twFindingHistory"
    assert q.filter == "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
    assert q.parameters == {
        "pk": cluster_key(CLUSTER),
        "lo": "2024-05-01T12:00:00.000000Z",
        "hi": "2024-05-01T13:00:00.000000Z",
    }
    # an event exactly at the start is in the window, one exactly at the end is not
    assert q.parameters["lo"] <= history_row_key(T0, "f" * 32) < q.parameters["hi"]
    assert not history_row_key(T0 + timedelta(hours=1), "0" * 32) < q.parameters["hi"]
    with pytest.raises(ValueError, match="before it starts"):
        history_query(NAMES, CLUSTER, T0, T0 - timedelta(seconds=1))


def test_no_value_is_formatted_into_a_filter() -> None:
    hostile = "it's @pk ' or ''='"
    queries = [
        cluster_query(NAMES, hostile, FindingState.OPEN),
        open_query(NAMES, hostile, hostile),
        history_query(NAMES, hostile, T0, T0),
        runs_query(NAMES, T0, T0 + timedelta(days=70)),
    ]
    for q in queries:
        assert "'" not in q.filter
        assert hostile not in q.filter
        # every @name in the filter has a parameter, separated by single spaces
        names = {w[1:] for w in q.filter.split(" ") if w.startswith("@")}
        assert names == set(q.parameters)
        assert "  " not in q.filter


def test_open_query_prefix_range_holds_exactly_its_keys() -> None:
    q = open_query(NAMES, "sub-1", CLUSTER)
    inside = open_row_key("SUB-1", CLUSTER, "f" * 32)
    other_cluster = open_row_key("sub-1", CLUSTER + "x", "0" * 32)
    other_sub = open_row_key("sub-2", CLUSTER, "0" * 32)
    lo, hi = q.parameters["lo"], q.parameters["hi"]
    assert lo <= inside < hi
    assert not lo <= other_cluster < hi
    assert not lo <= other_sub < hi
    assert open_query(NAMES).filter == "PartitionKey eq @pk"
    with pytest.raises(ValueError, match="subscription"):
        open_query(NAMES, None, CLUSTER)


def test_runs_query_spans_month_partitions() -> None:
    q = runs_query(NAMES, datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
    assert q.filter.startswith("PartitionKey ge @plo and PartitionKey le @phi")
    assert (q.parameters["plo"], q.parameters["phi"]) == ("2024-01", "2024-03")


# ---- limits ---------------------------------------------------------------------------


def test_fit_text_cuts_with_marker_within_limit() -> None:
    assert fit_text("short") == ("short", False)
    text = "ü" * 40_000 + "😀" * 10_000
    out, cut = fit_text(text)
    assert cut
    assert utf16_size(out) <= MAX_STRING_BYTES
    assert TRUNCATION_MARK in out
    assert out.startswith("ü" * 1000)
    out.encode("utf-8")  # no lone surrogate left by the cut


def test_fit_json_list_stays_valid_json_and_marks_drops() -> None:
    lines = [f"line {i} " + "x" * 100 for i in range(2000)]
    out, cut = fit_json_list(lines)
    assert cut
    assert utf16_size(out) <= MAX_STRING_BYTES
    items = json.loads(out)
    assert items[0] == lines[0]
    assert TRUNCATION_MARK in items[-1]
    assert fit_json_list(["a", "b"]) == ('["a", "b"]', False)


def test_fit_json_mapping_keeps_largest_counters() -> None:
    counts = {f"op{i:05d}" + "y" * 200: i for i in range(1000)}
    out, cut = fit_json_mapping(counts)
    assert cut
    kept = json.loads(out)
    assert utf16_size(out) <= MAX_STRING_BYTES
    assert max(counts, key=counts.__getitem__) in kept
    assert "op00000" + "y" * 200 not in kept


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0S2V5;", "c2VjcmV0S2V5"),
        ("https://x.logic.azure.com/workflows/1?api-version=1&sig=AbCdEf123", "AbCdEf123"),
        ("Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payload", "eyJ0eXAiOiJKV1Qi"),
        ("https://user:hunter22@example.com/x", "hunter22"),
        ("client_secret=shh-123 other", "shh-123"),
    ],
)
def test_redact_masks_credentials(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "***" in out


def test_transactions_split_by_count_size_and_partition() -> None:
    small = [{"PartitionKey": "a", "RowKey": f"{i:04d}"} for i in range(250)]
    batches = transactions(small)
    assert [len(b) for b in batches] == [100, 100, 50]
    big = [{"PartitionKey": "b", "RowKey": str(i), "x": "z" * 60_000} for i in range(150)]
    sized = transactions(big)
    assert len(sized) > 2  # 150 x ~60 KB does not fit 4 MiB in two batches
    assert all(sum(len(json.dumps(e)) for e in b) < 4 * 1024 * 1024 for b in sized)
    mixed = transactions([*small[:3], *big[:2]])
    assert [{e["PartitionKey"] for e in b} for b in mixed] == [{"a"}, {"b"}]


# ---- plan: flips, first_seen, resolve only on complete scans ---------------------------


def _stored(scan: Observation, now: datetime, existing: dict | None = None) -> dict:  # type: ignore[type-arg]
    plan = plan_cluster_write(scan, existing or {}, run_id="r", now=now)
    return {s.fingerprint: s for s in plan.stored}


def test_plan_new_then_open_keeps_first_seen() -> None:
    f1 = finding(1)
    first = plan_cluster_write(
        Observation(CLUSTER, Coverage.COMPLETE, (f1,)), {}, run_id="r1", now=T0
    )
    assert [e.event for e in first.flips] == [Event.NEW]
    later = T0 + timedelta(minutes=5)
    state = {s.fingerprint: s for s in first.stored}
    second = plan_cluster_write(
        Observation(CLUSTER, Coverage.COMPLETE, (f1,)), state, run_id="r2", now=later
    )
    assert second.flips == ()
    (s,) = second.stored
    assert (s.finding.first_seen, s.finding.last_seen, s.opened_at) == (T0, later, T0)
    assert second.history == ()


def test_plan_resolves_only_after_complete_scan_and_reopens() -> None:
    f1, f2 = finding(1), finding(2)
    state = _stored(Observation(CLUSTER, Coverage.COMPLETE, (f1, f2)), T0)
    t1 = T0 + timedelta(minutes=5)
    failed = plan_cluster_write(
        Observation(CLUSTER, Coverage.PARTIAL, (f1,), reason="scale set list failed"),
        state,
        run_id="r2",
        now=t1,
    )
    assert failed.flips == ()
    assert failed.held == (f2.fingerprint,)
    (held_row,) = failed.history
    assert held_row["event"] == "close_held"
    assert "scale set list failed" in held_row["reason"]
    assert failed.open_deletes == ()

    t2 = T0 + timedelta(minutes=10)
    # without damping (RESOLVE_AFTER=1): one complete scan resolves; damping: test_lifecycle.py
    done = plan_cluster_write(
        Observation(CLUSTER, Coverage.COMPLETE, (f1,)),
        state,
        run_id="r3",
        now=t2,
        damping=Damping(resolve_after=1),
    )
    assert [(e.event, e.fingerprint) for e in done.flips] == [(Event.RESOLVED, f2.fingerprint)]
    resolved = {s.fingerprint: s for s in done.stored}[f2.fingerprint]
    assert resolved.state is FindingState.RESOLVED
    assert resolved.resolved_at == t2
    assert resolved.finding.last_seen == T0  # last actually observed
    assert len(done.open_deletes) == 1

    t3 = T0 + timedelta(minutes=15)
    after = {s.fingerprint: s for s in done.stored}
    back = plan_cluster_write(
        Observation(CLUSTER, Coverage.COMPLETE, (f1, f2)), after, run_id="r4", now=t3
    )
    assert [e.event for e in back.flips] == [Event.REOPENED]
    reopened = {s.fingerprint: s for s in back.stored}[f2.fingerprint]
    assert (reopened.state, reopened.reopen_count, reopened.resolved_at) == (
        FindingState.OPEN,
        1,
        None,
    )
    assert (reopened.finding.first_seen, reopened.opened_at) == (T0, t3)


def test_plan_reports_duplicates_and_requires_reason() -> None:
    f1 = finding(1)
    plan = plan_cluster_write(
        Observation(
            CLUSTER, Coverage.COMPLETE, (f1, f1.__class__(**{**_fields(f1), "title": "x"}))
        ),
        {},
        run_id="r",
        now=T0,
    )
    assert plan.duplicates == (f1.fingerprint,)
    assert len(plan.stored) == 1
    assert plan.stored[0].finding.title == f1.title
    with pytest.raises(ValueError, match="needs a reason"):
        Observation(CLUSTER, Coverage.FAILED)
    with pytest.raises(ValueError, match="naive"):
        plan_cluster_write(
            Observation(CLUSTER, Coverage.COMPLETE), {}, run_id="r", now=datetime(2024, 1, 1)
        )


def _fields(f: Finding) -> dict[str, object]:
    return {name: getattr(f, name) for name in f.__dataclass_fields__}


# ---- entities ---------------------------------------------------------------------------


def test_stored_entity_round_trip_and_truncation() -> None:
    big = finding(3, evidence=tuple("e" * 1000 for _ in range(200)), title="T" * 10_000)
    (s,) = _stored(Observation(CLUSTER, Coverage.COMPLETE, (finding(1),)), T0).values()
    entity = stored_properties("pk", s.fingerprint, s)
    back = stored_from_entity("t", entity)
    assert back == s
    assert back.finding.remediation == s.finding.remediation
    (sb,) = _stored(Observation(CLUSTER, Coverage.COMPLETE, (big,)), T0).values()
    entity = stored_properties("pk", sb.fingerprint, sb)
    assert entity["truncated"] is True
    assert all(utf16_size(v) <= MAX_STRING_BYTES for v in entity.values() if isinstance(v, str))
    back = stored_from_entity("t", entity)
    assert back.fingerprint == sb.fingerprint
    assert TRUNCATION_MARK in back.finding.evidence[-1]
    assert TRUNCATION_MARK in back.finding.title


def test_run_entity_round_trip_masks_errors() -> None:
    run = ScanRun(
        "run-1",
        T0,
        T0 + timedelta(minutes=1),
        RunStatus.PARTIAL,
        ("s1", "s2"),
        3,
        ("/subscriptions/s1/x",),
        42,
        {"managedClusters.list": 2, "virtualMachineScaleSetVMs.list": 40},
        {"open": 5, "new": 1},
        ("GET https://x?sig=SeCrEt failed",),
    )
    entity = run_properties("2024-05", run_row_key(T0, "run-1"), run)
    assert "SeCrEt" not in json.dumps(entity, default=str)
    back = run_from_entity("runs", entity)
    assert back == ScanRun(
        **{
            **{n: getattr(run, n) for n in run.__dataclass_fields__},
            "errors": ("GET https://x?sig=*** failed",),
        }
    )


def test_malformed_entities_raise_input_error_naming_row_and_property() -> None:
    (s,) = _stored(Observation(CLUSTER, Coverage.COMPLETE, (finding(1),)), T0).values()
    entity = stored_properties("pk", "rk", s)
    for prop, value, words in [
        ("state", "half-open", "'state'"),
        ("cause", 9, "not a cause"),
        ("evidence", "{not json", "not JSON"),
        ("evidence", "[1, 2]", "list of strings"),
        ("opened_at", "yesterday", "DateTime"),
        ("reopen_count", True, "integer"),
    ]:
        with pytest.raises(InputError, match=words) as info:
            stored_from_entity("twFindings", {**entity, prop: value})
        assert "twFindings entity pk/rk" in str(info.value)
    with pytest.raises(InputError, match="must carry its finding"):
        history_from_entity("h", {"event": "new", "at": T0, "cluster_id": "c"})


def test_redact_handles_long_pathological_lines() -> None:
    # Quadratic backtracking here once made a scan of long evidence lines hang.
    for text in ("x" * 200_000, "a://" * 50_000, "http://u:" * 20_000, "Bearer " * 30_000):
        assert len(redact(text)) <= len(text)
    assert redact("x" * 1000 + " https://u:pw@h/") == "x" * 1000 + " https://***@h/"
