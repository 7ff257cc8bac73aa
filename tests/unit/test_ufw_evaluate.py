"""Deciding one flow against ufw rules, and the findings with their fixes."""

from __future__ import annotations

import ipaddress

import pytest

from shared.analysis.findings import TUNNEL_POD_REMINDER, Cause, Kind, Severity, Subject
from shared.analysis.ufw import (
    NODE_SUBNET_PLACEHOLDER,
    Policy,
    UfwFlowVerdict,
    evaluate,
    findings_for,
    parse_status,
)
from shared.errors import InputError
from tests.unit.test_ufw_parse import NUMBERED, PLAIN, VERBOSE

ip = ipaddress.ip_address
SUBJECT = Subject(cluster="c1", node="aks-nodepool1-0", resource="ufw.txt")


def verbose(rules: str, default: str = "deny") -> str:
    return (
        "Status: active\nLogging: on (low)\n"
        f"Default: {default} (incoming), allow (outgoing), disabled (routed)\n"
        "New profiles: skip\n\nTo                         Action      From\n"
        "--                         ------      ----\n" + rules + "\n"  # ufw ends it so
    )


def decide(text: str, **kw: object) -> UfwFlowVerdict:
    return evaluate(parse_status(text, "t"), **kw).verdict  # type: ignore[arg-type]


def test_first_match_wins_in_listed_order() -> None:
    text = verbose("10250/tcp DENY IN 10.0.0.0/8\n10250/tcp ALLOW IN Anywhere\n")
    assert decide(text, src=ip("10.1.1.1")) is UfwFlowVerdict.DENY
    assert decide(text, src=ip("192.168.1.1")) is UfwFlowVerdict.ALLOW


def test_default_policy_decides_when_nothing_matches() -> None:
    text = verbose("22/tcp ALLOW IN Anywhere\n", default="reject")
    v = evaluate(parse_status(text, "t"), src=ip("10.0.0.1"))
    assert v.verdict is UfwFlowVerdict.REJECT and v.rule is None
    assert v.default_incoming is Policy.REJECT
    assert "line 3" in v.reason


def test_inactive_and_not_installed_allow_unreadable_is_unknown() -> None:
    assert decide("Status: inactive\n") is UfwFlowVerdict.ALLOW
    assert decide("sudo: ufw: command not found\n") is UfwFlowVerdict.ALLOW
    v = evaluate(parse_status("ERROR: You need to be root to run this script", "t"))
    assert v.verdict is UfwFlowVerdict.UNKNOWN and "root" in v.undecided[0].reason


def test_out_and_fwd_rules_never_match_inbound() -> None:
    text = verbose("10250/tcp DENY OUT Anywhere\n10250/tcp REJECT FWD Anywhere\n", default="allow")
    assert decide(text, src=ip("10.0.0.1")) is UfwFlowVerdict.ALLOW


def test_families_are_separate() -> None:
    text = verbose("10250/tcp DENY IN Anywhere\n10250/tcp (v6) ALLOW IN Anywhere (v6)\n")
    assert decide(text, src=ip("10.0.0.1")) is UfwFlowVerdict.DENY
    assert decide(text, src=ip("2001:db8::1")) is UfwFlowVerdict.ALLOW
    assert decide(text, dst=ip("2001:db8::2")) is UfwFlowVerdict.ALLOW
    # No address given: IPv4 and IPv6 disagree, so the family decides: unknown.
    v = evaluate(parse_status(text, "t"))
    assert v.verdict is UfwFlowVerdict.UNKNOWN and "family" in v.reason


def test_both_families_agreeing_is_decided_without_addresses() -> None:
    text = verbose("10250/tcp ALLOW IN Anywhere\n10250/tcp (v6) ALLOW IN Anywhere (v6)\n")
    assert decide(text) is UfwFlowVerdict.ALLOW


