"""The nftables walk: the semantics of base chains, verdicts, maps and sets, on small rulesets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from shared.analysis.nftables import Packet, PacketVerdict, evaluate_input, parse_ruleset
from tests.unit.test_nft_build import (
    ACCEPT,
    CT_STATE,
    DADDR,
    DPORT,
    DROP,
    IIFNAME,
    KUBE_PROXY,
    SADDR,
    chain,
    doc,
    m,
    rule,
    table,
)

NODE = IPv4Address("10.224.0.4")
API = IPv4Address("10.224.0.99")
PKT = Packet(src=API, dst=NODE, in_iface="eth0", sport=40000)
REJECT = {"reject": {"type": "tcp reset"}}


def verdict(*items: Any, packet: Packet = PKT) -> Any:
    return evaluate_input(parse_ruleset(doc(table(), *items), "t"), packet)


def test_accept_ends_only_its_base_chain() -> None:
    v = verdict(
        chain("a", "input", -10),
        rule("a", 2, ACCEPT),
        chain("b", "input", 10),
        rule("b", 3, m(DPORT, 10250), DROP),
    )
    assert v.verdict is PacketVerdict.DROP
    assert (v.decided_by.chain, v.decided_by.handle) == ("b", 3)
    assert [s.action for s in v.trace] == ["accept", "drop"]


def test_priority_order_not_listing_order() -> None:
    v = verdict(
        chain("late", "input", 10),
        rule("late", 2, REJECT),
        chain("early", "input", -10),
        rule("early", 3, DROP),
    )
    assert v.verdict is PacketVerdict.DROP and v.decided_by.chain == "early"


def test_prerouting_runs_before_input() -> None:
    v = verdict(
        chain("in", "input", -300),
        rule("in", 2, REJECT),
        chain("pre", "prerouting", 300),
        rule("pre", 3, m(SADDR, str(API)), DROP),
    )
    assert v.verdict is PacketVerdict.DROP and v.decided_by.chain == "pre"


def test_policy_drop_and_accepting_rule() -> None:
    assert verdict(chain("in", "input", 0, "drop")).verdict is PacketVerdict.DROP
    v = verdict(chain("in", "input", 0, "drop"), rule("in", 2, m(DPORT, 10250), ACCEPT))
    assert v.verdict is PacketVerdict.ACCEPT


def test_jump_return_and_goto() -> None:
    jump = {"jump": {"target": "sub"}}
    goto = {"goto": {"target": "sub"}}
    sub = [
        chain("sub"),
        rule("sub", 5, m(SADDR, "10.0.0.1"), DROP),
        rule("sub", 6, {"return": None}),
    ]
    # jump: back to the caller, whose next rule rejects
    v = verdict(chain("in", "input"), rule("in", 2, jump), rule("in", 3, REJECT), *sub)
    assert v.verdict is PacketVerdict.REJECT
    # goto: the caller's rest is skipped; the end comes back to the base chain's policy
    v = verdict(chain("in", "input", 0, "drop"), rule("in", 2, goto), rule("in", 3, ACCEPT), *sub)
    assert v.verdict is PacketVerdict.DROP and v.decided_by.policy == "drop"


def test_continue_counter_and_log_change_nothing() -> None:
    v = verdict(
        chain("in", "input", 0, "drop"),
        rule(
            "in",
            2,
            {"counter": {"packets": 0, "bytes": 0}},
            {"log": {"prefix": "x"}},
            {"continue": None},
        ),
        rule("in", 3, m(DPORT, 10250), ACCEPT),
    )
    assert v.verdict is PacketVerdict.ACCEPT


def test_sets_prefixes_ranges_and_negation() -> None:
    anon = {"set": [{"prefix": {"addr": "10.224.0.0", "len": 24}}, "1.2.3.4"]}
    v = verdict(
        chain("in", "input"),
        rule("in", 2, m(SADDR, anon), m(DPORT, {"range": [10000, 10300]}), DROP),
    )
    assert v.verdict is PacketVerdict.DROP
    v = verdict(chain("in", "input"), rule("in", 2, m(SADDR, anon, "!="), DROP))
    assert v.verdict is PacketVerdict.ACCEPT
    named = {
        "set": {
            "family": "inet",
            "table": "fw",
            "name": "blocked",
            "type": "ipv4_addr",
            "flags": ["interval"],
            "elem": [{"range": ["10.224.0.90", "10.224.0.120"]}],
        }
    }
    v = verdict(named, chain("in", "input"), rule("in", 2, m(SADDR, "@blocked"), DROP))
    assert v.verdict is PacketVerdict.DROP


def test_concatenated_verdict_map() -> None:
    key = {
        "concat": [
            DADDR,
            {"meta": {"key": "l4proto"}},
            {"payload": {"protocol": "th", "field": "dport"}},
        ]
    }
    vm = {
        "map": {
            "family": "inet",
            "table": "fw",
            "name": "svc",
            "type": ["ipv4_addr", "inet_proto", "inet_service"],
            "map": "verdict",
            "elem": [[{"concat": [str(NODE), "tcp", 10250]}, {"goto": {"target": "deny"}}]],
        }
    }
    items = [
        vm,
        chain("in", "input"),
        rule("in", 2, {"vmap": {"key": key, "data": "@svc"}}),
        chain("deny"),
        rule("deny", 7, DROP),
    ]
    v = verdict(*items)
    assert v.verdict is PacketVerdict.DROP
    assert v.decided_by.element == "10.224.0.4 . tcp . 10250" and v.decided_by.map_name == "svc"
    other = Packet(src=API, dst=NODE, dport=22, in_iface="eth0")
    assert verdict(*items, packet=other).verdict is PacketVerdict.ACCEPT


def test_inline_verdict_map() -> None:
    data = {"set": [[22, ACCEPT], [10250, DROP]]}
    v = verdict(chain("in", "input"), rule("in", 2, {"vmap": {"key": DPORT, "data": data}}))
    assert v.verdict is PacketVerdict.DROP and v.decided_by.element == "10250"


def test_handshake_new_only_accept_breaks_the_connection() -> None:
    v = verdict(
        chain("in", "input", 0, "drop"),
        rule("in", 2, m(CT_STATE, "new", "in"), m(DPORT, 10250), ACCEPT),
    )
    assert v.verdict is PacketVerdict.DROP
    assert v.trace[-1].packet == "ack"
    assert any("next packets" in n for n in v.notes)
    v = verdict(
        chain("in", "input", 0, "drop"),
        rule("in", 2, m(CT_STATE, ["established", "related"], "in"), ACCEPT),
        rule("in", 3, m(CT_STATE, "new", "in"), m(DPORT, 10250), ACCEPT),
    )
    assert v.verdict is PacketVerdict.ACCEPT


def test_before_conntrack_ct_state_reads_invalid() -> None:
    items = [chain("raw", "prerouting", -300), rule("raw", 2, m(CT_STATE, "invalid", "in"), DROP)]
    assert verdict(*items).verdict is PacketVerdict.DROP
    items = [
        chain("mangle", "prerouting", -150),
        rule("mangle", 2, m(CT_STATE, "invalid", "in"), DROP),
    ]
    assert verdict(*items).verdict is PacketVerdict.ACCEPT


def test_nat_chains_see_only_the_first_packet() -> None:
    items = [
        chain("in", "input"),
        rule("in", 2, m(CT_STATE, "new", "in"), {"counter": None}),  # makes conntrack run
        chain("nat", "prerouting", -100, type="nat"),
        rule("nat", 3, m({"payload": {"protocol": "tcp", "field": "flags"}}, "ack", "in"), DROP),
    ]
    assert verdict(*items).verdict is PacketVerdict.ACCEPT  # the ACK never meets the nat chain


def test_nat_chain_without_conntrack_user_is_undecided() -> None:
    v = verdict(chain("nat", "prerouting", -100, type="nat"), rule("nat", 3, DROP))
    assert v.verdict is PacketVerdict.UNKNOWN and "conntrack" in v.reason


def test_interface_names_and_wildcards() -> None:
    assert (
        verdict(chain("in", "input"), rule("in", 2, m(IIFNAME, "eth*"), DROP)).verdict
        is PacketVerdict.DROP
    )
    assert (
        verdict(chain("in", "input"), rule("in", 2, m(IIFNAME, "lo"), DROP)).verdict
        is PacketVerdict.ACCEPT
    )
    no_iface = Packet(src=API, dst=NODE)
    v = verdict(chain("in", "input"), rule("in", 2, m(IIFNAME, "eth0"), DROP), packet=no_iface)
    assert v.verdict is PacketVerdict.UNKNOWN and "interface" in v.reason


def test_fib_daddr_type_local() -> None:
    fib = {"fib": {"result": "type", "flags": ["daddr"]}}
    assert (
        verdict(chain("in", "input"), rule("in", 2, m(fib, "local"), DROP)).verdict
        is PacketVerdict.DROP
    )


def test_mark_unknown_unless_set_earlier() -> None:
    mark = {"meta": {"key": "mark"}}
    v = verdict(chain("in", "input"), rule("in", 2, m(mark, 16), DROP))
    assert v.verdict is PacketVerdict.UNKNOWN and "mark" in v.reason
    v = verdict(
        chain("pre", "prerouting", -150),
        rule("pre", 2, {"mangle": {"key": mark, "value": 16}}),
        chain("in", "input"),
        rule("in", 3, m({"&": [mark, 16]}, 16), DROP),
    )
    assert v.verdict is PacketVerdict.DROP


def test_undecided_rule_that_cannot_change_the_outcome() -> None:
    v = verdict(
        chain("in", "input"), rule("in", 2, {"limit": {"rate": 10, "per": "second"}}, ACCEPT)
    )
    assert v.verdict is PacketVerdict.ACCEPT and len(v.undecided) == 1


def test_unknown_statement_is_unknown() -> None:
    v = verdict(chain("in", "input"), rule("in", 2, m(DPORT, 10250), {"queue": {"num": 1}}))
    assert v.verdict is PacketVerdict.UNKNOWN and "queue" in v.reason


def test_dynamic_set_is_undecided() -> None:
    dyn = {
        "set": {
            "family": "inet",
            "table": "fw",
            "name": "seen",
            "type": "ipv4_addr",
            "flags": ["timeout"],
        }
    }
    v = verdict(dyn, chain("in", "input"), rule("in", 2, m(SADDR, "@seen"), DROP))
    assert v.verdict is PacketVerdict.UNKNOWN and "changes at run time" in v.reason


def test_other_family_does_not_apply() -> None:
    items = [table("ip6", "v6"), chain("in", "input", 0, "drop", family="ip6", tbl="v6")]
    v = evaluate_input(parse_ruleset(doc(*items), "t"), PKT)
    assert v.verdict is PacketVerdict.ACCEPT and v.evaluated == ()
    v6 = Packet(src=IPv6Address("fd00::1"), dst=IPv6Address("fd00::4"), in_iface="eth0")
    assert evaluate_input(parse_ruleset(doc(*items), "t"), v6).verdict is PacketVerdict.DROP
    # `ip saddr` in an inet table does not match an IPv6 packet, even negated
    v = verdict(chain("in", "input"), rule("in", 2, m(SADDR, "1.2.3.4", "!="), DROP), packet=v6)
    assert v.verdict is PacketVerdict.ACCEPT


def test_iptables_nft_tables_are_skipped() -> None:
    items = [
        table("ip", "filter"),
        chain("INPUT", "input", 0, "drop", family="ip", tbl="filter"),
        rule(
            "INPUT",
            2,
            {"xt": {"type": "match", "name": "conntrack"}},
            ACCEPT,
            family="ip",
            tbl="filter",
        ),
    ]
    v = evaluate_input(parse_ruleset(doc(*items), "t"), PKT)
    assert v.verdict is PacketVerdict.ACCEPT
    assert v.skipped and "iptables-nft" in v.skipped[0]


def test_kube_proxy_tables_pass_10250() -> None:
    rs = parse_ruleset(KUBE_PROXY, "kube-proxy")
    v = evaluate_input(rs, PKT)
    assert v.verdict is PacketVerdict.ACCEPT, v.reason
    actions = {s.action for s in v.trace}
    assert {"jump services", "jump nodeport-endpoints-check", "jump firewall-check"} <= actions
    assert not v.skipped
    # without the node address the lookups are undecided, but every path still accepts
    v = evaluate_input(rs, Packet(src=API, in_iface="eth0"))
    assert v.verdict is PacketVerdict.ACCEPT


@pytest.mark.parametrize(
    ("dst", "port", "want", "element"),
    [
        ("10.224.0.4", 31001, PacketVerdict.REJECT, "tcp . 31001"),  # NodePort without endpoints
        ("20.1.2.3", 443, PacketVerdict.DROP, "20.1.2.3 . tcp . 443"),
    ],
)
def test_kube_proxy_no_endpoint_maps(
    dst: str, port: int, want: PacketVerdict, element: str
) -> None:
    rs = parse_ruleset(KUBE_PROXY, "kube-proxy")
    v = evaluate_input(rs, Packet(src=API, dst=IPv4Address(dst), dport=port, in_iface="eth0"))
    assert v.verdict is want
    assert v.decided_by.element == element


def test_kube_proxy_service_with_dnat_is_unknown() -> None:
    rs = parse_ruleset(KUBE_PROXY, "kube-proxy")
    v = evaluate_input(rs, Packet(src=API, dst=IPv4Address("10.0.0.1"), dport=443, in_iface="eth0"))
    assert v.verdict is PacketVerdict.UNKNOWN and "elsewhere" in v.reason


def test_loops_end_as_unknown() -> None:
    jump = {"jump": {"target": "a"}}
    v = verdict(chain("in", "input"), rule("in", 2, jump), chain("a"), rule("a", 3, jump))
    assert v.verdict is PacketVerdict.UNKNOWN and "deeper" in v.reason
