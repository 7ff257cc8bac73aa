"""No text makes the ufw parser (or the evaluator after it) raise anything but InputError."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.analysis.findings import Subject
from shared.analysis.ufw import Policy, evaluate, findings_for, parse_status
from shared.errors import InputError
from tests.unit.test_ufw_parse import MESSY, NUMBERED, PLAIN, VERBOSE

VALID = [PLAIN, VERBOSE, NUMBERED, MESSY, "Status: inactive\n"]
WORDS = [
    "Status:",
    "active",
    "inactive",
    "ALLOW",
    "DENY",
    "REJECT",
    "LIMIT",
    "IN",
    "OUT",
    "FWD",
    "Anywhere",
    "Anywhere/tcp",
    "(v6)",
    "on",
    "eth0",
    "eth+",
    "(log)",
    "(log-all)",
    "(out)",
    "(log,",
    "out)",
    "#",
    "10250/tcp",
    "22,10250/tcp",
    "10000:10300/tcp",
    "10250",
    "53/udp",
    "10.0.0.0/8",
    "10.0.0.0/8/tcp",
    "2001:db8::/32",
    "::",
    "OpenSSH",
    "Nginx",
    "Full",
    "(Kubelet",
    "(Kubelet)",
    "[",
    "]",
    "[ 1]",
    "[99]",
    "To",
    "Action",
    "From",
    "--",
    "------",
    "Default:",
    "deny",
    "(incoming),",
    "allow",
    "(outgoing),",
    "(routed)",
    "Logging:",
    "ERROR:",
    "WARN:",
    "ufw:",
    "command",
    "not",
    "found",
    "65536",
    "0:0",
    ":",
    ",",
    "/",
    "\t",
    "\r",
]


def _check(text: str) -> None:
    try:
        status = parse_status(text, "prop")
    except InputError as exc:
        assert exc.source == "prop"
        return
    for policy in (None, Policy.DENY):
        verdict = evaluate(status, src=ipaddress.ip_address("10.0.0.1"), default_incoming=policy)
        findings_for(verdict, Subject())
        verdict.to_json()
    evaluate(status, in_iface="eth0")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text(text: str) -> None:
    _check(text)


line = st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(line, max_size=10), st.sampled_from(["Status: active\n", "", "\r\n"]))
def test_random_lines(lines: list[str], head: str) -> None:
    _check(head + "\n".join(lines))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "dup-line", "cut"]))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
        elif kind == "insert":
            text = text[:at] + draw(st.sampled_from([*WORDS, " ", "\n"])) + text[at:]
        elif kind == "replace":
            text = text[:at] + draw(st.characters()) + text[at + 1 :]
        elif kind == "dup-line":
            lines = text.split("\n")
            i = at % len(lines)
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        else:
            text = text[:at]
    return text


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_mutations_of_valid_captures(text: str) -> None:
    _check(text)


def test_valid_captures_parse() -> None:
    for text in VALID:
        assert parse_status(text, "ok").source == "ok"