def test_limit_reject_and_ports() -> None:
    text = verbose(
        "10250/tcp LIMIT IN Anywhere\n10000:10300/tcp REJECT IN Anywhere\n"
        "22,10240/tcp ALLOW IN Anywhere\n10401/udp ALLOW IN Anywhere\n10402 ALLOW IN Anywhere\n"
    )
    src = ip("10.0.0.9")
    assert decide(text, src=src) is UfwFlowVerdict.LIMIT
    assert decide(text, src=src, port=10251) is UfwFlowVerdict.REJECT
    assert decide(text, src=src, port=22) is UfwFlowVerdict.ALLOW
    assert decide(text, src=src, port=10240) is UfwFlowVerdict.REJECT  # the range comes first
    assert decide(text, src=src, port=10401) is UfwFlowVerdict.DENY  # udp rule, tcp flow
    assert decide(text, src=src, port=10401, proto="udp") is UfwFlowVerdict.ALLOW
    assert decide(text, src=src, port=10402, proto="udp") is UfwFlowVerdict.ALLOW  # any protocol
    assert decide(text, src=src, port=10402) is UfwFlowVerdict.ALLOW


def test_destination_address_needs_dst() -> None:
    text = verbose("10.0.0.5 10250/tcp ALLOW IN Anywhere\n")
    assert decide(text, src=ip("10.0.0.9"), dst=ip("10.0.0.5")) is UfwFlowVerdict.ALLOW
    assert decide(text, src=ip("10.0.0.9"), dst=ip("10.0.0.6")) is UfwFlowVerdict.DENY
    v = evaluate(parse_status(text, "t"), src=ip("10.0.0.9"))
    assert v.verdict is UfwFlowVerdict.UNKNOWN
    assert "--dst" in v.undecided[0].reason and v.undecided[0].rule is not None


def test_interface_rules() -> None:
    text = verbose("10250/tcp on eth0 ALLOW IN Anywhere\n10251/tcp on eth+ ALLOW IN Anywhere\n")
    src = ip("10.0.0.9")
    assert decide(text, src=src, in_iface="eth0") is UfwFlowVerdict.ALLOW
    assert decide(text, src=src, in_iface="eth1") is UfwFlowVerdict.DENY
    assert decide(text, src=src, in_iface="eth7", port=10251) is UfwFlowVerdict.ALLOW
    assert decide(text, src=src, in_iface="ens5", port=10251) is UfwFlowVerdict.DENY
    assert decide(text, src=src) is UfwFlowVerdict.UNKNOWN


def test_undecided_rule_that_cannot_change_the_outcome_is_decided() -> None:
    # Whether or not the eth1 DENY matches, the default denies too.
    text = verbose("10250/tcp on eth1 DENY IN Anywhere\n22/tcp ALLOW IN Anywhere\n")
    v = evaluate(parse_status(text, "t"), src=ip("10.0.0.9"))
    assert v.verdict is UfwFlowVerdict.DENY and v.rule is None
    assert len(v.undecided) == 1 and "--in-iface" in v.undecided[0].reason


def test_undecided_rule_after_a_sure_match_is_irrelevant() -> None:
    text = verbose("10250/tcp ALLOW IN Anywhere\n10250/tcp on eth1 DENY IN Anywhere\n")
    v = evaluate(parse_status(text, "t"), src=ip("10.0.0.9"))
    assert v.verdict is UfwFlowVerdict.ALLOW and v.undecided == ()


