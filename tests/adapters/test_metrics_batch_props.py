"""parse_batch_answer on arbitrary text: a list of checked elements or BadAnswer, nothing else;
and what it accepts, shared.analysis.snat.parse_metrics accepts or refuses with InputError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.metrics import BadAnswer, parse_batch_answer
from shared.analysis.snat import parse_metrics
from shared.errors import InputError

LB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/kubernetes"
VALID: dict[str, Any] = {
    "values": [
        {
            "starttime": "2026-11-22T03:52:00Z",
            "endtime": "2026-11-22T04:00:00Z",
            "interval": "PT1M",
            "namespace": "Microsoft.Network/loadBalancers",
            "resourceregion": "eastus",
            "resourceid": LB,
            "value": [
                {
                    "id": f"{LB}/providers/Microsoft.Insights/metrics/SnatConnectionCount",
                    "name": {"value": "SnatConnectionCount"},
                    "timeseries": [
                        {
                            "metadatavalues": [
                                {"name": {"value": "connectionstate"}, "value": "Failed"}
                            ],
                            "data": [{"timeStamp": "2026-11-22T03:58:00Z", "total": 3}],
                        }
                    ],
                }
            ],
        }
    ]
}
VALID_TEXT = json.dumps(VALID)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _check(text: str) -> None:
    try:
        values = parse_batch_answer(text)
    except BadAnswer:
        return
    for item in values:
        assert isinstance(item["resourceid"], str) and isinstance(item["value"], list)
        body = dict(item)
        with contextlib.suppress(InputError):
            parse_metrics(body, "batch")


def test_the_valid_answer_parses() -> None:
    (item,) = parse_batch_answer(VALID_TEXT)
    doc = parse_metrics(item, "batch")
    assert [s.dimension("ConnectionState") for s in doc.series] == ["Failed"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    _check(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=8))
def test_random_lines(lines: list[str]) -> None:
    _check("\n".join(lines))


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_random_json(doc: Any) -> None:
    _check(json.dumps(doc))
    _check(json.dumps({"values": [doc]}))
    _check(json.dumps({"values": [{"resourceid": LB, "value": [doc]}]}))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID_TEXT) - 1), st.integers(0, 20), st.text(max_size=6))
def test_mutations_of_a_valid_answer(at: int, cut: int, insert: str) -> None:
    _check(VALID_TEXT[:at] + insert + VALID_TEXT[at + cut :])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["starttime", "endtime", "interval", "resourceid", "value", "namespace"]),
    json_values,
)
def test_fields_of_any_type(key: str, value: Any) -> None:
    doc = json.loads(VALID_TEXT)
    doc["values"][0][key] = value
    _check(json.dumps(doc))
