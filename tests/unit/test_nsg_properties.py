"""Property tests: parsing raises only InputError; evaluation never raises and its index agrees
with a plain rule-by-rule walk and with an independent reading of the rules."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.analysis.nsg import (
    Access,
    Flow,
    Nsg,
    NsgFlowVerdict,
    TagContext,
    evaluate_flow,
    load_service_tags,
    match_rule,
    parse_nsg,
    parse_nsg_text,
    propose_fix,
)
from shared.errors import InputError
from tests.unit.test_nsg_support import FIXTURES, doc, fixture, rule

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
FIELD_NAMES = [
    "name", "properties", "securityRules", "defaultSecurityRules", "priority", "direction",
    "access", "protocol", "sourceAddressPrefix", "sourceAddressPrefixes",
    "destinationAddressPrefix", "destinationAddressPrefixes", "sourcePortRange",
    "sourcePortRanges", "destinationPortRange", "destinationPortRanges", "id", "value",
    "effectiveSecurityRules", "sourceApplicationSecurityGroups", "expandedSourceAddressPrefix",
]  # fmt: skip
# values that look like what the fields hold, so mutations get past the first check
field_values = st.sampled_from(
    [
        "*", "Any", "All", "", "Tcp", "udp", "Inbound", "outbound", "Allow", "deny", "10250",
        "1-65535", "70000", "5-3", "10.0.0.0/8", "fd00::/8", "1.2.3.4/40", "VirtualNetwork",
        "Internet", "x y", 100, 65500, 99999, -1, True, None, [], ["80", "443"], [1], {},
        [{"id": "/asg/a"}], [{"x": 1}],
    ]
)  # fmt: skip


def _parse_or_input_error(document: object) -> Nsg | None:
    try:
        return parse_nsg(document, "doc.json")
    except InputError as exc:
        assert exc.source == "doc.json"
        return None


@SETTINGS
@given(json_values)
def test_arbitrary_json_values_raise_only_input_error(value: object) -> None:
    _parse_or_input_error(value)
    _parse_or_input_error({"properties": {"securityRules": [value]}})
    _parse_or_input_error({"securityRules": value})
    _parse_or_input_error([value])
    with contextlib.suppress(InputError):
        load_service_tags(value, "tags.json")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


DOCS = [
    fixture(n)
    for n in ("subnet-nsg-rest.json", "nic-nsg-az.json", "rule-list-az.json", "effective-nic.json")
]


@SETTINGS
@given(
    which=st.integers(0, len(DOCS) - 1),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["delete", "set", "rename"]),
                  st.one_of(field_values, json_values), st.sampled_from(FIELD_NAMES)),
        min_size=1, max_size=4,
    ),
)  # fmt: skip
def test_mutated_valid_documents_raise_only_input_error(
    which: int, edits: list[tuple[int, str, object, str]]
) -> None:
    document = copy.deepcopy(DOCS[which])
    for pick, action, value, key in edits:
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "delete":
            del parent[last]
        elif action == "set":
            parent[last] = value
        elif isinstance(parent, dict):
            parent[key] = parent.pop(last)
    nsg = _parse_or_input_error(document)
    if nsg is not None:  # whatever parsed must evaluate
        flow = Flow("inbound", "10.224.0.4", "10.224.0.5", 10250)
        evaluate_flow(flow, nsg, nsg, TagContext())


TEXTS = [
    (FIXTURES / n).read_text()
    for n in ("subnet-nsg-rest.json", "nic-nsg-az.json", "service-tags.json")
]


@SETTINGS
@given(
    text=st.text(max_size=300),
    which=st.integers(0, len(TEXTS) - 1),
    lines=st.lists(st.integers(0, 500), max_size=30),
    cut=st.integers(0, 5000),
)
def test_random_text_and_lines_raise_only_input_error(
    text: str, which: int, lines: list[int], cut: int
) -> None:
    source_lines = TEXTS[which].splitlines()
    for candidate in (
        text,
        "\n".join(source_lines[i % len(source_lines)] for i in lines),
        TEXTS[which][:cut] + text + TEXTS[which][cut:],
        "[" * 5000,
        "1" * 5000,
    ):
        try:
            parse_nsg_text(candidate, "t.json")
        except InputError as exc:
            assert exc.source == "t.json"


# --- evaluation -----------------------------------------------------------------------

PREFIXES = ["*", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "192.168.0.0/24", "0.0.0.0/0",
            "fd00::/8", "fd00::5", "8.8.8.0/24", "VirtualNetwork", "Internet", "AzureLoadBalancer",
            "Storage.EastUS"]  # fmt: skip
PORTS = ["*", "22", "443", "10250", "10000-10300", "0-1023", "1024-65535", "9000", "1194"]
ADDRESSES = ["10.1.2.3", "10.1.9.9", "10.9.0.1", "192.168.0.7", "8.8.8.8", "172.16.0.1",
             "fd00::5", "fd00::6", "2001:db8::1", "168.63.129.16", "20.38.98.1"]  # fmt: skip

rules_st = st.lists(
    st.builds(
        lambda prio, access, direction, proto, src, dst, dport, sport: rule(
            f"r{prio}", prio, access, direction=direction, proto=proto, src=src, dst=dst,
            dport=dport, sport=sport,
        ),
        st.integers(100, 4096), st.sampled_from(["Allow", "Deny"]),
        st.sampled_from(["Inbound", "Outbound"]), st.sampled_from(["Tcp", "Udp", "*", "Icmp"]),
        st.one_of(st.sampled_from(PREFIXES), st.lists(st.sampled_from(PREFIXES[1:9]), min_size=1, max_size=3)),
        st.one_of(st.sampled_from(PREFIXES), st.lists(st.sampled_from(PREFIXES[1:9]), min_size=1, max_size=3)),
        st.one_of(st.sampled_from(PORTS), st.lists(st.sampled_from(PORTS[1:]), min_size=1, max_size=3)),
        st.sampled_from(["*", "*", "*", "1024-65535", "50000"]),
    ),
    max_size=25,
    unique_by=lambda r: (r["properties"]["priority"], r["properties"]["direction"]),
)  # fmt: skip
flows_st = st.builds(
    Flow,
    st.sampled_from(["inbound", "outbound"]),
    st.sampled_from(ADDRESSES),
    st.sampled_from(ADDRESSES),
    st.sampled_from([22, 443, 10250, 9000, 1194, 0, 65535, 10300]),
    st.sampled_from(["tcp", "udp", "icmp", "esp"]),
    st.sampled_from([None, 50000, 1000]),
)
contexts = st.sampled_from(
    [
        TagContext(),
        TagContext(
            vnet_prefixes=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
        ),
        TagContext(
            vnet_prefixes=(ipaddress.ip_network("10.1.0.0/16"),),
            service_tags=load_service_tags(fixture("service-tags.json"), "tags.json"),
        ),
    ]
)


def _walk_plainly(n: Nsg, flow: Flow, ctx: TagContext) -> tuple[str | None, list[str]]:
    """The first certain match and the undecided rules before it, without the index."""
    undecided = []
    for r in n.rules(flow.direction):
        state, _ = match_rule(r, flow, ctx)
        if state is True:
            return r.name, undecided
        if state is None:
            undecided.append(r.name)
    return None, undecided


def _independent_match(raw: dict[str, Any], flow: Flow) -> bool | None:
    """A separate reading of a concrete rule (no tags); None when it uses tags."""
    p = raw["properties"]

    def listed(single: str, plural: str) -> list[str]:
        return ([p[single]] if p[single] else []) + p[plural]

    proto = p["protocol"].lower()
    if proto != "*" and proto != flow.proto.value.lower():
        return False
    if proto == "*" and flow.proto.value.lower() == "esp":
        return None
    for single, plural, port in (
        ("destinationPortRange", "destinationPortRanges", flow.dport),
        ("sourcePortRange", "sourcePortRanges", flow.sport),
    ):
        ranges = listed(single, plural)
        if "*" in ranges:
            continue
        if port is None:
            return None
        if not any(int(r.split("-")[0]) <= port <= int(r.split("-")[-1]) for r in ranges):
            return False
    for single, plural, addr in (
        ("sourceAddressPrefix", "sourceAddressPrefixes", flow.src),
        ("destinationAddressPrefix", "destinationAddressPrefixes", flow.dst),
    ):
        texts = listed(single, plural)
        if "*" in texts:
            continue
        if any(t[0].isalpha() for t in texts):
            return None
        if not any(
            addr in ipaddress.ip_network(t)
            for t in texts
            if ipaddress.ip_network(t).version == addr.version
        ):
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(rules_st, rules_st, flows_st, contexts)
def test_evaluation_never_raises_and_the_index_agrees(
    subnet_rules: list[dict[str, Any]],
    nic_rules: list[dict[str, Any]],
    flow: Flow,
    ctx: TagContext,
) -> None:
    subnet = parse_nsg(doc(*subnet_rules, name="s"), "s.json")
    nic = parse_nsg(doc(*nic_rules, name="n"), "n.json")
    v = evaluate_flow(flow, subnet, nic, ctx)
    json.dumps(v.to_json())
    for lr, n in ((lr, subnet if lr.layer.value == "subnet" else nic) for lr in v.layers):
        certain, undecided = _walk_plainly(n, flow, ctx)
        assert (lr.decided_by.rule if lr.decided_by else None) == certain
        assert [u.rule.rule for u in lr.undecided if u.rule is not None] == undecided
    for raw in (*subnet_rules, *nic_rules):
        expected = _independent_match(raw, flow)
        if (
            expected is None
            or raw["properties"]["direction"].lower() != flow.direction.value.lower()
        ):
            continue
        n = subnet if raw in subnet_rules else nic
        parsed = next(r for r in n.rules(flow.direction) if r.name == raw["name"])
        assert match_rule(parsed, flow, ctx)[0] is expected, raw
    # The verdict follows from the layers, and the fix (if any) is well-formed.
    outcomes = {lr.outcome for lr in v.layers}
    if NsgFlowVerdict.DENY in outcomes:
        assert v.verdict is NsgFlowVerdict.DENY
        fix = propose_fix(v)
        assert fix is not None
        for fr in fix.rules:
            assert fr.priority is None or 100 <= fr.priority <= 4096
            deny = fr.denying_rule.priority
            if fr.moves_deny_to is None:
                assert fr.priority is None or fr.priority < deny
            else:  # no free slot below the deny: the deny moves up, the allow takes its place
                assert fr.priority == deny < fr.moves_deny_to <= 4096
                assert "rule update" in fr.commands[0] and "rule create" in fr.commands[1]
            assert fr.denying_rule.access is Access.DENY
    elif outcomes == {NsgFlowVerdict.ALLOW}:
        assert v.verdict is NsgFlowVerdict.ALLOW
    else:
        assert v.verdict is NsgFlowVerdict.UNKNOWN
        assert any(u.matters for u in v.undecided)
