"""The ufw status parser on captures of real ufw 0.36.2 and on hand-made messy ones."""

from __future__ import annotations

import ipaddress

import pytest

from shared.analysis.ufw import (
    Action,
    Direction,
    Policy,
    PortSet,
    State,
    StatusFormat,
    parse_status,
)
from shared.errors import InputError

# Captured from ufw 0.36.2 in a lab namespace (ufw's trailing padding is put back by
# test_padding_and_indentation_do_not_matter). ufw ends its listing with a blank line: a
# capture without it may have been cut (see test_cut_capture_* in test_ufw_evaluate.py).
PLAIN = """\
Status: active

To                         Action      From
--                         ------      ----
10250/tcp                  DENY        10.99.0.0/16
22/tcp                     ALLOW       Anywhere
Kubelet                    ALLOW       Anywhere
Multi Proto                ALLOW       Anywhere
10250/tcp on eth0          ALLOW       Anywhere
10251/tcp on eth+          ALLOW       Anywhere
10.250.0.10 10250/tcp      LIMIT       10.0.0.0/8 1234/tcp        (log-all) # weird # ALLOW comment
Anywhere                   DENY        10.1.2.3/tcp
10000:10300/tcp            ALLOW       Anywhere
22,10250/tcp               ALLOW       Anywhere
Anywhere                   DENY        192.168.0.0/16
Anywhere                   ALLOW       53/udp
Anywhere (v6)              ALLOW       2001:db8:2::/48
22/tcp (v6)                ALLOW       Anywhere (v6)
Kubelet (v6)               ALLOW       Anywhere (v6)
Multi Proto (v6)           ALLOW       Anywhere (v6)
10250/tcp (v6) on eth0     ALLOW       Anywhere (v6)
10251/tcp (v6) on eth+     ALLOW       Anywhere (v6)
10250/tcp                  REJECT      2001:db8::/32
10000:10300/tcp (v6)       ALLOW       Anywhere (v6)
22,10250/tcp (v6)          ALLOW       Anywhere (v6)
Anywhere (v6)              ALLOW       53/udp (v6)

10250/tcp                  DENY OUT    Anywhere                   (log)
10250/tcp (v6)             DENY OUT    Anywhere (v6)              (log)

10.9.0.0/16 80/tcp on eth1 ALLOW FWD   Anywhere on eth0

"""

VERBOSE = """\
Status: active
Logging: on (low)
Default: reject (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
10250/tcp                  DENY IN     10.99.0.0/16
22/tcp                     ALLOW IN    Anywhere
10250/tcp (Kubelet)        ALLOW IN    Anywhere
5000:5010/tcp (Multi Proto) ALLOW IN    Anywhere
5005/udp (Multi Proto)     ALLOW IN    Anywhere
10250/tcp on eth0          ALLOW IN    Anywhere
Anywhere (v6)              ALLOW IN    2001:db8:2::/48
10250/tcp (Kubelet (v6))   ALLOW IN    Anywhere (v6)
5000:5010/tcp (Multi Proto (v6)) ALLOW IN    Anywhere (v6)
5005/udp (Multi Proto (v6)) ALLOW IN    Anywhere (v6)
10250/tcp                  REJECT IN   2001:db8::/32

"""

NUMBERED = """\
Status: active

     To                         Action      From
     --                         ------      ----
[ 1] 10250/tcp                  DENY IN     10.99.0.0/16
[ 2] 22/tcp                     ALLOW IN    Anywhere
[ 3] Kubelet                    ALLOW IN    Anywhere
[ 4] Multi Proto                ALLOW IN    Anywhere
[ 5] 10250/tcp                  DENY OUT    Anywhere                   (log, out)
[ 6] 10250/tcp on eth0          ALLOW IN    Anywhere
[ 7] 10251/tcp on eth+          ALLOW IN    Anywhere
[ 8] 10.250.0.10 10250/tcp      LIMIT IN    10.0.0.0/8 1234/tcp        (log-all) # weird # ALLOW comment
[ 9] Anywhere                   DENY IN     10.1.2.3/tcp
[10] 10.9.0.0/16 80/tcp on eth1 ALLOW FWD   Anywhere on eth0
[11] 10000:10300/tcp            ALLOW IN    Anywhere
[12] Anywhere (v6)              ALLOW IN    2001:db8:2::/48
[13] 22/tcp (v6)                ALLOW IN    Anywhere (v6)
[14] 10250/tcp (v6)             DENY OUT    Anywhere (v6)              (log, out)
[15] 10250/tcp                  REJECT IN   2001:db8::/32

"""