# Real `ufw status verbose` / `numbered` / plain (ufw 0.36.2 in a namespace) after
#   ufw allow from any app Samba; ufw allow from 10.250.0.0/24 app Samba
#   ufw deny proto tcp from any port 139,445
#   ufw allow proto tcp from any port 1024:65535 to any port 10251
#   ufw limit 22/tcp; ufw allow Samba           (with samba's own profile)
SAMBA_VERBOSE = """\
Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
Anywhere                   ALLOW IN    137,138/udp (Samba)
Anywhere                   ALLOW IN    139,445/tcp (Samba)
Anywhere                   ALLOW IN    10.250.0.0/24 137,138/udp (Samba)
Anywhere                   ALLOW IN    10.250.0.0/24 139,445/tcp (Samba)
Anywhere                   DENY IN     139,445/tcp
10251/tcp                  ALLOW IN    1024:65535/tcp
22/tcp                     LIMIT IN    Anywhere
137,138/udp (Samba)        ALLOW IN    Anywhere
139,445/tcp (Samba)        ALLOW IN    Anywhere
Anywhere (v6)              ALLOW IN    137,138/udp (Samba (v6))
Anywhere (v6)              ALLOW IN    139,445/tcp (Samba (v6))
Anywhere (v6)              DENY IN     139,445/tcp (v6)
10251/tcp (v6)             ALLOW IN    1024:65535/tcp (v6)
22/tcp (v6)                LIMIT IN    Anywhere (v6)
137,138/udp (Samba (v6))   ALLOW IN    Anywhere (v6)
139,445/tcp (Samba (v6))   ALLOW IN    Anywhere (v6)

"""
SAMBA_NUMBERED = """\
Status: active

     To                         Action      From
     --                         ------      ----
[ 1] Anywhere                   ALLOW IN    Samba
[ 2] Anywhere                   ALLOW IN    10.250.0.0/24 Samba
[ 3] Anywhere                   DENY IN     139,445/tcp
[ 4] 10251/tcp                  ALLOW IN    1024:65535/tcp
[ 5] 22/tcp                     LIMIT IN    Anywhere
[ 6] Samba                      ALLOW IN    Anywhere
[ 7] Anywhere (v6)              ALLOW IN    Samba (v6)
[ 8] Anywhere (v6)              DENY IN     139,445/tcp (v6)
[ 9] 10251/tcp (v6)             ALLOW IN    1024:65535/tcp (v6)
[10] 22/tcp (v6)                LIMIT IN    Anywhere (v6)
[11] Samba (v6)                 ALLOW IN    Anywhere (v6)

"""
SAMBA_PLAIN = SAMBA_NUMBERED.replace(" IN ", "    ").replace("     ", "", 3)


@pytest.mark.parametrize("text", [SAMBA_VERBOSE, SAMBA_NUMBERED, SAMBA_PLAIN])
@pytest.mark.parametrize("src", ["10.250.0.20", "2001:db8::20"])
def test_source_port_rules_decided_by_the_ephemeral_range(text: str, src: str) -> None:
    """Issue 10, defect 7: `Anywhere ALLOW IN 139,445/tcp (Samba)` (a rule on the client's
    source port) no longer makes the verdict unknown: a tunnel agent's source port is in
    32768-60999, never 139 or 445; the assumption is stated."""
    default = {} if text is SAMBA_VERBOSE else {"default_incoming": Policy.DENY}
    v = evaluate(parse_status(text, "t"), src=ip(src), **default)  # type: ignore[arg-type]
    assert v.verdict is UfwFlowVerdict.DENY and v.rule is None, v.reason
    [note] = [n for n in v.notes if "32768-60999" in n]
    assert "139,445/tcp" in note or "Samba" in note
    assert "10251" not in note  # a rule for another destination port decides nothing here
    # `from any port 1024:65535` covers the whole range: it matches.
    v = evaluate(parse_status(text, "t"), src=ip(src), port=10251, **default)  # type: ignore[arg-type]
    assert v.verdict is UfwFlowVerdict.ALLOW and v.rule is not None and "1024:65535" in v.rule.text
    # A range the rules' ports overlap cannot be decided; one they miss can.
    low = evaluate(parse_status(text, "t"), src=ip(src), src_ports=(100, 2000), **default)  # type: ignore[arg-type]
    assert low.verdict is UfwFlowVerdict.UNKNOWN and "100-2000" in low.reason
    high = evaluate(parse_status(text, "t"), src=ip(src), src_ports=(1024, 65535), **default)  # type: ignore[arg-type]
    assert high.verdict is UfwFlowVerdict.DENY and any("--src-port-range" in n for n in high.notes)


def test_source_port_range_argument_checked() -> None:
    with pytest.raises(InputError, match="source port range"):
        evaluate(parse_status(verbose(""), "t"), src_ports=(2000, 1000))


def test_no_source_port_note_without_such_rules() -> None:
    v = evaluate(parse_status(verbose("22/tcp ALLOW IN Anywhere\n"), "t"), src=ip("10.0.0.9"))
    assert not any("source port" in n for n in v.notes)


