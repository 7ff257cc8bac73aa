"""The finding model: fingerprints are stable and ignore wording and times; JSON is complete."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.analysis.findings import (
    RECREATE_TUNNEL_PODS,
    TUNNEL_POD_REMINDER,
    Cause,
    Finding,
    Kind,
    Origin,
    Remediation,
    Severity,
    Subject,
)

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def _finding(**changes: object) -> Finding:
    base = Finding(
        check="iptables.input",
        cause=Cause.IPTABLES,
        kind=Kind.PROBLEM,
        severity=Severity.CRITICAL,
        subject=Subject(subscription="sub", cluster="aks-prod", node_pool="np1", node="vmss_3"),
        title="iptables drops TCP 10250",
        evidence=("filter NODE-HARDENING #5: -p tcp --dport 10250 -j DROP",),
        remediation=Remediation("delete the rule", ("iptables -D NODE-HARDENING 5",)),
        key="filter/NODE-HARDENING/5",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_fingerprint_ignores_wording_evidence_and_times() -> None:
    a = _finding()
    b = _finding(title="reworded", evidence=("other",), first_seen=T0, last_seen=T0)
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 32


def test_fingerprint_distinguishes_subject_check_cause_and_key() -> None:
    a = _finding()
    others = [
        _finding(subject=replace(a.subject, node="vmss_4")),
        _finding(check="ufw.status"),
        _finding(cause=Cause.UFW),
        _finding(key="filter/INPUT/policy"),
        _finding(cause=None),
    ]
    prints = {f.fingerprint for f in others}
    assert a.fingerprint not in prints
    assert len(prints) == len(others)


def test_fingerprint_is_case_insensitive_for_azure_ids() -> None:
    a = _finding(subject=Subject(cluster="/subscriptions/X/resourceGroups/RG"))
    b = _finding(subject=Subject(cluster="/subscriptions/x/resourcegroups/rg"))
    assert a.fingerprint == b.fingerprint


def test_seen_keeps_first_seen_and_moves_last_seen() -> None:
    first = _finding().seen(T0)
    assert first.first_seen == T0
    assert first.last_seen == T0
    later = _finding().seen(T0 + timedelta(minutes=5), previous=first)
    assert later.first_seen == T0
    assert later.last_seen == T0 + timedelta(minutes=5)


def test_json_document() -> None:
    doc = _finding(origin=Origin.TUNNELWATCH).seen(T0).to_json()
    assert doc["cause"] == 3
    assert doc["cause_title"] == "iptables blocks the tunnel port"
    assert doc["origin"] == "tunnelwatch"
    assert doc["kind"] == "problem"
    assert doc["severity"] == "critical"
    assert doc["subject"]["node"] == "vmss_3"
    assert doc["remediation"]["commands"] == ["iptables -D NODE-HARDENING 5"]
    assert doc["first_seen"] == "2026-11-21T09:00:00+00:00"
    assert doc["fingerprint"] == _finding().fingerprint


def test_every_cause_has_a_title_and_the_reminder_quotes_the_command() -> None:
    assert {int(c) for c in Cause} == {1, 2, 3, 4, 5, 6}
    assert all(c.title for c in Cause)
    assert RECREATE_TUNNEL_PODS in TUNNEL_POD_REMINDER


def test_subject_label() -> None:
    assert Subject().label() == "(input)"
    assert Subject(cluster="c", node="n").label() == "cluster=c node=n"