# Hand-made: what copies, terminals and Windows do to a capture.
MESSY = (
    "  Status: active\r\n"
    "Logging: off\r\n"
    "Default: deny (incoming), allow (outgoing), deny (routed)\r\n"
    "\r\n"
    "To\tAction\tFrom\r\n"
    "--\t------\t----\r\n"
    "OpenSSH ALLOW IN Anywhere\r\n"
    "Nginx Full\t\tALLOW IN\tAnywhere # web, (log) and # in a comment\r\n"
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334 10250/tcp DENY IN 2001:db8:aaaa:bbbb:cccc:dddd:eeee:0/112\r\n"
    "   10250,10255,20000:20010/tcp  ALLOW IN 10.224.0.0/12 (log)\r\n"
    "10.0.0.5 10250/tcp REJECT IN 10.0.0.0/8 1234/tcp (log-all)\r\n"
    "Anywhere/tcp DENY IN Anywhere/tcp\r\n"
    "Anywhere on eth1 ALLOW IN 10.1.0.0/16/tcp\r\n"
)


def test_plain_capture_rules_in_order_with_directions() -> None:
    status = parse_status(PLAIN, "plain.txt")
    assert status.state is State.ACTIVE and status.active
    assert status.format is StatusFormat.PLAIN
    assert status.default_incoming is None
    assert len(status.rules) == 25
    first = status.rules[0]
    assert (first.action, first.direction, first.protocol) == (Action.DENY, Direction.IN, "tcp")
    assert first.to.ports == PortSet(((10250, 10250),))
    assert first.from_.network == ipaddress.ip_network("10.99.0.0/16")
    assert [r.direction for r in status.rules[-3:]] == [Direction.OUT, Direction.OUT, Direction.FWD]
    # Plain listings move OUT/FWD rules to the end, so with them present ufw's numbers
    # cannot be known from this capture: None rather than a guess.
    assert all(r.number is None for r in status.rules)


def test_padding_and_indentation_do_not_matter() -> None:
    for text in (PLAIN, VERBOSE, NUMBERED):
        padded = "".join(f"  {ln:<90}\n" for ln in text.splitlines())
        assert parse_status(padded, "x").rules == parse_status(text, "x").rules


def test_plain_capture_sides() -> None:
    rules = parse_status(PLAIN, "plain.txt").rules
    kubelet, multi = rules[2], rules[3]
    assert (kubelet.to.app, kubelet.protocol, kubelet.to.ports) == ("Kubelet", "app", None)
    assert multi.to.app == "Multi Proto"
    on_eth0 = rules[4]
    assert on_eth0.to.iface == "eth0" and on_eth0.to.ports == PortSet(((10250, 10250),))
    limit = rules[6]
    assert limit.action is Action.LIMIT
    assert limit.to.network == ipaddress.ip_network("10.250.0.10/32")
    assert limit.from_.ports == PortSet(((1234, 1234),))
    assert limit.log == "log-all"
    assert limit.comment == "weird # ALLOW comment"
    proto_only = rules[7]
    assert proto_only.protocol == "tcp" and proto_only.from_.network is not None
    assert rules[8].to.ports == PortSet(((10000, 10300),))
    assert rules[9].to.ports == PortSet(((22, 22), (10250, 10250)))
    assert rules[11].from_.ports == PortSet(((53, 53),)) and rules[11].protocol == "udp"
    v6 = rules[12]
    assert v6.v6 and v6.to.network is None and v6.to.v6_marker
    assert rules[18].v6 and not rules[18].to.v6_marker  # v6 from its address only
    assert rules[23].log == "log"
    fwd = rules[24]
    assert fwd.from_.iface == "eth0" and fwd.to.iface == "eth1"


def test_verbose_capture_default_and_app_rows() -> None:
    status = parse_status(VERBOSE, "v.txt")
    assert status.format is StatusFormat.VERBOSE
    assert status.default_incoming is Policy.REJECT and status.default_line == 3
    kubelet = status.rules[2]
    assert (kubelet.to.app, kubelet.to.ports, kubelet.protocol) == (
        "Kubelet",
        PortSet(((10250, 10250),)),
        "tcp",
    )
    v6_app = status.rules[7]
    assert v6_app.v6 and v6_app.to.app == "Kubelet"
    # Numbers as ufw counts them: v4 first, and the two rows of one app count once.
    numbers = [r.number for r in status.rules]
    assert numbers == [1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9]


def test_numbered_capture_keeps_ufws_numbers() -> None:
    status = parse_status(NUMBERED, "n.txt")
    assert status.format is StatusFormat.NUMBERED
    assert [r.number for r in status.rules] == list(range(1, 16))
    out = status.rules[4]
    assert out.direction is Direction.OUT and out.log == "log"


def test_numbers_recounted_from_plain_without_out_rules() -> None:
    lines = [ln for ln in PLAIN.splitlines() if "OUT" not in ln and "FWD" not in ln]
    status = parse_status("\n".join(lines), "p.txt")
    numbers = [r.number for r in status.rules]
    assert numbers == list(range(1, 23))