def test_apps_known_unknown_and_verbose() -> None:
    plain = "Status: active\n\nTo Action From\n-- ------ ----\nOpenSSH ALLOW Anywhere\n\n"
    assert decide(plain, src=ip("10.0.0.1"), default_incoming=Policy.DENY) is UfwFlowVerdict.DENY
    assert decide(plain, port=22, src=ip("10.0.0.1")) is UfwFlowVerdict.ALLOW
    unknown = plain.replace("OpenSSH", "Kubelet")
    v = evaluate(parse_status(unknown, "t"), src=ip("10.0.0.1"), default_incoming=Policy.DENY)
    assert v.verdict is UfwFlowVerdict.UNKNOWN and "Kubelet" in v.undecided[0].reason
    # An unknown app cannot change an outcome that is allow either way.
    assert (
        decide(unknown, src=ip("10.0.0.1"), default_incoming=Policy.ALLOW) is UfwFlowVerdict.ALLOW
    )
    assert decide(VERBOSE, src=ip("10.3.3.3")) is UfwFlowVerdict.ALLOW  # 10250/tcp (Kubelet)


def test_plain_capture_without_default_needs_it() -> None:
    text = "Status: active\n\nTo Action From\n-- ------ ----\n22/tcp ALLOW Anywhere\n\n"
    v = evaluate(parse_status(text, "t"), src=ip("10.0.0.1"))
    assert v.verdict is UfwFlowVerdict.UNKNOWN and "--default-incoming" in v.reason
    assert decide(text, src=ip("10.0.0.1"), default_incoming=Policy.REJECT) is UfwFlowVerdict.REJECT
    # A sure match needs no default.
    assert decide(text, src=ip("10.0.0.1"), port=22) is UfwFlowVerdict.ALLOW


def test_capture_default_wins_over_the_argument() -> None:
    v = evaluate(parse_status(verbose(""), "t"), src=ip("10.0.0.1"), default_incoming=Policy.ALLOW)
    assert v.verdict is UfwFlowVerdict.DENY and any("ignored" in n for n in v.notes)


def test_real_plain_capture() -> None:
    status = parse_status(PLAIN, "p")
    assert evaluate(status, src=ip("10.99.3.4")).verdict is UfwFlowVerdict.DENY
    # IPv6: the plain listing's `Kubelet (v6)` (an app we do not know) comes before the
    # REJECT for 2001:db8::/32, so it cannot be decided; other ports are.
    assert evaluate(status, src=ip("2001:db8::7")).verdict is UfwFlowVerdict.UNKNOWN
    assert evaluate(status, src=ip("2001:db8::7"), port=22).verdict is UfwFlowVerdict.ALLOW
    # A sure ALLOW on eth0 decides whatever the unknown apps before it do.
    assert evaluate(status, src=ip("10.1.2.3"), in_iface="eth0").verdict is UfwFlowVerdict.ALLOW
    # On eth1, the apps (allow) may come before the DENY of 10.1.2.3: unknown, with every one
    # of them named. The LIMIT on source port 1234 never matches an ephemeral source port.
    v = evaluate(status, src=ip("10.1.2.3"), in_iface="eth1")
    assert v.verdict is UfwFlowVerdict.UNKNOWN
    assert [u.rule.line for u in v.undecided if u.rule] == [7, 8]
    assert any("line 11:" in n and "32768-60999" in n for n in v.notes)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"proto": "icmp"}, "protocol"),
        ({"port": 70000}, "port"),
        ({"src": ip("10.0.0.1"), "dst": ip("::1")}, "families"),
    ],
)
def test_bad_arguments(kw: dict[str, object], words: str) -> None:
    with pytest.raises(InputError, match=words):
        evaluate(parse_status("Status: inactive", "t"), **kw)  # type: ignore[arg-type]


# ---- findings


def test_no_findings_when_allowed() -> None:
    v = evaluate(parse_status("Status: inactive", "t"))
    assert findings_for(v, SUBJECT) == []


