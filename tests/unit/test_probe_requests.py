"""The probe-requests message: round trip, strict validation, forged and malformed messages."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InputError
from shared.probe_requests import ProbeKind, ProbeRequest

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod"
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def make(**changes: object) -> ProbeRequest:
    fields: dict[str, object] = dict(
        scan_id="scan-20261122T040000Z", subscription=SUB, cluster_id=CLUSTER,
        node_resource_group="MC_rg-aks_aks-prod_westeurope", vmss="aks-system-12345678-vmss",
        instance_id="3", reason="NSG deny found on pool user", now=NOW,
    )  # fmt: skip
    fields.update(changes)
    return ProbeRequest.new(ProbeKind.TRIAGE, **fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    r = make()
    text = r.to_json()
    doc = json.loads(text)
    assert doc["v"] == 1
    assert doc["kind"] == "triage"
    assert not any("script" in key for key in doc if key != "subscription")
    back = ProbeRequest.from_json(text)
    assert back == r
    assert back.retry().attempt == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vmss", "aks-vmss; rm -rf /"),
        ("vmss", "$(curl evil)"),
        ("instance_id", "3 && reboot"),
        ("instance_id", "-1"),
        ("node_resource_group", "rg`id`"),
        ("subscription", "not-a-guid"),
        ("cluster_id", "/subscriptions/x/resourceGroups/rg/providers/Other/thing/y"),
        ("reason", "line\nbreak"),
    ],
)
def test_forged_values_are_refused(field: str, value: str) -> None:
    doc = json.loads(make().to_json())
    doc[field] = value
    with pytest.raises(InputError, match=field):
        ProbeRequest.from_json(json.dumps(doc), "msg")


def test_cluster_must_be_in_the_message_subscription() -> None:
    other = CLUSTER.replace(SUB, "0b1f6471-1bf0-4dda-aec3-999999999999")
    with pytest.raises(InputError, match="not in the message's subscription"):
        make(cluster_id=other)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(v=2), "schema version 2"),
        (lambda d: d.update(script="echo hi"), "unknown \\['script'\\]"),
        (lambda d: d.pop("vmss"), "missing \\['vmss'\\]"),
        (lambda d: d.update(kind="shell"), "kind"),
        (lambda d: d.update(attempt=True), "attempt"),
        (lambda d: d.update(attempt=99), "attempt"),
        (lambda d: d.update(requested_at="2026-11-22T04:00:00"), "no time zone"),
    ],
)
def test_malformed_messages(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(make().to_json())
    mutate(doc)
    with pytest.raises(InputError, match=message):
        ProbeRequest.from_json(json.dumps(doc), "msg")


def test_oversized_and_non_json() -> None:
    with pytest.raises(InputError, match="larger than"):
        ProbeRequest.from_json("x" * 5000)
    with pytest.raises(InputError, match="not JSON"):
        ProbeRequest.from_json("{")
    with pytest.raises(InputError, match="not a JSON object"):
        ProbeRequest.from_json("[]")


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=300)
    | st.builds(json.dumps, st.dictionaries(st.text(max_size=12), st.text(max_size=12)))
)
def test_arbitrary_text_raises_only_input_error(text: str) -> None:
    with contextlib.suppress(InputError):
        ProbeRequest.from_json(text)
