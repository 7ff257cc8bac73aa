"""Parsing NSG documents: the shapes ARM and az produce, and exact errors for bad input."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path

import pytest

from shared.analysis.nsg import (
    Access,
    Direction,
    PortRange,
    Protocol,
    Rule,
    load_service_tags,
    parse_nsg,
    parse_nsg_text,
)
from shared.analysis.nsg.model import IpRange
from shared.analysis.nsg.parse import parse_resource_id
from shared.errors import InputError
from tests.unit.test_nsg_support import doc, fixture, rule


def _names(rules: tuple[Rule, ...]) -> list[str]:
    return [r.name for r in rules]


def test_rest_shape_with_defaults() -> None:
    n = parse_nsg(fixture("subnet-nsg-rest.json"), "subnet.json")
    assert n.name == "aks-agentpool-31415926-nsg"
    assert n.resource_group == "MC_rg-tw_aks-tw_westeurope"
    assert n.id.endswith("/networkSecurityGroups/aks-agentpool-31415926-nsg")
    # sorted by priority regardless of file order; the file's defaults are used, not doubled
    assert _names(n.inbound) == [
        "deny-ssh",
        "deny-kubelet-from-anywhere",
        "allow-kubelet-from-vnet",
        "AllowVnetInBound",
        "AllowAzureLoadBalancerInBound",
        "DenyAllInBound",
    ]
    assert [r.priority for r in n.outbound] == [65000, 65001, 65500]
    assert all(r.default for r in n.inbound[3:]) and not any(r.default for r in n.inbound[:3])
    deny = n.inbound[1]
    assert deny.access is Access.DENY and deny.protocol is Protocol.TCP
    assert deny.destination_ports == (PortRange(10250, 10250),)
    assert deny.source.any and deny.destination.any
    assert n.inbound[2].source.tags == ("VirtualNetwork",)


def test_az_flattened_shape_plural_fields_and_asgs() -> None:
    n = parse_nsg(fixture("nic-nsg-az.json"), "nic.json")
    assert (n.name, n.resource_group) == ("nsg-nodes-nic", "rg-tw-net")
    deny = next(r for r in n.inbound if r.name == "deny-kubelet-ports")
    assert deny.protocol is Protocol.TCP  # "TCP": case-insensitive
    assert deny.destination_ports == (PortRange(10250, 10250), PortRange(10255, 10256))
    assert deny.source.ranges == (
        IpRange.of(ipaddress.ip_network("10.224.0.0/16")),
        IpRange.of(ipaddress.ip_network("192.168.10.0/24")),
    )
    web = next(r for r in n.inbound if r.name == "allow-web-from-asg")
    assert web.source.asgs == frozenset(
        {
            "/subscriptions/00000000-1111-2222-3333-444444444444/resourcegroups/rg-tw-net"
            "/providers/microsoft.network/applicationsecuritygroups/asg-web"
        }
    )
    # "defaultSecurityRules": [] -> Azure's defaults are added
    assert [r.name for r in n.outbound] == [
        "deny-azurecloud-https",
        "AllowVnetOutBound",
        "AllowInternetOutBound",
        "DenyAllOutBound",
    ]


def test_bare_rule_list_takes_identity_from_rule_ids() -> None:
    n = parse_nsg(fixture("rule-list-az.json"), "rules.json")
    assert (n.name, n.resource_group) == ("nsg-from-list", "rg-list")
    assert [r.priority for r in n.inbound] == [150, 4000, 65000, 65001, 65500]
    assert len(n.outbound) == 3


def test_arm_list_response_value_of_rules() -> None:
    n = parse_nsg({"value": fixture("rule-list-az.json")}, "value.json")
    assert n.name == "nsg-from-list" and n.inbound[0].name == "allow-kubelet"


def test_effective_rules_shape() -> None:
    n = parse_nsg(fixture("effective-nic.json"), "eff.json")
    assert (n.name, n.resource_group) == ("nsg-eff", "rg-eff")
    assert [r.name for r in n.outbound] == [
        "deny-tunnel-egress",
        "AllowVnetOutBound",  # added: the effective list left its slot empty
        "AllowInternetOutBound",
        "DenyAllOutBound",
    ]
    internet = n.outbound[2]
    assert internet.protocol is Protocol.ANY  # "All"
    assert internet.default
    assert internet.destination.tags == ()  # the expanded prefixes replace the tag
    assert IpRange.of(ipaddress.ip_network("32.0.0.0/3")) in internet.destination.ranges


def test_effective_rules_for_two_nsgs_is_refused() -> None:
    entry = fixture("effective-nic.json")["value"][0]
    with pytest.raises(InputError, match="2 NSGs"):
        parse_nsg({"value": [entry, copy.deepcopy(entry)]}, "eff.json")


def test_singular_and_plural_are_a_union() -> None:
    r = rule("both", 100, dport="80", destinationPortRanges=["443", "8000-8100"])
    n = parse_nsg(doc(r), "x.json")
    assert n.inbound[0].destination_ports == (
        PortRange(80, 80),
        PortRange(443, 443),
        PortRange(8000, 8100),
    )


def test_any_spellings_and_ipv6() -> None:
    r = rule("v6", 100, proto="Any", src="Any", dst=["2001:db8::/32", "fd00::1"], dport="Any")
    parsed = parse_nsg(doc(r), "x.json").inbound[0]
    assert parsed.protocol is Protocol.ANY and parsed.source.any
    assert parsed.destination_ports == (PortRange(0, 65535),)
    assert [x.version for x in parsed.destination.ranges] == [6, 6]


def test_partial_defaults_are_completed() -> None:
    d = doc(rule("a", 100))
    d["properties"]["defaultSecurityRules"] = [rule("DenyAllInBound", 65500, "Deny")]
    n = parse_nsg(d, "x.json")
    assert [r.priority for r in n.inbound] == [100, 65000, 65001, 65500]
    assert [r.priority for r in n.outbound] == [65000, 65001, 65500]


def test_no_rules_at_all_means_only_defaults() -> None:
    n = parse_nsg({"name": "empty", "properties": {"securityRules": []}}, "x.json")
    assert [r.name for r in n.inbound] == [
        "AllowVnetInBound",
        "AllowAzureLoadBalancerInBound",
        "DenyAllInBound",
    ]
    assert n.resource_group == "" and n.name == "empty"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["properties"].pop("priority"), "rule 'r1' (securityRules[0]): field 'priority' is missing"),
        (lambda r: r["properties"].update(priority="high"), "field 'priority' must be an integer"),
        (lambda r: r["properties"].update(priority=5000), "priority' is 5000"),
        (lambda r: r["properties"].update(direction="Sideways"), "field 'direction' must be Inbound or Outbound"),
        (lambda r: r["properties"].update(access="Maybe"), "field 'access' must be Allow or Deny"),
        (lambda r: r["properties"].update(protocol="Gre"), "field 'protocol' must be Tcp"),
        (lambda r: r["properties"].update(destinationPortRange="70000"), "within 0-65535"),
        (lambda r: r["properties"].update(destinationPortRange="90-80"), "within 0-65535"),
        (lambda r: r["properties"].update(destinationPortRange="http"), "not a port or a range"),
        (lambda r: r["properties"].update(sourceAddressPrefix="10.0.0.300"), "not an IP, CIDR"),
        (lambda r: r["properties"].update(sourceAddressPrefix="a b"), "not an IP, CIDR"),
        (lambda r: r["properties"].update(sourceAddressPrefix=""), "'sourceAddressPrefix' (or"),
        (lambda r: r["properties"].update(destinationPortRanges="80"), "must be a list of strings"),
        (lambda r: r["properties"].update(destinationPortRanges=[80]), "must be a string"),
        (lambda r: r["properties"].update(sourceApplicationSecurityGroups=[{}]), "has no 'id'"),
        (lambda r: r.pop("name"), "securityRules[0]: field 'name' is missing"),
        (lambda r: r.update(properties=[]), "'properties' must be an object"),
    ],
)  # fmt: skip
def test_bad_rule_fields_name_the_rule_and_field(mutate: object, message: str) -> None:
    r = rule("r1", 100, dport="10250")
    mutate(r)  # type: ignore[operator]
    with pytest.raises(InputError) as err:
        parse_nsg(doc(r), "nsg.json")
    assert err.value.source == "nsg.json"
    assert message in err.value.message


def test_duplicate_priority_in_one_direction_is_an_error() -> None:
    with pytest.raises(InputError, match="share priority 100"):
        parse_nsg(doc(rule("a", 100), rule("b", 100)), "x.json")
    # the same priority in the other direction is fine
    n = parse_nsg(doc(rule("a", 100), rule("b", 100, direction="Outbound")), "x.json")
    assert n.inbound[0].name == "a" and n.outbound[0].name == "b"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (42, "top level is int"),
        ({"hello": 1}, "not an NSG document"),
        ({"securityRules": {"a": 1}}, "must be a list of rules"),
        ([1], r"rule list\[0\]: expected a rule object"),
    ],
)
def test_bad_documents(document: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_nsg(document, "x.json")


def test_bad_json_names_the_line() -> None:
    with pytest.raises(InputError) as err:
        parse_nsg_text('{\n  "name": "x",\n  oops\n}', "broken.json")
    assert err.value.line == 3
    assert str(err.value).startswith("broken.json:3: not valid JSON")


def test_resource_id_parsing_is_case_insensitive() -> None:
    rid = "/subscriptions/s/resourcegroups/RG-1/providers/Microsoft.Network/NETWORKSECURITYGROUPS/n1/securityRules/r"
    assert parse_resource_id(rid) == ("RG-1", "n1")
    assert parse_resource_id("") == ("", "")


def test_directions_are_separate() -> None:
    n = parse_nsg(doc(rule("o", 100, "Deny", direction="outbound")), "x.json")
    assert n.outbound[0].direction is Direction.OUTBOUND
    assert n.inbound[0].name == "AllowVnetInBound"


def test_service_tags_file() -> None:
    tags = load_service_tags(fixture("service-tags.json"), "tags.json")
    assert len(tags) == 3
    westeurope = tags.get("azurecloud.WESTEUROPE")
    assert westeurope is not None
    assert ipaddress.ip_address("20.50.1.2") in westeurope
    assert ipaddress.ip_address("20.38.98.1") not in westeurope
    cloud = tags.get("AzureCloud")
    assert cloud is not None and ipaddress.ip_address("2603:1000::1") in cloud
    assert tags.get("Sql") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"name": "x"}, "no 'values' list"),
        ({"values": {}}, "must be a list"),
        ({"values": [{"properties": {"addressPrefixes": []}}]}, "service tag #0: field 'name'"),
        ({"values": [{"name": "T"}]}, r"service tag 'T' \(#0\): field 'properties'"),
        ({"values": [{"name": "T", "properties": {}}]}, "addressPrefixes' is missing"),
        (
            {"values": [{"name": "T", "properties": {"addressPrefixes": ["1.2.3.4/40"]}}]},
            r"addressPrefixes\[0\] '1.2.3.4/40' is not a CIDR",
        ),
    ],
)
def test_bad_service_tags(document: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_service_tags(document, "tags.json")


REFERENCE = Path("/work/shared/reference/arm-examples")


@pytest.mark.skipif(
    not REFERENCE.is_dir(), reason="the ARM reference examples are not on this machine"
)
def test_the_arm_reference_examples_parse() -> None:
    """The verbatim azure-rest-api-specs examples (read in place, not copied into the repo)."""

    def body(name: str) -> object:
        return json.loads((REFERENCE / name).read_text())["responses"]["200"]["body"]

    n = parse_nsg(body("NetworkSecurityGroupGet_2024-05-01.json"), "get.json")
    assert (n.name, n.resource_group) == ("testnsg", "rg1")
    assert n.inbound[0].name == "rule1" and len(n.inbound) == 4
    eff = parse_nsg(body("NetworkInterfaceEffectiveNSGList_2024-07-01.json"), "eff.json")
    assert (eff.name, eff.resource_group) == ("test-nsg", "rg1")
    assert [r.name for r in eff.inbound][:2] == ["rule1", "default-allow-rdp"]
    assert eff.inbound[0].source_ports == (PortRange(456, 456),)
    tags = load_service_tags(body("ServiceTagsList_2024-07-01.json"), "tags.json")
    assert tags.get("ServiceBus.EastUS2") is not None and len(tags) == 5
