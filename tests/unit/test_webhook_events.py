"""Webhook events (shared.notify.webhook): a flip as a CloudEvents 1.0 structured JSON event,
signed per Standard Webhooks. Signatures are checked with the independent PyPI implementation
`standardwebhooks` and its default tolerance (5 minutes, against the real clock)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.analysis.findings import Cause, Finding, Kind, Remediation, Severity, Subject
from shared.core.incidents import group_of, incident_id
from shared.core.lifecycle import (
    Coverage,
    Damping,
    Event,
    HistoryEvent,
    Observation,
    StoredFinding,
    transition,
)
from shared.errors import InputError
from shared.notify.webhook import CONTENT_TYPE, Secret, cloud_event, render, sign

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
NO_DAMPING = Damping(open_after=1, resolve_after=1)
SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
CLUSTER = (
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a"
)
# Test keys only (random bytes made for this file); the whsec_ form is what users configure.
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 140))
WHSEC_A = "whsec_" + base64.b64encode(KEY_A).decode()
WHSEC_B = "whsec_" + base64.b64encode(KEY_B).decode()

HOSTILE = (
    'drop "10250" \\ \'x\'\nnext line\r\n\ttab \u202e\u00e9\u4e2d\U0001f525 </script> {"a":1} \x00'
    " \u2028 \udcff"  # U+2028, and a lone surrogate (what surrogateescape decoding gives)
)


def make_finding(
    title: str = "NSG nsg-a denies TCP 10250", evidence: tuple[str, ...] = ()
) -> Finding:
    return Finding(
        check="nsg.inbound",
        cause=Cause.NSG,
        kind=Kind.PROBLEM,
        severity=Severity.CRITICAL,
        subject=Subject(subscription=SUB, cluster=CLUSTER, node_pool="pool1", node="aks-pool1-0"),
        title=title,
        evidence=evidence or ("rule deny-all (priority 100) denies TCP 10250",),
        remediation=Remediation(
            "Allow TCP 10250 between nodes",
            commands=("az network nsg rule create -g rg --nsg-name nsg-a -n allow-10250", "az x"),
            notes=("then recreate the tunnel pods",),
        ),
    )


def flips(finding: Finding) -> list[tuple[HistoryEvent, StoredFinding]]:
    """Opened, resolved, reopened: three observations through the real lifecycle."""
    out: list[tuple[HistoryEvent, StoredFinding]] = []
    existing: dict[str, StoredFinding] = {}
    for i, reported in enumerate(((finding,), (), (finding,))):
        t = transition(
            Observation(CLUSTER, Coverage.COMPLETE, reported),
            existing,
            subscription=SUB,
            run_id=f"run-{i}",
            now=T0 + i * STEP,
            damping=NO_DAMPING,
        )
        (flip,) = t.flips
        (state,) = [s for s in t.stored if s.fingerprint == flip.fingerprint]
        existing = {s.fingerprint: s for s in t.stored}
        out.append((flip, state))
    assert [f.event for f, _ in out] == [Event.NEW, Event.RESOLVED, Event.REOPENED]
    return out


def incident_of(finding: Finding) -> str:
    return incident_id(CLUSTER, group_of(finding), T0)


def events(finding: Finding | None = None) -> list[dict[str, object]]:
    finding = finding or make_finding()
    return [cloud_event(f, s, incident_id=incident_of(finding)) for f, s in flips(finding)]


# The CloudEvents 1.0 rules (spec "Context Attributes", "Type System", JSON format):
# required id, source, specversion, type, each a non-empty String; specversion "1.0";
# source a URI-reference; optional subject (non-empty String), time (RFC 3339 Timestamp),
# datacontenttype (RFC 2046 media type); attribute names lower-case a-z and 0-9, at most 20
# characters; in JSON, `data` holds the JSON value when datacontenttype is application/json.
_NAME = re.compile(r"[a-z0-9]{1,20}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_MEDIA = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+(;.*)?")


def cloudevents_problems(event: dict[str, object]) -> list[str]:
    problems = []
    for name in ("id", "source", "specversion", "type"):
        value = event.get(name)
        if not isinstance(value, str) or not value:
            problems.append(f"{name}: required non-empty string")
    if event.get("specversion") != "1.0":
        problems.append("specversion must be 1.0")
    problems += [f"bad attribute name {k!r}" for k in event if not _NAME.fullmatch(k)]
    source = event.get("source")
    if isinstance(source, str) and not (_URI_CHARS.fullmatch(source) and urlsplit(source).path):
        problems.append(f"source is not a URI-reference: {source!r}")
    if "subject" in event and (not isinstance(event["subject"], str) or not event["subject"]):
        problems.append("subject must be a non-empty string")
    time = event.get("time")
    if "time" in event and not (isinstance(time, str) and _RFC3339.fullmatch(time)):
        problems.append(f"time is not RFC 3339: {time!r}")
    dct = event.get("datacontenttype")
    if "datacontenttype" in event and not (isinstance(dct, str) and _MEDIA.fullmatch(dct)):
        problems.append(f"datacontenttype is not a media type: {dct!r}")
    if "data" in event and "data_base64" in event:
        problems.append("data and data_base64 are exclusive")
    return problems


def test_each_flip_is_a_valid_cloudevent_of_its_type() -> None:
    opened, resolved, reopened = events()
    assert [e["type"] for e in (opened, resolved, reopened)] == [
        "io.tunnelwatch.finding.opened",
        "io.tunnelwatch.finding.resolved",
        "io.tunnelwatch.finding.reopened",
    ]
    for event in (opened, resolved, reopened):
        assert cloudevents_problems(event) == []
        assert event["source"] == f"/tunnelwatch/{SUB}"
        assert event["subject"] == make_finding().fingerprint
        assert event["datacontenttype"] == "application/json"
    assert opened["time"] == "2024-05-01T12:00:00Z"
    assert reopened["time"] == "2024-05-01T12:10:00Z"


def test_the_validator_catches_what_the_spec_forbids() -> None:
    # a control: the rules above do reject events that break them
    good = events()[0]
    assert cloudevents_problems({**good, "specversion": "0.3"})
    assert cloudevents_problems({k: v for k, v in good.items() if k != "source"})
    assert cloudevents_problems({**good, "source": "/a b"})
    assert cloudevents_problems({**good, "time": "2024-05-01 12:00"})
    assert cloudevents_problems({**good, "dataContentType": "x"})
    assert cloudevents_problems({**good, "id": ""})


def test_data_carries_cause_fix_and_incident() -> None:
    finding = make_finding()
    opened, _, reopened = events(finding)
    data = opened["data"]
    assert isinstance(data, dict)
    assert data["cause"] == 1
    assert data["cause_title"] == Cause.NSG.title
    assert (data["title"], data["kind"], data["severity"]) == (
        finding.title, "problem", "critical",
    )  # fmt: skip
    assert (data["cluster"], data["node_pool"], data["node"]) == (CLUSTER, "pool1", "aks-pool1-0")
    assert data["evidence"] == list(finding.evidence)
    assert data["fix"] == {
        "summary": "Allow TCP 10250 between nodes",
        "commands": list(finding.remediation.commands),  # type: ignore[union-attr]
        "notes": ["then recreate the tunnel pods"],
    }
    assert data["first_seen"] == "2024-05-01T12:00:00Z"
    assert data["incident_id"] == incident_of(finding)
    assert data["reopen_count"] == 0
    reopened_data = reopened["data"]
    assert isinstance(reopened_data, dict)
    assert reopened_data["reopen_count"] == 1
    assert reopened_data["first_seen"] == "2024-05-01T12:00:00Z"  # kept across the reopen


def test_ids_are_stable_per_flip_and_distinct_across_flips() -> None:
    first, second = events(), events()  # the same flips computed twice (a repeated delivery)
    assert [e["id"] for e in first] == [e["id"] for e in second]
    assert [render(e) for e in first] == [render(e) for e in second]
    other = events(make_finding(title="t", evidence=("e",)))  # reworded: same fingerprint
    assert [e["id"] for e in other] == [e["id"] for e in first]
    ids = {e["id"] for e in first}
    ids |= {e["id"] for e in events(Finding(**{**_fields(make_finding()), "key": "other"}))}
    assert len(ids) == 6


def _fields(finding: Finding) -> dict[str, object]:
    return {name: getattr(finding, name) for name in Finding.__slots__ if not name.startswith("__")}


def test_hostile_text_round_trips_through_json_exactly() -> None:
    finding = make_finding(title=HOSTILE, evidence=(HOSTILE, HOSTILE[::-1]))
    event = events(finding)[0]
    body = render(event)
    back = json.loads(body.decode("utf-8"))
    assert back == event
    assert back["data"]["title"] == HOSTILE
    assert back["data"]["evidence"] == [HOSTILE, HOSTILE[::-1]]
    assert b"\n" not in body  # newlines are escaped: one JSON text, one line
    assert body.isascii()  # every other character is escaped, so nothing can fail to encode


def test_signatures_verify_with_standardwebhooks() -> None:
    secret = Secret.parse(WHSEC_A)
    for event in events(make_finding(title=HOSTILE)):
        body = render(event)
        headers = sign(str(event["id"]), body, [secret], now=datetime.now(UTC))
        assert headers["webhook-id"] == event["id"]
        assert headers["content-type"] == CONTENT_TYPE
        assert Webhook(WHSEC_A).verify(body, headers) == event


def test_rotation_two_signatures_either_secret_verifies() -> None:
    event = events()[0]
    body = render(event)
    headers = sign(
        str(event["id"]), body, [Secret.parse(WHSEC_A), Secret.parse(WHSEC_B)],
        now=datetime.now(UTC),
    )  # fmt: skip
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(WHSEC_A).verify(body, headers) == event
    assert Webhook(WHSEC_B).verify(body, headers) == event
    stranger = "whsec_" + base64.b64encode(bytes(range(50, 82))).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body, headers)


def test_tampered_body_is_rejected() -> None:
    event = events()[0]
    body = render(event)
    headers = sign(str(event["id"]), body, [Secret.parse(WHSEC_A)], now=datetime.now(UTC))
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC_A).verify(body.replace(b"critical", b"info"), headers)


def test_signed_at_each_attempt_an_old_timestamp_is_rejected() -> None:
    event = events()[0]
    body = render(event)
    secret = Secret.parse(WHSEC_A)
    now = datetime.now(UTC)
    stale = sign(str(event["id"]), body, [secret], now=now - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(WHSEC_A).verify(body, stale)
    retry = sign(str(event["id"]), body, [secret], now=now)  # the retry is signed anew
    assert retry["webhook-id"] == stale["webhook-id"]
    assert int(retry["webhook-timestamp"]) == int(now.timestamp())
    assert Webhook(WHSEC_A).verify(body, retry) == event


def test_no_secret_in_event_repr_str_or_errors() -> None:
    secret = Secret.parse(WHSEC_A)
    event = events()[0]
    body = render(event)
    headers = sign(str(event["id"]), body, [secret], now=T0)
    key_forms = [WHSEC_A, WHSEC_A[6:], KEY_A.hex(), repr(KEY_A)]
    seen = [repr(secret), str(secret), f"{secret}", repr([secret]), body.decode(), repr(headers)]
    errors = []
    for bad in (WHSEC_A[6:], WHSEC_A + "!", "whsec_" + base64.b64encode(KEY_A[:10]).decode()):
        with pytest.raises(InputError) as caught:
            Secret.parse(bad, name="destination ops")
        errors.append(caught.value)
    with pytest.raises(InputError) as too_many:
        sign("id", body, [secret, secret, secret], now=T0)
    errors.append(too_many.value)
    with pytest.raises(TypeError) as pickled:
        import pickle

        pickle.dumps(secret)
    errors.append(pickled.value)
    seen += [str(e) for e in errors] + [repr(e) for e in errors]
    seen += [
        repr(e.__cause__) + repr(e.__context__) for e in errors if e.__cause__ or e.__context__
    ]
    assert "destination ops" in str(errors[0])
    for text in seen:
        for form in key_forms:
            assert form not in text, text
        assert KEY_A[:12].hex() not in text


def test_bad_flips_are_refused_with_the_reason() -> None:
    (opened, state), (resolved, resolved_state), _ = flips(make_finding())
    with pytest.raises(InputError, match="incident id"):
        cloud_event(opened, state, incident_id=" ")
    with pytest.raises(InputError, match="does not belong"):
        cloud_event(
            opened,
            StoredFinding(**{**_state_fields(state), "fingerprint": "f" * 32}),
            incident_id="i",
        )
    held = HistoryEvent(T0, CLUSTER, Event.CLOSE_HELD, "run-9", reason="partial", held=("x",))
    with pytest.raises(InputError, match="not a flip"):
        cloud_event(held, resolved_state, incident_id="i")
    assert cloud_event(resolved, resolved_state, incident_id="i")["type"].endswith("resolved")


def _state_fields(state: StoredFinding) -> dict[str, object]:
    return {name: getattr(state, name) for name in StoredFinding.__slots__}


def test_the_module_imports_no_azure_and_no_adapter() -> None:
    code = (
        "import sys, shared.notify.webhook; "
        "print([m for m in sys.modules if m.split('.')[0] == 'azure' "
        "or m.startswith('shared.adapters')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
