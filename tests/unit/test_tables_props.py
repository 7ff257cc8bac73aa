"""Properties of the storage code on arbitrary input: entity readers raise only InputError,
keys stay key-safe, fitted text stays within the limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.tables import Coverage, Event, HistoryEvent, Observation
from shared.adapters.tables.entities import (
    history_from_entity,
    history_properties,
    run_from_entity,
    run_properties,
    stored_from_entity,
)
from shared.adapters.tables.keys import cluster_key, open_row_key, run_row_key
from shared.adapters.tables.limits import (
    MAX_STRING_BYTES,
    fit_json_list,
    fit_text,
    utf16_size,
)
from shared.adapters.tables.model import ScanRun
from shared.adapters.tables.plan import plan_cluster_write
from shared.analysis.findings import Cause, Finding, Kind, Severity, Subject
from shared.core.lifecycle import Damping
from shared.errors import InputError

T0 = datetime(2024, 5, 1, tzinfo=UTC)
FORBIDDEN_IN_KEYS = set("/\\#?") | {chr(c) for c in range(32)} | {chr(c) for c in range(127, 160)}

values = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.booleans(),
    st.floats(allow_nan=True),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
    st.lists(st.text(max_size=5), max_size=3),
    st.tuples(st.integers(), st.text(max_size=3)),
)
names = st.sampled_from(
    [
        "fingerprint", "cluster_id", "subscription", "state", "opened_at", "resolved_at",
        "reopen_count", "run_id", "truncated", "check", "cause", "kind", "severity", "origin",
        "title", "key", "evidence", "remediation", "first_seen", "last_seen", "event", "at",
        "held", "reason", "started", "finished", "status", "subscriptions", "clusters_failed",
        "arm_calls", "arm_calls_by_operation", "finding_counts", "errors", "clusters_scanned",
    ]
)  # fmt: skip


def _valid_entities() -> list[dict[str, Any]]:
    f = Finding(
        "nsg.inbound", Cause.NSG, Kind.PROBLEM, Severity.CRITICAL,
        Subject("s", "/subscriptions/s/c", "p"), "t", ("e1",),
    )  # fmt: skip
    plan = plan_cluster_write(
        Observation("/subscriptions/s/c", Coverage.COMPLETE, (f,)), {}, run_id="r", now=T0
    )
    run = ScanRun("r", T0, T0, errors=("x",), arm_calls_by_operation={"a": 1})
    held = HistoryEvent(T0, "c", Event.CLOSE_HELD, "r", reason="why", held=("f",))
    return [
        plan.current[0],
        plan.history[0],
        history_properties("pk", "rk", held),
        run_properties("2024-05", run_row_key(T0, "r"), run),
    ]


VALID = _valid_entities()
READERS = (stored_from_entity, history_from_entity, run_from_entity)


def _read_all(entity: dict[str, Any]) -> None:
    for reader in READERS:
        try:
            reader("tbl", entity)
        except InputError as exc:
            assert "tbl entity" in str(exc)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.one_of(names, st.text(max_size=8)), values, max_size=12))
def test_readers_on_random_entities_raise_only_input_error(entity: dict[str, Any]) -> None:
    _read_all(entity)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(len(VALID))),
    st.lists(st.tuples(names, values), min_size=1, max_size=4),
    st.lists(names, max_size=3),
)
def test_readers_on_mutated_entities_raise_only_input_error(
    which: int, changes: list[tuple[str, Any]], removed: list[str]
) -> None:
    entity = dict(VALID[which])
    for name, value in changes:
        entity[name] = value
    for name in removed:
        entity.pop(name, None)
    _read_all(entity)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(len(VALID))),
    st.sampled_from(["evidence", "held", "errors", "remediation", "finding_counts"]),
    st.text(max_size=60),
)
def test_readers_on_random_json_text_raise_only_input_error(
    which: int, name: str, text: str
) -> None:
    _read_all({**VALID[which], name: text})


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=120))
def test_keys_never_hold_forbidden_characters(text: str) -> None:
    keys = [open_row_key(text, text + "x", "f" * 32)]
    try:
        keys.append(run_row_key(T0, text))
    except ValueError as exc:
        # Run ids are ours and short; one whose escaped form cannot fit a key is refused
        # with a clear message, never truncated into a colliding key.
        assert "run id too long for a key" in str(exc)
        assert len(text.encode()) * 3 > 512 - 40 - 28
    for key in keys:
        assert not FORBIDDEN_IN_KEYS & set(key)
        assert len(key) <= 512
    if text.strip():
        assert len(cluster_key(text)) == 32


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=200, max_value=2000))
def test_fit_text_within_limit_and_prefix_kept(text: str, limit: int) -> None:
    out, cut = fit_text(text, limit)
    assert utf16_size(out) <= limit
    assert cut == (out != text)
    if cut:
        assert text.startswith(out[: out.index(" [truncated by tunnelwatch:")])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=3000), max_size=60))
def test_fit_json_list_is_valid_json_within_limit(lines: list[str]) -> None:
    out, cut = fit_json_list(lines, MAX_STRING_BYTES // 8)
    assert utf16_size(out) <= MAX_STRING_BYTES // 8
    items = json.loads(out)
    assert all(isinstance(i, str) for i in items)
    if not cut:
        assert items == lines


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=6), max_size=6),
    st.lists(st.integers(min_value=0, max_value=6), max_size=6),
    st.sampled_from(list(Coverage)),
    st.integers(min_value=1, max_value=3),
)
def test_plan_flips_follow_the_rules(
    first: list[int], second: list[int], coverage: Coverage, resolve_after: int
) -> None:
    def findings(ns: list[int]) -> tuple[Finding, ...]:
        return tuple(
            Finding("c", None, Kind.PROBLEM, Severity.WARNING, Subject(node=str(n)), "t")
            for n in ns
        )

    cid = "/subscriptions/s/c"
    one = plan_cluster_write(
        Observation(cid, Coverage.COMPLETE, findings(first)), {}, run_id="1", now=T0
    )
    state = {s.fingerprint: s for s in one.stored}
    two = plan_cluster_write(
        Observation(cid, coverage, findings(second), reason="r"),
        state,
        run_id="2",
        now=T0 + timedelta(minutes=5),
        damping=Damping(resolve_after=resolve_after),
    )
    before, after = set(map(str, first)), set(map(str, second))
    events = {(e.event, e.finding.subject.node) for e in two.flips if e.finding}
    assert {n for ev, n in events if ev is Event.NEW} == after - before
    resolved = {n for ev, n in events if ev is Event.RESOLVED}
    if coverage is Coverage.COMPLETE:
        # one clean scan resolves only with RESOLVE_AFTER=1; otherwise it counts towards it
        assert resolved == (before - after if resolve_after == 1 else set())
        missed = {s.finding.subject.node for s in two.stored if s.missed}
        assert missed == (set() if resolve_after == 1 else before - after)
        assert two.held == ()
    else:
        assert resolved == set()
        assert len(two.held) == len(before - after)


def test_readers_on_deeply_nested_json_raise_input_error() -> None:
    for which in range(len(VALID)):
        entity = {**VALID[which], "evidence": "[" * 100_000, "errors": "[" * 100_000}
        _read_all(entity)
