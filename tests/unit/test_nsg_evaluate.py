"""NSG evaluation semantics: priority, layers and their order, tags, ASGs, undecided rules."""

from __future__ import annotations

import ipaddress

import pytest

from shared.analysis.nsg import (
    Flow,
    Layer,
    Nsg,
    NsgFlowVerdict,
    TagContext,
    evaluate_flow,
    load_service_tags,
    parse_nsg,
)
from shared.errors import InputError
from tests.unit.test_nsg_support import fixture, nsg, rule

VNET = TagContext(vnet_prefixes=(ipaddress.ip_network("10.224.0.0/12"),))
NO_CTX = TagContext()
ASG_WEB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg-web"


def inbound(
    src: str = "10.224.0.4", dst: str = "10.224.0.5", port: int = 10250, **kw: object
) -> Flow:
    return Flow("inbound", src, dst, port, **kw)  # type: ignore[arg-type]


def outbound(
    src: str = "10.224.0.4", dst: str = "20.50.1.2", port: int = 443, **kw: object
) -> Flow:
    return Flow("outbound", src, dst, port, **kw)  # type: ignore[arg-type]


def verdict_of(
    flow: Flow, subnet: Nsg | None, nic: Nsg | None = None, ctx: TagContext = VNET
) -> NsgFlowVerdict:
    return evaluate_flow(flow, subnet, nic, ctx).verdict


