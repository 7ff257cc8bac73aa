"""`iptables --list` output (as printed by iptables 1.8.9): columns, extras, caveats, errors."""

from __future__ import annotations

import ipaddress

import pytest

from shared.analysis.iptables import Packet, evaluate_input, parse_ruleset
from shared.errors import InputError

SRC = ipaddress.IPv4Address("10.0.0.5")
DST = ipaddress.IPv4Address("10.0.0.4")

# iptables -L -n -v --line-numbers (nf_tables backend: protocols as numbers)
LIST_N_V = """\
Chain INPUT (policy DROP 0 packets, 0 bytes)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 ACCEPT     0    --  lo     *       0.0.0.0/0            0.0.0.0/0
2        0     0 KUBE-FIREWALL  0    --  *      *       0.0.0.0/0            0.0.0.0/0
3        0     0 DROP       6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:10250 /* kubelet "x" y */
4        0     0 CUST       6    --  *      *       0.0.0.0/0            0.0.0.0/0           [goto]  multiport dports 80,443,1000:2000 ctstate NEW,RELATED
5        0     0            17   --  *      *       10.0.0.0/8          !127.0.0.0/8          udp spt:53
6       12   720 REJECT     6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:443 reject-with tcp-reset
7     1234K  88M DROP       0    --  *      *       0.0.0.0/0            0.0.0.0/0            mark match 0x8000/0x8000
8        0     0 LOG        0    --  *      *       0.0.0.0/0            0.0.0.0/0            ADDRTYPE match dst-type LOCAL limit: avg 3/hour burst 5 LOG flags 0 level 4 prefix "x y "
9        0     0 MARK       6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpts:30000:32767 state RELATED,ESTABLISHED MARK or 0x4000
10       0     0 MARK       6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp spt:22 MARK xset 0x10/0xff
11       0     0 ACCEPT     0    -f  *      *       0.0.0.0/0            0.0.0.0/0
12       0     0 CONNMARK   6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:!22 source IP range 10.0.0.1-10.0.0.9 CONNMARK set 0x1

Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)
num   pkts bytes target     prot opt in     out     source               destination

Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)
num   pkts bytes target     prot opt in     out     source               destination

Chain CUST (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 RETURN     6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp flags:0x06/0x02
2        0     0 ACCEPT     6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp flags:0x17/0x02

Chain KUBE-FIREWALL (1 references)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 DROP       0    --  *      *      !127.0.0.0/8          127.0.0.0/8          /* block incoming localnet connections */ ! ctstate RELATED,ESTABLISHED,DNAT

"""  # the blank line proves the last chain whole (a capture may be cut: docs/cli.md)

# iptables --list --line-numbers (the article's command): names, no interfaces
LIST_NAMES = """\
Chain INPUT (policy ACCEPT)
num  target     prot opt source               destination
1    ACCEPT     all  --  anywhere             anywhere
2    KUBE-FIREWALL  all  --  anywhere             anywhere
3    ACCEPT     tcp  --  anywhere             anywhere             multiport dports http,https
4    DROP       tcp  --  anywhere             anywhere             tcp dpt:10250
5    REJECT     tcp  --  anywhere             anywhere             tcp dpt:cisco-sccp reject-with icmp-port-unreachable

Chain FORWARD (policy ACCEPT)
num  target     prot opt source               destination

Chain OUTPUT (policy ACCEPT)
num  target     prot opt source               destination

Chain KUBE-FIREWALL (2 references)
num  target     prot opt source               destination
1    DROP       all  -- !loopback/8           loopback/8           /* block incoming localnet connections */ ! ctstate RELATED,ESTABLISHED,DNAT
2    DROP       all  --  anywhere             anywhere             /* kubernetes firewall for dropping marked packets */ mark match 0x8000/0x8000

"""


def verdict(text: str, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"src": SRC, "dst": DST, "dport": 10250, "in_iface": "eth0"}
    args.update(kw)
    return evaluate_input([parse_ruleset(text, "list")], Packet(**args))  # type: ignore[arg-type]


def test_verbose_listing_reads_like_the_save_dump() -> None:
    rs = parse_ruleset(LIST_N_V, "list")
    assert rs.format == "list" and set(rs.tables) == {"filter"}
    assert rs.caveats == ()
    rs.compile_all()
    rules = rs.chain_rules("filter", "INPUT")
    assert rules[0].text == "-A INPUT -i lo -j ACCEPT"
    assert rules[2].text == (
        '-A INPUT -p tcp -m tcp --dport 10250 -m comment --comment "kubelet \\"x\\" y" -j DROP'
    )
    assert rules[4].target.kind.value == "none"  # the empty target column
    assert rules[3].target.kind.value == "goto"
    v = verdict(LIST_N_V)
    assert v.verdict == "drop"
    assert v.decided_by is not None and v.decided_by.rule_number == 3
    # 443: the goto'd CUST returns straight to the policy (DROP)
    v = verdict(LIST_N_V, dport=443)
    assert v.verdict == "drop" and v.decided_by is not None and v.decided_by.policy == "DROP"
    # the `limit:` text is kept as an undecided match, not dropped
    assert any("limit: avg 3/hour" in r.text for r in rules)