def test_default_deny_fix_appends_a_narrow_allow() -> None:
    v = evaluate(parse_status(verbose("22/tcp ALLOW IN Anywhere\n"), "t"), src=ip("10.224.0.7"))
    [f] = findings_for(v, SUBJECT)
    assert (f.cause, f.kind, f.severity) == (Cause.UFW, Kind.PROBLEM, Severity.CRITICAL)
    assert f.key == "default" and f.subject == SUBJECT
    assert f.remediation is not None
    assert f.remediation.commands == ("ufw allow from 10.224.0.7 to any port 10250 proto tcp",)
    assert TUNNEL_POD_REMINDER in f.remediation.notes


def test_fix_source_and_placeholder() -> None:
    status = parse_status(verbose(""), "t")
    net = ipaddress.ip_network("10.224.0.0/16")
    [f] = findings_for(evaluate(status, src=ip("10.224.0.7")), SUBJECT, fix_source=net)
    assert f.remediation is not None
    assert f.remediation.commands == ("ufw allow from 10.224.0.0/16 to any port 10250 proto tcp",)
    [g] = findings_for(evaluate(status, dst=ip("10.224.0.5")), SUBJECT)
    assert g.remediation is not None
    assert str(NODE_SUBNET_PLACEHOLDER) in g.remediation.commands[0]
    assert any(str(NODE_SUBNET_PLACEHOLDER) in n for n in g.remediation.notes)


def test_explicit_deny_numbered_says_insert_1_and_delete_n() -> None:
    v = evaluate(parse_status(NUMBERED, "n"), src=ip("10.99.0.1"))
    assert v.verdict is UfwFlowVerdict.DENY and v.rule is not None and v.rule.number == 1
    [f] = findings_for(v, SUBJECT)
    assert f.remediation is not None
    assert f.remediation.commands == (
        "ufw insert 1 allow from 10.99.0.1 to any port 10250 proto tcp",
    )
    assert any("ufw delete 1 " in n for n in f.remediation.notes)
    assert f.key == "rule:10250/tcp DENY IN 10.99.0.0/16"


def test_explicit_reject_v6_uses_prepend_and_recounted_number() -> None:
    v = evaluate(parse_status(VERBOSE, "v"), src=ip("2001:db8::5"), port=10250, proto="udp")
    assert v.verdict is UfwFlowVerdict.REJECT and v.rule is None  # udp: the default rejects
    v = evaluate(
        parse_status(
            VERBOSE.replace("(Kubelet (v6))", "(Other (v6))").replace(
                "10250/tcp (Other", "10249/tcp (Other"
            ),
            "v",
        ),
        src=ip("2001:db8::5"),
    )
    assert v.verdict is UfwFlowVerdict.REJECT and v.rule is not None and v.rule.number == 9
    [f] = findings_for(v, SUBJECT)
    assert f.remediation is not None
    assert f.remediation.commands[0].startswith("ufw prepend allow from 2001:db8::5 ")
    assert any("ufw delete 9 " in n for n in f.remediation.notes)


def test_unknown_number_says_how_to_find_it() -> None:
    v = evaluate(parse_status(PLAIN, "p"), src=ip("10.99.0.1"))
    [f] = findings_for(v, SUBJECT)
    assert f.remediation is not None
    assert f.remediation.commands[0].startswith("ufw insert 1 ")
    assert any("ufw status numbered" in n for n in f.remediation.notes)


def test_undecided_deny_before_default_deny_still_inserts_first() -> None:
    text = verbose("10250/tcp on eth1 DENY IN Anywhere\n")
    [f] = findings_for(evaluate(parse_status(text, "t"), src=ip("10.0.0.9")), SUBJECT)
    assert f.remediation is not None and f.remediation.commands[0].startswith("ufw insert 1 ")


def test_unknown_is_inconclusive_and_limit_is_a_warning() -> None:
    text = verbose("10250/tcp on eth1 ALLOW IN Anywhere\n")
    [f] = findings_for(evaluate(parse_status(text, "t"), src=ip("10.0.0.9")), SUBJECT)
    assert (f.kind, f.severity, f.cause) == (Kind.INCONCLUSIVE, Severity.WARNING, Cause.UFW)
    limit = verbose("10250/tcp LIMIT IN Anywhere\n")
    [g] = findings_for(evaluate(parse_status(limit, "t"), src=ip("10.0.0.9")), SUBJECT)
    assert (g.kind, g.severity) == (Kind.PROBLEM, Severity.WARNING)
    assert g.remediation is not None and g.remediation.commands[0].startswith("ufw insert 1 ")
    # Issue 10, defect 7: the fix says what the rule does (rate-limits), not "blocks".
    assert "rate-limits it" in g.remediation.summary and "blocks" not in g.remediation.summary
    assert "limiting rule" in g.remediation.notes[0]