def test_deny_at_200_beats_allow_at_300() -> None:
    n = nsg(rule("allow", 300, dport="10250"), rule("deny", 200, "Deny", dport="10250"))
    v = evaluate_flow(inbound(), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.DENY
    assert [(r.rule, r.priority, r.layer) for r in v.decided_by] == [("deny", 200, Layer.SUBNET)]


def test_allow_at_200_beats_deny_at_300() -> None:
    n = nsg(rule("allow", 200, dport="10250"), rule("deny", 300, "Deny", dport="10250"))
    v = evaluate_flow(inbound(), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.ALLOW
    assert [r.rule for r in v.decided_by] == ["allow"]


def test_nic_nsg_denies_what_the_subnet_nsg_allows() -> None:
    subnet = nsg(rule("allow-kubelet", 100, dport="10250"), name="subnet-nsg")
    nic = nsg(rule("deny-kubelet", 100, "Deny", dport="10250"), name="nic-nsg")
    v = evaluate_flow(inbound(), subnet, nic, VNET)
    assert v.verdict is NsgFlowVerdict.DENY
    assert [lr.layer for lr in v.layers] == [Layer.SUBNET, Layer.NIC]  # inbound: subnet first
    assert [(r.nsg, r.rule, r.layer) for r in v.decided_by] == [
        ("nic-nsg", "deny-kubelet", Layer.NIC)
    ]
    assert v.layers[0].outcome is NsgFlowVerdict.ALLOW


def test_outbound_order_is_nic_then_subnet_and_both_must_allow() -> None:
    subnet = nsg(
        rule("deny-443", 100, "Deny", direction="Outbound", dport="443"), name="subnet-nsg"
    )
    nic = nsg(rule("allow-443", 100, direction="Outbound", dport="443"), name="nic-nsg")
    v = evaluate_flow(outbound(), subnet, nic, VNET)
    assert [lr.layer for lr in v.layers] == [Layer.NIC, Layer.SUBNET]
    assert v.verdict is NsgFlowVerdict.DENY
    assert [r.layer for r in v.decided_by] == [Layer.SUBNET]


def test_both_layers_denying_are_both_reported() -> None:
    subnet = nsg(rule("d1", 100, "Deny", dport="10250"), name="s")
    nic = nsg(rule("d2", 100, "Deny", dport="10250"), name="n")
    v = evaluate_flow(inbound(), subnet, nic, VNET)
    assert [r.rule for r in v.decided_by] == ["d1", "d2"]


def test_a_missing_layer_allows() -> None:
    assert verdict_of(inbound(), None, None) is NsgFlowVerdict.ALLOW
    v = evaluate_flow(inbound(), None, nsg(rule("ok", 100, dport="10250")), VNET)
    assert v.verdict is NsgFlowVerdict.ALLOW
    assert v.layers[0].nsg is None and v.layers[0].outcome is NsgFlowVerdict.ALLOW


def test_traffic_within_one_subnet_is_filtered() -> None:
    # source and destination in the same /24: the subnet NSG still applies
    n = nsg(rule("deny-intra", 100, "Deny", src="10.224.0.0/24", dst="10.224.0.0/24"))
    assert verdict_of(inbound("10.224.0.4", "10.224.0.5"), n) is NsgFlowVerdict.DENY


def test_inbound_rules_do_not_apply_to_outbound_flows() -> None:
    n = nsg(rule("deny-in", 100, "Deny"))
    assert verdict_of(outbound(dst="10.224.0.9"), n) is NsgFlowVerdict.ALLOW  # AllowVnetOutBound


def test_default_rules_apply_when_omitted() -> None:
    n = nsg()
    assert verdict_of(inbound(), n) is NsgFlowVerdict.ALLOW  # AllowVnetInBound
    v = evaluate_flow(inbound(src="203.0.113.7"), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.DENY and v.decided_by[0].rule == "DenyAllInBound"
    lb = evaluate_flow(inbound(src="168.63.129.16", dst="10.224.0.5"), n, None, TagContext())
    assert lb.verdict is NsgFlowVerdict.ALLOW
    assert lb.decided_by[0].rule in {"AllowVnetInBound", "AllowAzureLoadBalancerInBound"}
    assert verdict_of(outbound(dst="20.50.1.2"), n) is NsgFlowVerdict.ALLOW  # AllowInternetOutBound


@pytest.mark.parametrize(
    ("rule_proto", "flow_proto", "expected"),
    [
        ("Tcp", "tcp", NsgFlowVerdict.DENY),
        ("tcp", "tcp", NsgFlowVerdict.DENY),
        ("Udp", "tcp", NsgFlowVerdict.ALLOW),
        ("*", "udp", NsgFlowVerdict.DENY),
        ("Icmp", "icmp", NsgFlowVerdict.DENY),
        ("Esp", "esp", NsgFlowVerdict.DENY),
        ("Ah", "tcp", NsgFlowVerdict.ALLOW),
    ],
)
def test_protocols(rule_proto: str, flow_proto: str, expected: NsgFlowVerdict) -> None:
    n = nsg(rule("d", 100, "Deny", proto=rule_proto))
    assert verdict_of(inbound(proto=flow_proto), n) is expected


def test_any_protocol_and_esp_is_undecided() -> None:
    # The docs say Any covers TCP, UDP and ICMP; ESP/AH are not mentioned.
    n = nsg(rule("d", 100, "Deny", proto="*"))
    v = evaluate_flow(inbound(proto="esp"), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.UNKNOWN
    assert "ESP" in v.undecided[0].reasons[0].upper()


@pytest.mark.parametrize(
    ("dport", "port", "expected"),
    [
        ("10000-10250", 10250, NsgFlowVerdict.DENY),
        ("10250-10260", 10250, NsgFlowVerdict.DENY),
        ("10251-10260", 10250, NsgFlowVerdict.ALLOW),
        (["22", "10250"], 10250, NsgFlowVerdict.DENY),
        (["22", "443"], 10250, NsgFlowVerdict.ALLOW),
        ("0-65535", 1, NsgFlowVerdict.DENY),
    ],
)
def test_destination_ports(dport: str | list[str], port: int, expected: NsgFlowVerdict) -> None:
    n = nsg(rule("d", 100, "Deny", dport=dport))
    assert verdict_of(inbound(port=port), n) is expected


def test_source_ports_known_and_unknown() -> None:
    n = nsg(rule("d", 100, "Deny", sport="1000-2000"))
    assert verdict_of(inbound(sport=1500), n) is NsgFlowVerdict.DENY
    assert verdict_of(inbound(sport=3000), n) is NsgFlowVerdict.ALLOW
    v = evaluate_flow(inbound(), n, None, VNET)  # source port unknown
    assert v.verdict is NsgFlowVerdict.UNKNOWN
    assert v.undecided[0].matters and "source port" in v.undecided[0].reasons[0]


@pytest.mark.parametrize(
    ("src", "flow_src", "expected"),
    [
        ("10.224.0.4", "10.224.0.4", NsgFlowVerdict.DENY),
        ("10.224.0.4/32", "10.224.0.5", NsgFlowVerdict.ALLOW),
        ("10.224.0.0/16", "10.224.255.255", NsgFlowVerdict.DENY),
        ("0.0.0.0/0", "10.224.0.4", NsgFlowVerdict.DENY),
        (["192.168.0.0/16", "10.224.0.0/24"], "10.224.0.4", NsgFlowVerdict.DENY),
        ("*", "fd00::4", NsgFlowVerdict.DENY),
        ("Any", "fd00::4", NsgFlowVerdict.DENY),
        ("0.0.0.0/0", "fd00::4", NsgFlowVerdict.ALLOW),  # an IPv4 prefix never matches IPv6
        ("fd00::/64", "fd00::4", NsgFlowVerdict.DENY),
    ],
)
def test_source_addresses(src: str | list[str], flow_src: str, expected: NsgFlowVerdict) -> None:
    n = nsg(rule("d", 100, "Deny", src=src))
    dst = "fd00::5" if ":" in flow_src else "10.224.0.5"
    ctx = TagContext(
        vnet_prefixes=(ipaddress.ip_network("10.224.0.0/12"), ipaddress.ip_network("fd00::/8"))
    )
    assert verdict_of(inbound(src=flow_src, dst=dst), n, ctx=ctx) is expected


def test_virtual_network_tag_needs_prefixes() -> None:
    n = nsg(rule("deny-vnet", 100, "Deny", src="VirtualNetwork", dport="10250"))
    assert verdict_of(inbound(), n) is NsgFlowVerdict.DENY
    assert verdict_of(inbound(src="172.16.0.4"), n) is NsgFlowVerdict.DENY  # DenyAllInBound anyway
    v = evaluate_flow(inbound(), n, None, NO_CTX)
    assert v.verdict is NsgFlowVerdict.UNKNOWN
    assert any("--vnet-prefix" in r for u in v.undecided for r in u.reasons)


def test_internet_tag() -> None:
    n = nsg(rule("allow-inet", 100, src="Internet", dport="10250"))
    # 203.0.113.0/24 is reserved for documentation: not global, so undecided like private space
    assert verdict_of(inbound(src="203.0.113.9"), n) is NsgFlowVerdict.UNKNOWN
    assert verdict_of(inbound(src="8.8.8.8"), n) is NsgFlowVerdict.ALLOW  # public, outside the VNet
    assert (
        verdict_of(inbound(src="10.224.0.9"), n) is NsgFlowVerdict.ALLOW
    )  # in the VNet: AllowVnetInBound
    v = evaluate_flow(inbound(src="192.168.1.1"), n, None, VNET)  # private, outside the VNet
    assert v.verdict is NsgFlowVerdict.UNKNOWN
    assert "does not say" in v.undecided[0].reasons[0]
    assert evaluate_flow(inbound(src="8.8.8.8"), n, None, NO_CTX).verdict is NsgFlowVerdict.UNKNOWN


def test_in_vnet_address_is_not_internet() -> None:
    n = nsg(rule("deny-inet", 100, "Deny", direction="Outbound", dst="Internet"))
    # a VNet that also uses public address space
    ctx = TagContext(
        vnet_prefixes=tuple(map(ipaddress.ip_network, ("10.224.0.0/12", "20.50.0.0/16")))
    )
    assert verdict_of(outbound(dst="20.50.1.2"), n, ctx=ctx) is NsgFlowVerdict.ALLOW
    assert verdict_of(outbound(dst="20.60.1.2"), n, ctx=ctx) is NsgFlowVerdict.DENY


def test_azure_load_balancer_tag_and_classic_spelling() -> None:
    n = nsg(rule("deny-lb", 100, "Deny", src="AZURE_LOADBALANCER"))
    assert verdict_of(inbound(src="168.63.129.16"), n) is NsgFlowVerdict.DENY
    assert verdict_of(inbound(src="10.224.0.4"), n) is NsgFlowVerdict.ALLOW


def test_service_tags_from_file() -> None:
    tags = load_service_tags(fixture("service-tags.json"), "tags.json")
    ctx = TagContext(vnet_prefixes=VNET.vnet_prefixes, service_tags=tags)
    n = nsg(
        rule("deny-we", 100, "Deny", direction="Outbound", dst="AzureCloud.WestEurope", dport="443")
    )
    assert verdict_of(outbound(dst="20.50.1.2"), n, ctx=ctx) is NsgFlowVerdict.DENY
    assert verdict_of(outbound(dst="20.38.98.1"), n, ctx=ctx) is NsgFlowVerdict.ALLOW
    # no file: the tag is undecided, and it matters (deny vs AllowInternetOutBound)
    v = evaluate_flow(outbound(dst="20.50.1.2"), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.UNKNOWN and "--service-tags" in v.undecided[0].reasons[0]
    # a tag the file lacks is undecided too
    other = nsg(rule("deny-sql", 100, "Deny", direction="Outbound", dst="Sql.EastUS"))
    v = evaluate_flow(outbound(dst="20.50.1.2"), other, None, ctx)
    assert v.verdict is NsgFlowVerdict.UNKNOWN and "not in tags.json" in v.undecided[0].reasons[0]


def test_application_security_groups() -> None:
    n = nsg(
        rule(
            "deny-web",
            100,
            "Deny",
            src="",
            dport="10250",
            sourceApplicationSecurityGroups=[{"id": ASG_WEB}],
        )
    )
    assert verdict_of(inbound(src_asgs=frozenset({ASG_WEB.upper()})), n) is NsgFlowVerdict.DENY
    assert verdict_of(inbound(src_asgs=frozenset({"/other"})), n) is NsgFlowVerdict.ALLOW
    assert verdict_of(inbound(src_asgs=frozenset()), n) is NsgFlowVerdict.ALLOW
    v = evaluate_flow(inbound(src_asgs=None), n, None, VNET)
    assert (
        v.verdict is NsgFlowVerdict.UNKNOWN
        and "application security group" in v.undecided[0].reasons[0]
    )


def test_destination_asgs() -> None:
    n = nsg(
        rule("deny", 100, "Deny", dst="", destinationApplicationSecurityGroups=[{"id": ASG_WEB}])
    )
    assert verdict_of(inbound(dst_asgs=frozenset({ASG_WEB})), n) is NsgFlowVerdict.DENY
    assert verdict_of(inbound(dst_asgs=frozenset()), n) is NsgFlowVerdict.ALLOW


def test_undecided_rule_that_does_not_matter() -> None:
    # An undecided allow followed by a certain allow: allow either way.
    n = nsg(rule("maybe", 100, src="Storage.EastUS"), rule("allow", 200, dport="10250"))
    v = evaluate_flow(inbound(), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.ALLOW
    assert [r.rule for r in v.decided_by] == ["allow"]
    assert len(v.undecided) == 1 and not v.undecided[0].matters


def test_undecided_layer_does_not_matter_when_the_other_layer_denies() -> None:
    subnet = nsg(rule("maybe-deny", 100, "Deny", src="Storage.EastUS"), name="s")
    nic = nsg(rule("deny", 100, "Deny", dport="10250"), name="n")
    v = evaluate_flow(inbound(), subnet, nic, VNET)
    assert v.verdict is NsgFlowVerdict.DENY
    assert v.layers[0].outcome is NsgFlowVerdict.UNKNOWN
    assert not any(u.matters for u in v.undecided)


def test_undecided_rule_that_matters() -> None:
    n = nsg(
        rule("maybe-deny", 100, "Deny", src="Storage.EastUS"), rule("allow", 200, dport="10250")
    )
    v = evaluate_flow(inbound(), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.UNKNOWN
    assert v.undecided[0].matters and v.undecided[0].rule is not None
    assert v.undecided[0].rule.rule == "maybe-deny"
    assert v.to_json()["verdict"] == "unknown"


def test_matters_considers_later_undecided_rules() -> None:
    # maybe-allow (100) then maybe-deny (200) then allow: both matter
    n = nsg(
        rule("maybe-allow", 100, src="Storage.EastUS"),
        rule("maybe-deny", 200, "Deny", src="AzureCloud"),
        rule("allow", 300),
    )
    v = evaluate_flow(inbound(), n, None, VNET)
    assert v.verdict is NsgFlowVerdict.UNKNOWN
    assert [(u.rule.rule if u.rule else None, u.matters) for u in v.undecided] == [
        ("maybe-allow", True),
        ("maybe-deny", True),
    ]


def test_json_document_shape() -> None:
    n = nsg(rule("deny", 200, "Deny", dport="10250"))
    doc = evaluate_flow(inbound(), n, None, VNET).to_json()
    assert set(doc) >= {"verdict", "decided_by", "undecided", "flow", "layers"}
    assert set(doc["decided_by"][0]) >= {"nsg", "rule", "priority", "access", "direction", "layer"}
    assert doc["decided_by"][0]["layer"] == "subnet"
    assert doc["flow"] == {
        "direction": "inbound",
        "protocol": "tcp",
        "src": "10.224.0.4",
        "dst": "10.224.0.5",
        "sport": None,
        "dport": 10250,
        "src_asgs": [],
        "dst_asgs": [],
    }


def test_fixture_pair_end_to_end() -> None:
    subnet = parse_nsg(fixture("subnet-nsg-rest.json"), "subnet.json")
    nic = parse_nsg(fixture("nic-nsg-az.json"), "nic.json")
    v = evaluate_flow(inbound(), subnet, nic, VNET)
    assert v.verdict is NsgFlowVerdict.DENY
    assert [r.rule for r in v.decided_by] == ["deny-kubelet-from-anywhere", "deny-kubelet-ports"]
    eff = parse_nsg(fixture("effective-nic.json"), "eff.json")
    # the expanded Internet prefixes decide without --vnet-prefix
    assert (
        evaluate_flow(outbound(dst="20.50.1.2"), None, eff, NO_CTX).verdict is NsgFlowVerdict.ALLOW
    )
    udp = outbound(dst="20.50.1.2", port=1194, proto="udp")
    assert evaluate_flow(udp, None, eff, NO_CTX).verdict is NsgFlowVerdict.DENY


@pytest.mark.parametrize(
    "kwargs",
    [
        {"direction": "up"},
        {"src": "10.0.0.300"},
        {"dst": ""},
        {"dport": 70000},
        {"dport": True},
        {"sport": -1},
        {"proto": "gre"},
        {"proto": "*"},
        {"src_asgs": "/one/id"},
    ],
)
def test_bad_flows_are_input_errors(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "direction": "inbound",
        "src": "10.0.0.1",
        "dst": "10.0.0.2",
        "dport": 1,
    }
    args.update(kwargs)
    with pytest.raises(InputError):
        Flow(**args)  # type: ignore[arg-type]