def test_listing_with_names_and_hidden_interfaces() -> None:
    rs = parse_ruleset(LIST_NAMES, "list")
    assert rs.caveats and "-v" in rs.caveats[0]
    v = verdict(LIST_NAMES)
    # Any rule may have a hidden -i: each one the packet would otherwise match is undecided
    # (rule 1, probably -i lo; the jump; the DROP), never read as matching: unknown, with the
    # likely reading (rule 1 is the loopback rule, the others have no interface) and the
    # capture that decides.
    assert v.verdict == "unknown"
    assert [u.rule_number for u in v.undecided] == [1, 2, 4]
    assert "likely the loopback rule" in v.undecided[0].reason
    assert "likely DROP (filter INPUT rule 4), if filter INPUT #1 is the loopback" in v.reason
    assert "`iptables -L INPUT -n -v --line-numbers` or `iptables -S`" in v.reason
    assert any("-v" in n for n in v.notes)


def test_listing_service_names_become_ports() -> None:
    text = LIST_NAMES.replace("1    ACCEPT     all  --  anywhere             anywhere\n", "")
    text = text.replace("\n2    KUBE-FIREWALL", "\n1    KUBE-FIREWALL")
    text = text.replace("\n3    ACCEPT", "\n2    ACCEPT").replace("\n4    DROP", "\n3    DROP")
    text = text.replace("\n5    REJECT", "\n4    REJECT")
    rules = parse_ruleset(text, "list").chain_rules("filter", "INPUT")
    assert "--dports 80,443" in rules[1].text and "--dport 2000" in rules[3].text  # cisco-sccp
    # Without -v any rule may have a hidden -i: unknown, but the likely reading is given.
    assert verdict(text, dport=443).verdict == "accept"  # accepted whether rule 2 matches or not
    v = verdict(text, dport=10250)
    assert v.verdict == "unknown" and "likely DROP (filter INPUT rule 3)" in v.reason
    assert "likely REJECT (filter INPUT rule 4)" in verdict(text, dport=2000).reason


def test_unknown_service_name_is_undecided() -> None:
    text = LIST_NAMES.replace("tcp dpt:10250", "tcp dpt:nosuchservice")
    rs = parse_ruleset(text, "list")
    rule = rs.chain_rules("filter", "INPUT")[3]
    assert [c.test for c in rule.conds]  # compiled
    v = verdict(text, in_iface="eth0")
    assert any("nosuchservice" in u.reason for u in v.undecided)


def test_nat_listing_is_recognised_and_dnat_is_unknown() -> None:
    text = """Chain PREROUTING (policy ACCEPT)
target     prot opt source               destination
DNAT       6    --  0.0.0.0/0            0.0.0.0/0            tcp dpt:10250 to:1.2.3.4:8080

Chain INPUT (policy ACCEPT)
target     prot opt source               destination

Chain OUTPUT (policy ACCEPT)
target     prot opt source               destination

Chain POSTROUTING (policy ACCEPT)
target     prot opt source               destination
"""
    rs = parse_ruleset(text, "nat")
    assert set(rs.tables) == {"nat"}
    v = verdict(text)
    assert v.verdict == "unknown" and "DNAT" in " ".join((v.reason, *v.notes))


def test_ip6_listing_family() -> None:
    text = """Chain INPUT (policy ACCEPT 0 packets, 0 bytes)
num   pkts bytes target     prot opt in     out     source               destination
1        0     0 DROP       6    --  *      *       ::/0                 ::/0                 tcp dpt:10250
"""
    rs = parse_ruleset(text, "v6")
    assert rs.family == 6
    with pytest.raises(InputError, match="IPv6"):
        verdict(text)


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("Chain INPUT (policy MAYBE)\n", "bad chain header", 1),
        ("Chain INPUT (policy ACCEPT)\n1 ACCEPT all -- a b\n", "column header", 2),
        (
            "Chain INPUT (policy ACCEPT)\nnum target prot opt source destination\n2 ACCEPT all -- x y\n",
            "rule number 2",
            3,
        ),
        (
            "Chain INPUT (policy ACCEPT)\nnum target prot opt source destination\n1 ACCEPT all\n",
            "columns",
            3,
        ),
        ("Chain KUBE-X (policy ACCEPT)\ntarget prot opt source destination\n", "not built into", 1),
    ],
)
def test_listing_errors_name_the_line(text: str, message: str, line: int) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse_ruleset(text, "bad.txt").compile_all()
    assert err.value.line == line
    assert err.value.source == "bad.txt"
