"""The proposed fix: priority choice, rule name, the az command, and that it really fixes."""

from __future__ import annotations

import ipaddress

import pytest

from shared.analysis.findings import TUNNEL_POD_REMINDER, Cause, Kind, Origin, Severity, Subject
from shared.analysis.nsg import (
    Fix,
    Flow,
    Nsg,
    NsgFlowVerdict,
    NsgVerdict,
    TagContext,
    choose_priority,
    evaluate_flow,
    findings_for,
    parse_nsg,
    propose_fix,
)
from shared.analysis.nsg.fix import rule_name
from shared.analysis.nsg.model import Direction, Protocol
from tests.unit.test_nsg_support import doc, fixture, nsg, rule

VNET = TagContext(vnet_prefixes=(ipaddress.ip_network("10.224.0.0/12"),))
FLOW = Flow("inbound", "10.224.0.4", "10.224.0.5", 10250)


def _deny(n: Nsg, flow: Flow = FLOW) -> NsgVerdict:
    v = evaluate_flow(flow, n, None, VNET)
    assert v.verdict is NsgFlowVerdict.DENY
    return v


@pytest.mark.parametrize(
    ("used", "deny", "expected"),
    [
        (set(), 200, 199),  # right below the deny
        ({199, 198}, 200, 197),  # collisions skipped
        ({150, 199}, 200, 198),
        (set(), 65500, 4096),  # below a default rule: the top of the custom range
        ({4096, 4095}, 65500, 4094),
        (set(), 100, None),  # nothing below 100
        ({100, 101, 102}, 103, None),
        (set(), 101, 100),
    ],
)
def test_choose_priority(used: set[int], deny: int, expected: int | None) -> None:
    assert choose_priority(used | {deny}, deny) == expected


def test_fix_rule_and_exact_az_command() -> None:
    n = parse_nsg(
        doc(rule("deny", 200, "Deny", dport="10250"), name="aks-nsg", rg="MC_rg"), "x.json"
    )
    fix = propose_fix(_deny(n), fix_source="10.224.0.0/16")
    assert fix is not None and len(fix.rules) == 1
    r = fix.rules[0]
    assert (r.name, r.priority, r.nsg_name, r.resource_group) == (
        "allow-tunnel-tcp-10250-from-10-224-0-0-16",
        199,
        "aks-nsg",
        "MC_rg",
    )
    assert fix.commands == (
        "az network nsg rule create --resource-group MC_rg --nsg-name aks-nsg "
        "--name allow-tunnel-tcp-10250-from-10-224-0-0-16 --priority 199 --direction Inbound "
        "--access Allow --protocol Tcp --source-address-prefixes 10.224.0.0/16 "
        "--source-port-ranges '*' --destination-address-prefixes 10.224.0.5/32 "
        "--destination-port-ranges 10250",
    )
    j = fix.to_json()
    assert j["rules"][0]["rule"]["source_address_prefixes"] == ["10.224.0.0/16"]
    assert j["rules"][0]["denying_rule"]["rule"] == "deny"


def test_default_source_is_the_flow_source_host_and_destination_override() -> None:
    n = nsg(rule("deny", 200, "Deny", dport="10250"))
    fix = propose_fix(_deny(n), fix_destination="10.224.0.0/16")
    assert fix is not None
    assert fix.rules[0].source_prefixes == ("10.224.0.4/32",)
    assert fix.rules[0].destination_prefixes == ("10.224.0.0/16",)


def test_ipv6_host_prefix() -> None:
    n = nsg(rule("deny", 200, "Deny"))
    v = evaluate_flow(Flow("inbound", "fd00::4", "fd00::5", 10250), n, None, VNET)
    fix = propose_fix(v)
    assert fix is not None and fix.rules[0].source_prefixes == ("fd00::4/128",)
    assert fix.rules[0].name == "allow-tunnel-tcp-10250-from-fd00-4-128"