def test_cut_capture_decides_only_by_a_rule_it_shows() -> None:
    """Issue 15, defect 7: a capture that may end early never answers by the default."""
    whole = verbose("22/tcp ALLOW IN Anywhere\n10250 DENY IN Anywhere\n", default="allow")
    cut = whole.removesuffix("10250 DENY IN Anywhere\n\n")
    v = evaluate(parse_status(cut, "t"), src=ip("10.0.0.1"))
    assert v.verdict is UfwFlowVerdict.UNKNOWN
    assert v.reason.startswith("capture incomplete: ufw ends its rule listing with a blank line")
    # Cut inside the DENY line: the line has no newline and is not read.
    v = evaluate(parse_status(cut + "10250 DENY IN Any", "t"), src=ip("10.0.0.1"))
    assert v.verdict is UfwFlowVerdict.UNKNOWN and "(line 9) has no newline" in v.reason
    # The DENY line whole decides whatever follows (first match); the blank line ends it.
    assert decide(cut + "10250 DENY IN Anywhere\n", src=ip("10.0.0.1")) is UfwFlowVerdict.DENY
    assert decide(whole, src=ip("10.0.0.9")) is UfwFlowVerdict.DENY
    assert (
        decide(whole.replace("10250 DENY", "10251 DENY"), src=ip("10.0.0.1"))
        is UfwFlowVerdict.ALLOW
    )


def test_cut_capture_what_proves_a_family_ended() -> None:
    v4 = "10250/tcp ALLOW IN 10.0.0.0/8\n"
    v6 = "10250/tcp (v6) ALLOW IN Anywhere (v6)\n"
    text = verbose(v4 + v6).removesuffix("\n")  # cut before the closing blank line
    # IPv6 rules are printed after the IPv4 ones: one shows the IPv4 rules ended.
    assert decide(text, src=ip("192.168.0.1")) is UfwFlowVerdict.DENY
    assert decide(text, src=ip("2001:db8::1")) is UfwFlowVerdict.ALLOW  # by the rule it shows
    v = evaluate(parse_status(verbose(v6.replace("ALLOW", "DENY")).removesuffix("\n"), "t"),
                 src=ip("2001:db8::1"), port=22)  # fmt: skip
    assert v.verdict is UfwFlowVerdict.UNKNOWN and v.reason.startswith("capture incomplete:")
    # OUT and routed rules come after every IN rule in plain and verbose listings.
    out = verbose(v4 + "\n53 ALLOW OUT Anywhere\n").removesuffix("\n")
    assert decide(out, src=ip("2001:db8::1")) is UfwFlowVerdict.DENY
    # ... but not in a numbered listing, which prints ufw's own order.
    numbered = (
        "Status: active\n\n     To Action From\n     -- ------ ----\n"
        "[ 1] 53 ALLOW OUT Anywhere (out)\n"
    )
    v = evaluate(parse_status(numbered, "n"), src=ip("10.0.0.1"), default_incoming=Policy.DENY)
    assert v.verdict is UfwFlowVerdict.UNKNOWN and "capture incomplete" in v.reason


def test_no_rule_table_is_whole_only_when_its_producer_says_so() -> None:
    text = verbose("", default="allow").split("\nTo ")[0] + "\n"  # ufw prints no table
    v = evaluate(parse_status(text, "t"), src=ip("10.0.0.1"))
    assert v.verdict is UfwFlowVerdict.UNKNOWN and "it has no rule table" in v.reason
    assert evaluate(parse_status(text, "t", whole=True), src=ip("10.0.0.1")).verdict is (
        UfwFlowVerdict.ALLOW
    )
    assert (
        decide("Status: inactive", src=ip("10.0.0.1")) is UfwFlowVerdict.ALLOW
    )  # no newline: whole