def test_messy_capture() -> None:
    status = parse_status(MESSY, "messy.txt")
    assert status.format is StatusFormat.VERBOSE
    assert status.default_incoming is Policy.DENY
    r = status.rules
    assert len(r) == 7
    assert r[0].to.app == "OpenSSH" and r[0].line == 7
    assert r[1].to.app == "Nginx Full" and r[1].comment == "web, (log) and # in a comment"
    assert r[1].log is None
    assert r[2].v6 and r[2].to.network == ipaddress.ip_network("2001:db8:85a3::8a2e:370:7334")
    assert r[2].from_.network == ipaddress.ip_network("2001:db8:aaaa:bbbb:cccc:dddd:eeee:0/112")
    assert r[3].to.ports == PortSet(((10250, 10250), (10255, 10255), (20000, 20010)))
    assert r[3].log == "log"
    assert r[4].action is Action.REJECT and r[4].log == "log-all"
    assert r[5].protocol == "tcp" and r[5].to.network is None
    assert r[6].to.iface == "eth1" and r[6].from_.network == ipaddress.ip_network("10.1.0.0/16")
    assert r[6].protocol == "tcp"


@pytest.mark.parametrize(
    "text",
    ["Status: inactive\n", "status: inactive", "\ufeffStatus: inactive\r\n\r\n"],
)
def test_inactive(text: str) -> None:
    status = parse_status(text, "x")
    assert status.state is State.INACTIVE and not status.active and status.rules == ()


@pytest.mark.parametrize(
    "text",
    [
        "bash: ufw: command not found\n",
        "sudo: ufw: command not found",
        "/bin/sh: 1: ufw: not found\n",
        "bash: line 1: ufw: command not found\n",
        "Command 'ufw' not found, but can be installed with:\n\nsudo apt install ufw\n",
    ],
)
def test_not_installed(text: str) -> None:
    status = parse_status(text, "x")
    assert status.state is State.NOT_INSTALLED and status.reason


def test_not_root_is_unreadable() -> None:
    status = parse_status("ERROR: You need to be root to run this script\n", "x")
    assert status.state is State.UNREADABLE
    assert "need to be root" in status.reason


def test_warnings_kept() -> None:
    status = parse_status("WARN: '/etc/ufw/user.rules' is world readable\nStatus: inactive\n", "x")
    assert status.warnings == ("WARN: '/etc/ufw/user.rules' is world readable",)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "empty"),
        ("   \n\t\n", None, "empty"),
        ("hello world\n", 1, "Status"),
        ("Estado: activo\n", 1, "Status"),
        ("Status: maybe\n", 1, "unknown status"),
        ("Status: active\nStatus: active\n", 2, "second"),
        ("Status: active\n22/tcp ALLOWED Anywhere\n", 2, "not a ufw rule"),
        ("Status: active\n22/tcp ALLOW\n", 2, "From"),
        ("Status: active\n99999/tcp ALLOW Anywhere\n", 2, "not ports"),
        ("Status: active\n10:5/tcp ALLOW Anywhere\n", 2, "not ports"),
        ("Status: active\n22/esp ALLOW Anywhere\n", 2, "protocol"),
        ("Status: active\n22/tcp ALLOW 53/udp\n", 2, "different protocols"),
        ("Status: active\n22/tcp ALLOW 10.0.0.1 ::1\n", 2, "From side"),
        ("Status: active\n10.0.0.1 ALLOW 2001:db8::1\n", 2, "IPv4 and IPv6"),
        ("Status: active\n10.0.0.1 (v6) ALLOW Anywhere\n", 2, "(v6)"),
        ("Status: active\nAnywhere junk ALLOW Anywhere\n", 2, "after 'Anywhere'"),
        ("Status: active\n22/tcp ALLOW IN Anywhere on eth0\n", 2, "outgoing interface"),
        ("Status: active\n[ 1] 22/tcp ALLOW IN Anywhere\n22 ALLOW IN Anywhere\n", 3, "[N]"),
        ("Status: active\n[ 2] 22 ALLOW IN Anywhere\n[ 1] 22 ALLOW IN Anywhere\n", 3, "after"),
        ("Status: active\nDefault: sideways (incoming), allow (outgoing)\n", 2, "policy"),
        ("Status: active\nDefault: whatever\n", 2, "Default"),
        ("Status: inactive\n22 ALLOW Anywhere\n", 2, "inactive"),
        ("$ sudo ufw status\nStatus: inactive\n", 1, "before 'Status:'"),
        ("Status: active\n22 ALLOW IN Anywhere (out)\n", 2, "(out)"),
    ],
)
def test_bad_input_names_the_line(text: str, line: int | None, words: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_status(text, "capture.txt")
    assert caught.value.source == "capture.txt"
    assert caught.value.line == line
    assert words in caught.value.message


def test_default_without_routed_from_older_ufw() -> None:
    status = parse_status("Status: active\nDefault: allow (incoming), allow (outgoing)\n", "x")
    assert status.default_incoming is Policy.ALLOW and status.rules == ()