def test_no_fix_unless_deny() -> None:
    assert propose_fix(evaluate_flow(FLOW, nsg(rule("ok", 100)), None, VNET)) is None


def test_placeholder_without_resource_id() -> None:
    n = parse_nsg([rule("deny", 200, "Deny")], "rules.json")
    fix = propose_fix(_deny(n))
    assert fix is not None
    assert "--resource-group <resource-group> --nsg-name <nsg-name>" in fix.commands[0]
    assert any("no resource id" in note for note in fix.notes)


def test_name_collision_gets_a_suffix() -> None:
    taken = {"allow-tunnel-tcp-10250-from-10-224-0-4-32"}
    n = nsg(
        rule("deny", 200, "Deny"), rule("Allow-Tunnel-Tcp-10250-From-10-224-0-4-32", 300, dport="1")
    )
    fix = propose_fix(_deny(n))
    assert fix is not None and fix.rules[0].name == "allow-tunnel-tcp-10250-from-10-224-0-4-32-2"
    assert rule_name(Protocol.TCP, 443, Direction.OUTBOUND, "20.1.2.3/32", taken) == (
        "allow-tunnel-tcp-443-to-20-1-2-3-32"
    )
    long = rule_name(
        Protocol.TCP, 10250, Direction.INBOUND, "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff/128" * 2
    )
    assert len(long) <= 80 and long[-1].isalnum()


def test_deny_at_100_proposes_moving_the_deny() -> None:
    n = nsg(rule("deny-first", 100, "Deny", dport="10250"), rule("other", 101, dport="22"))
    fix = propose_fix(_deny(n))
    assert fix is not None
    r = fix.rules[0]
    assert r.priority == 100
    assert r.commands[0] == (
        "az network nsg rule update --resource-group rg-test --nsg-name nsg-test "
        "--name deny-first --priority 102"
    )
    assert "--priority 100 " in r.commands[1]
    assert any("no free priority below deny rule deny-first (100)" in n for n in r.notes)
    assert any("other" in n for n in r.notes)  # the rule that would move ahead of the deny
    assert_fix_works(n, fix)


def test_both_denying_layers_get_a_fix_in_their_own_nsg() -> None:
    subnet = nsg(rule("d1", 300, "Deny", dport="10250"), name="s", rg="rg-s")
    nic = nsg(rule("d2", 500, "Deny", dport="10250"), name="n", rg="rg-n")
    v = evaluate_flow(FLOW, subnet, nic, VNET)
    fix = propose_fix(v)
    assert fix is not None
    assert [(r.layer.value, r.nsg_name, r.priority) for r in fix.rules] == [
        ("subnet", "s", 299),
        ("nic", "n", 499),
    ]


def test_the_allow_goes_before_an_undecided_deny_too() -> None:
    n = nsg(rule("maybe-deny", 150, "Deny", src="Storage.EastUS"), rule("deny", 300, "Deny"))
    v = _deny(n)
    fix = propose_fix(v)
    assert fix is not None and fix.rules[0].priority == 149
    assert any("maybe-deny" in note for note in fix.rules[0].notes)


def test_outbound_fix() -> None:
    n = nsg(rule("deny-443", 400, "Deny", direction="Outbound", dport="443"))
    v = evaluate_flow(Flow("outbound", "10.224.0.4", "20.50.1.2", 443), None, n, VNET)
    fix = propose_fix(v, fix_source="10.224.0.0/16")
    assert fix is not None
    r = fix.rules[0]
    assert (r.direction, r.priority, r.name) == (
        Direction.OUTBOUND,
        399,
        "allow-tunnel-tcp-443-to-20-50-1-2-32",
    )
    assert "--direction Outbound" in r.commands[0]


