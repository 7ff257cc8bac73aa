"""Reading `nft -j list ruleset`: the model, the rebuilt nft syntax, and InputError (and only
InputError) for anything malformed, proved on random text, random JSON and mutations."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.analysis.findings import Subject
from shared.analysis.nftables import (
    Packet,
    evaluate_input,
    findings_for,
    fix_commands,
    parse_ruleset,
)
from shared.analysis.nftables.model import Interval, Match, Vmap
from shared.errors import InputError
from tests.unit.test_nft_build import (
    ACCEPT,
    DPORT,
    DROP,
    KUBE_PROXY,
    SADDR,
    chain,
    doc,
    m,
    rule,
    table,
)

PKT = Packet(src=IPv4Address("10.224.0.99"), dst=IPv4Address("10.224.0.4"), in_iface="eth0")


def test_model_of_a_small_ruleset() -> None:
    text = doc(
        table(),
        chain("in", "input", -10, "drop"),
        rule("in", 4, m(SADDR, {"prefix": {"addr": "10.0.0.0", "len": 8}}), m(DPORT, 10250), DROP),
    )
    rs = parse_ruleset(text, "cap.json")
    (t,) = rs.tables
    c = t.chains["in"]
    assert (c.hook, c.prio, c.policy, c.type) == ("input", -10, "drop", "filter")
    (r,) = c.rules
    assert r.handle == 4
    assert r.text == "ip saddr 10.0.0.0/8 tcp dport 10250 drop"
    first = r.stmts[0]
    assert isinstance(first, Match)
    assert first.right.value == (
        Interval(int(IPv4Address("10.0.0.0")), int(IPv4Address("10.255.255.255"))),
    )


def test_kube_proxy_fixture_parses_with_rebuilt_text() -> None:
    rs = parse_ruleset(KUBE_PROXY, "kp")
    t = rs.table("ip", "kube-proxy")
    assert t is not None and not t.compat and t.conntrack
    services = t.chains["services"].rules
    assert services[0].text == "ip daddr . meta l4proto . th dport vmap @service-ips"
    assert isinstance(services[0].stmts[0], Vmap)
    assert t.sets["service-ips"].kinds == ("addr4", "proto", "port")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not JSON"),
        ("[]", '"nftables"'),
        ('{"nftables": {}}', '"nftables"'),
        ('{"nftables": [42]}', "item 1"),
        ('{"nftables": [{"table": {"family": "inet"}}]}', "'name'"),
        ('{"nftables": [{"bogus": {}}]}', "unknown object"),
        (doc(table(), rule("nochain", 1, DROP)), "unknown chain"),
        (doc(table(), chain("in", "input"), rule("in", 1, m(SADDR, "300.1.1.1"), DROP)), "address"),
        (doc(table(), chain("in", "input"), rule("in", 1, m(DPORT, 70000), DROP)), "out of range"),
        (doc(table(), chain("in", "input", policy="maybe")), "policy"),
        (doc(table(), chain("in", "input"), rule("in", 1, {"jump": {"target": "gone"}})), "gone"),
        (doc(table(), chain("in", "input"), chain("in")), "twice"),
        (doc(table(), chain("in", "input"), rule("in", "x", DROP)), "handle"),
    ],
)
def test_malformed_input_names_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        parse_ruleset(text, "cap.json")
    assert fragment in str(err.value)
    assert str(err.value).startswith("cap.json")


def test_not_json_reports_the_line() -> None:
    with pytest.raises(InputError) as err:
        parse_ruleset('{"nftables": [\n\n oops]}', "cap.json")
    assert err.value.line == 3


def test_unknown_expressions_are_not_errors() -> None:
    text = doc(
        table(),
        chain("in", "input"),
        rule("in", 1, m({"payload": {"protocol": "ip", "field": "ttl"}}, 64), {"synproxy": {}}),
        {"counter": {"family": "inet", "table": "fw", "name": "c", "packets": 0, "bytes": 0}},
    )
    rs = parse_ruleset(text, "t")
    assert rs.tables[0].chains["in"].rules[0].stmts


# ---- properties ---------------------------------------------------------------------------

VALID = doc(
    table(),
    {
        "set": {
            "family": "inet",
            "table": "fw",
            "name": "s",
            "type": "ipv4_addr",
            "elem": ["10.0.0.1"],
        }
    },
    chain("in", "input", 0, "drop"),
    chain("sub"),
    rule("in", 2, m(SADDR, "@s"), {"jump": {"target": "sub"}}),
    rule("in", 3, m(DPORT, {"set": [22, {"range": [10000, 10300]}]}), ACCEPT),
    rule("sub", 4, {"vmap": {"key": DPORT, "data": {"set": [[10250, DROP]]}}}),
)


def _check(text: str) -> None:
    try:
        rs = parse_ruleset(text, "fuzz")
    except InputError:
        return
    v = evaluate_input(rs, PKT)
    findings_for(v, Subject(node="n"))
    fix_commands(v)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_raises_only_input_error(text: str) -> None:
    _check(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=6))
def test_random_items_raise_only_input_error(items: list[Any]) -> None:
    _check(json.dumps({"nftables": items}))


def _paths(x: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(x, dict):
        for k, v in x.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(data: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    data = json.loads(json.dumps(data))
    cur = data
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = new
    return data


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), json_values)
def test_mutations_of_valid_input_raise_only_input_error(data: st.DataObject, new: Any) -> None:
    base = json.loads(data.draw(st.sampled_from([VALID, KUBE_PROXY])))
    path = data.draw(st.sampled_from(_paths(base)))
    _check(json.dumps(_mutate(base, path, new)))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_truncated_and_spliced_text_raises_only_input_error(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from([VALID, KUBE_PROXY]))
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(max_size=5))
    _check(text[:cut] + junk + text[cut + len(junk) :])
