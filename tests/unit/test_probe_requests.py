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
        run_id="scan-20261122T040000Z", subscription=SUB, cluster_id=CLUSTER,
        node_resource_group="MC_rg-aks_aks-prod_westeurope", vmss="aks-system-12345678-vmss",
        instance_id="3", reason="NSG deny found on pool user", now=NOW,
    )  # fmt: skip
    fields.update(changes)
    return ProbeRequest.new(ProbeKind.TRIAGE, **fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    r = make()
    text = r.to_json()
    doc = json.loads(text)
    assert doc["v"] == 2
    assert doc["run_id"] == "scan-20261122T040000Z" and "scan_id" not in doc
    assert doc["kind"] == "triage"
    assert not any("script" in key for key in doc if key != "subscription")
    back = ProbeRequest.from_json(text)
    assert back == r
    assert back.retry().attempt == 2


def _as_version_1(request: ProbeRequest) -> dict[str, object]:
    """The request as a version 1 message said it (run_id was named scan_id), as one still
    queued when the version 2 writer was deployed."""
    doc = json.loads(request.to_json())
    doc["v"] = 1
    doc["scan_id"] = doc.pop("run_id")
    return doc


def test_a_version_1_message_still_queued_is_read() -> None:
    r = make(run_id="probe-cycle-20261122T0400")
    back = ProbeRequest.from_json(json.dumps(_as_version_1(r)), "msg")
    assert back == r
    assert json.loads(back.retry().to_json())["v"] == 2  # its retry is written as version 2


@pytest.mark.parametrize(
    ("version", "change", "match"),
    [
        (1, {"run_id": "scan-1"}, r"unknown \['run_id'\]"),  # version 1 had no run_id
        (1, {"drop": "scan_id"}, r"missing \['scan_id'\]"),
        (1, {"scan_id": ["scan"]}, "scan_id: list, expected str"),
        (1, {"scan_id": "scan-1\n"}, r"scan_id: 'scan-1\\n' is not"),  # named as sent
        (2, {"scan_id": "scan-1"}, r"unknown \['scan_id'\]"),  # version 2 has no scan_id
        (2, {"drop": "run_id"}, r"missing \['run_id'\]"),
        (3, {}, "schema version 3, expected 1 or 2"),
        (0, {}, "schema version 0"),
    ],
)
def test_each_version_has_exactly_its_own_run_id_key(
    version: int, change: dict[str, object], match: str
) -> None:
    doc = _as_version_1(make()) if version == 1 else json.loads(make().to_json())
    doc["v"] = version
    if "drop" in change:
        del doc[str(change.pop("drop"))]
    doc.update(change)
    with pytest.raises(InputError, match=match):
        ProbeRequest.from_json(json.dumps(doc), "msg")


def test_new_takes_the_run_id_once() -> None:
    # `scan_id=` (the old keyword) still works for callers not moved over; not both, not none
    assert make(run_id="", scan_id="scan-2").run_id == "scan-2"
    with pytest.raises(ValueError, match="once"):
        make(scan_id="scan-2")
    with pytest.raises(ValueError, match="once"):
        make(run_id="")


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
        (lambda d: d.update(v=3), "schema version 3"),
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


FIELDS_WITH_PATTERNS = (
    "request_id", "run_id", "subscription", "cluster_id", "node_resource_group", "vmss",
    "instance_id", "reason",
)  # fmt: skip


@pytest.mark.parametrize(
    ("field", "tail"),
    [
        (field, tail)
        for field in FIELDS_WITH_PATTERNS
        for tail in ("\n", "\r\n", " ", "\x00")
        if not (field == "reason" and tail == " ")  # a space is printable: a reason may end so
    ],
)
def test_a_trailing_newline_or_space_is_not_part_of_a_name(field: str, tail: str) -> None:
    # `^...$` with re.match accepted "value\n" in 7 fields (issue 15, defect 6); the
    # subscription was refused only because it then differed from the cluster id's.
    doc = json.loads(make().to_json())
    doc[field] += tail
    with pytest.raises(InputError, match=field):
        ProbeRequest.from_json(json.dumps(doc), "msg")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("v", True),  # bool is an int in Python: True == 1
        ("v", 1.0),
        ("v", "1"),
        ("attempt", 1.0),
        ("attempt", "1"),
        ("attempt", False),
        ("instance_id", 3),
        ("run_id", ["scan"]),
        ("reason", None),
        ("kind", 1),
        ("requested_at", 1795000000),
        ("requested_at", "2026-11-22T04:00:00+00:00\n"),
    ],
)
def test_json_types_are_exact(key: str, value: object) -> None:
    doc = json.loads(make().to_json())
    doc[key] = value
    with pytest.raises(InputError, match=key):
        ProbeRequest.from_json(json.dumps(doc), "msg")


def test_a_key_given_twice_is_refused() -> None:
    text = make().to_json()
    with pytest.raises(InputError, match="twice"):
        ProbeRequest.from_json(text[:-1] + ',"kind":"deep"}', "msg")


def test_errors_quote_a_short_escaped_excerpt_only() -> None:
    doc = json.loads(make().to_json())
    doc["vmss"] = "aks\n" + "A" * 3000
    with pytest.raises(InputError) as caught:
        ProbeRequest.from_json(json.dumps(doc), "msg")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("rg", "vmss"),
    [
        ("rg-café", "aks-system-12345678-vmss"),
        ("rg-batch(prod)", "aks-system-12345678-vmss"),
        ("MC_rg-café_aks-prod_westeurope", "aks-système-1-vmss"),
        ("グループ_1", "スケール.セット"),
        ("rg.with.periods.inside", "vmss_under_score"),
        ("x" * 90, "v" * 80),
        ("cafe\u0301", "aks-vmss"),  # a combining accent: the REST pattern's \w admits it
    ],
)
def test_every_name_azure_allows_makes_a_request(rg: str, vmss: str) -> None:
    cluster = CLUSTER.replace("rg-aks", rg)
    request = make(cluster_id=cluster, node_resource_group=rg, vmss=vmss)
    assert ProbeRequest.from_json(request.to_json()) == request


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node_resource_group", "rg-ends-with-a-period."),
        ("node_resource_group", "x" * 91),
        ("node_resource_group", "rg with space"),
        ("node_resource_group", "rg;reboot"),
        ("node_resource_group", "rg\nx"),
        ("node_resource_group", "rg/../x"),
        ("node_resource_group", ""),
        ("vmss", "aks(vmss)"),
        ("vmss", "v" * 81),
        ("vmss", "aks-vmss\u202e"),  # a bidi control character is no letter
        ("instance_id", "\u0663"),  # an Arabic-Indic digit is a digit to \d, not an instance id
    ],
)
def test_names_azure_refuses_are_refused(field: str, value: str) -> None:
    with pytest.raises(InputError, match=field):
        make(**{field: value})


def test_the_reason_is_made_printable_not_refused() -> None:
    assert make(reason="node aks-nodé\n3 unreachable").reason == "node aks-nod??3 unreachable"