def assert_fix_works(n: Nsg, fix: Fix, flow: Flow = FLOW) -> None:
    """Apply the proposed commands to the document and re-evaluate: the flow is allowed."""
    rules = []
    moved: dict[str, int] = {}
    for c in fix.commands:
        words = c.split()
        prio = int(words[words.index("--priority") + 1])
        name = words[words.index("--name") + 1]
        if words[4] == "update":
            moved[name] = prio
            continue
        src = words[words.index("--source-address-prefixes") + 1]
        dst = words[words.index("--destination-address-prefixes") + 1]
        port = words[words.index("--destination-port-ranges") + 1]
        direction = words[words.index("--direction") + 1]
        rules.append(rule(name, prio, src=src, dst=dst, dport=port, direction=direction))
    existing = [
        rule(
            r.name,
            moved.get(r.name, r.priority),
            r.access.value,
            direction=r.direction.value,
            proto=r.protocol.value,
            src=list(r.source.text),
            dst=list(r.destination.text),
            dport=[str(p) for p in r.destination_ports],
            sport=[str(p) for p in r.source_ports],
        )
        for r in (*n.inbound, *n.outbound)
        if not r.default
    ]
    fixed = parse_nsg(doc(*existing, *rules), "fixed.json")
    assert evaluate_flow(flow, fixed, None, VNET).verdict is NsgFlowVerdict.ALLOW


@pytest.mark.parametrize("priorities", [[200], [100], [100, 101, 102, 104], [150, 149, 148, 300]])
def test_applying_the_fix_allows_the_flow(priorities: list[int]) -> None:
    rules = [rule(f"deny-{p}", p, "Deny", dport="10250") for p in priorities]
    n = nsg(*rules)
    fix = propose_fix(_deny(n))
    assert fix is not None and fix.commands
    assert_fix_works(n, fix)


def test_findings_for_inbound_deny() -> None:
    subnet = parse_nsg(fixture("subnet-nsg-rest.json"), "subnet.json")
    v = evaluate_flow(FLOW, subnet, None, VNET)
    fix = propose_fix(v, fix_source="10.224.0.0/16")
    [f] = findings_for(v, Subject(cluster="aks-tw", resource=subnet.id), fix=fix)
    assert (f.cause, f.origin, f.kind, f.severity) == (
        Cause.NSG,
        Origin.ARTICLE,
        Kind.PROBLEM,
        Severity.CRITICAL,
    )
    assert f.check == "nsg.inbound"
    assert f.remediation is not None and fix is not None
    assert f.remediation.commands == fix.commands
    assert f.remediation.notes[-1] == TUNNEL_POD_REMINDER
    assert any("deny-kubelet-from-anywhere" in e and "200" in e for e in f.evidence)
    assert "nic: no NSG" in " ".join(f.evidence)
    # the same verdict gives the same fingerprint; rewording does not enter it
    [g] = findings_for(v, Subject(cluster="aks-tw", resource=subnet.id))
    assert g.fingerprint == f.fingerprint


@pytest.mark.parametrize(
    ("port", "proto", "origin"),
    [
        (443, "tcp", Origin.TUNNELWATCH),
        (9000, "tcp", Origin.ARTICLE),
        (1194, "udp", Origin.ARTICLE),
    ],
)
def test_findings_for_egress(port: int, proto: str, origin: Origin) -> None:
    n = nsg(rule("deny-out", 100, "Deny", direction="Outbound", proto="*"))
    v = evaluate_flow(Flow("outbound", "10.224.0.4", "20.50.1.2", port, proto), n, None, VNET)
    [f] = findings_for(v, Subject())
    assert (f.cause, f.origin, f.check) == (Cause.EGRESS, origin, "nsg.outbound")


def test_findings_for_unknown_and_allow() -> None:
    n = nsg(rule("maybe", 100, "Deny", src="Storage.EastUS"), rule("ok", 200))
    v = evaluate_flow(FLOW, n, None, VNET)
    [f] = findings_for(v, Subject())
    assert f.kind is Kind.INCONCLUSIVE and f.severity is Severity.WARNING
    assert any("maybe" in e and "--service-tags" in e for e in f.evidence)
    assert findings_for(evaluate_flow(FLOW, nsg(rule("ok", 100)), None, VNET), Subject()) == []
