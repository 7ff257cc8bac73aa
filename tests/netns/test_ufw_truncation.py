"""Cut ufw captures never answer "allowed": real `ufw status` output, cut at every line and
mid-line.

Real ufw (tests/lab/ufwlab.py) is configured in a namespace in four states and captured as
`ufw status verbose`, `ufw status numbered` and plain `ufw status`; every capture is cut after
each line and at three points inside each line, and each cut is decided for an IPv4 flow, an
IPv6 flow and a flow of unknown family (TCP 10250). Plain captures are given the node's real
default policy with --default-incoming, as a user would. What a cut may answer:

- never a decided verdict other than the whole capture's, nor another deciding rule (so no
  false "allowed");
- a verdict by a rule only from a rule the cut shows (ufw's rules are first-match: rules
  missing after it cannot override it);
- a verdict by the default policy only when the cut shows, in ufw's own terms, that the
  family's IN rules ended: the line after the last of them (a blank line, an IPv6 rule, an
  OUT or routed rule) is in the cut.

The whole capture is decided as the node probe reads it (`whole=True`: its producer checked
ufw's exit status); a bare capture of an active ufw without rules cannot prove it is whole.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from shared.analysis import ufw
from shared.errors import InputError
from tests.conftest import require_tools
from tests.lab.netns import Lab
from tests.lab.ufwlab import UfwHost, machine_ufw_snapshot, ufw_unavailable_reason
from tests.netns.test_iptables_truncation import cuts
from tests.skips import cannot_run

pytestmark = pytest.mark.netns

FLOWS = {
    "v4": (ipaddress.ip_address("10.250.0.20"), ipaddress.ip_address("10.250.0.10")),
    "v6": (ipaddress.ip_address("fd00::20"), ipaddress.ip_address("fd00::10")),
    "any": (None, None),
}
STATES: dict[str, tuple[str, list[list[str]]]] = {
    # The defect's capture: default allow, then a DENY of 10250 after an unrelated ALLOW.
    "deny-after-allow": ("allow", [["allow", "22/tcp"], ["deny", "10250"]]),
    # OUT and routed rules between and after: the sections plain/verbose print apart, and
    # numbered interleaves.
    "deny-with-out-and-routed": (
        "allow",
        [
            ["allow", "22/tcp"],
            ["allow", "out", "53"],
            ["route", "allow", "in", "on", "eth0", "out", "on", "eth1"],
            ["deny", "from", "10.250.0.0/24", "to", "any", "port", "10250", "proto", "tcp"],
            ["deny", "from", "fd00::/64", "to", "any", "port", "10250", "proto", "tcp"],
        ],
    ),
    # Healthy: default deny, 10250 allowed from the node subnet (the allow comes from a rule).
    "allowed-by-rule": (
        "deny",
        [
            ["allow", "22/tcp"],
            ["allow", "from", "10.250.0.0/24", "to", "any", "port", "10250", "proto", "tcp"],
            ["allow", "from", "fd00::/64", "to", "any", "port", "10250", "proto", "tcp"],
        ],
    ),
    # Allowed by the default policy: only a cut that shows the rules ended may say so.
    "allowed-by-default": ("allow", [["deny", "22/tcp"], ["limit", "10251/tcp"]]),
    # No rules at all: nothing shows such a capture ended, whatever the policy.
    "no-rules": ("allow", []),
}
FORMATS = {
    "verbose": ["status", "verbose"],
    "numbered": ["status", "numbered"],
    "plain": ["status"],
}


@pytest.fixture(scope="module")
def captures(netns_ok: None) -> Iterator[dict[tuple[str, str], str]]:
    require_tools("ufw", "iptables")
    if reason := ufw_unavailable_reason():
        cannot_run(f"needs ufw with its packaged files: {reason}")
    before = machine_ufw_snapshot()
    out: dict[tuple[str, str], str] = {}
    with ExitStack() as stack:
        lab = stack.enter_context(Lab())
        node = UfwHost(lab.add_host(["10.250.0.10"]))
        stack.callback(node.close)
        for state, (default, commands) in STATES.items():
            node.reset()
            node.ufw("default", default, "incoming")
            for argv in commands:
                node.ufw(*argv)
            node.ufw("--force", "enable")
            for fmt, argv in FORMATS.items():
                out[(state, fmt)] = node.ufw(*argv).stdout
            node.ufw("disable")
        yield out
    assert machine_ufw_snapshot() == before, "the machine's /etc/ufw or /etc/default/ufw changed"


def _decide(text: str, state: str, flow: str, *, whole: bool) -> tuple[str, int | None]:
    """(verdict, line of the deciding rule) as `tunnelwatch analyze ufw` decides it; "error"
    when the input is refused (exit 2, never "allowed")."""
    src, dst = FLOWS[flow]
    try:
        status = ufw.parse_status(text, "cut", whole=whole)
    except InputError:
        return "error", None
    v = ufw.evaluate(status, src=src, dst=dst, default_incoming=ufw.Policy(STATES[state][0]))
    return v.verdict.value, None if v.rule is None else v.rule.line


def _end_line(whole: str, flow: str) -> int:
    """The 1-based number of the line after the last IN rule of the flow's families (after
    the `--` header when there is none): a cut holding it whole shows those rules ended."""
    status = ufw.parse_status(whole, "whole", whole=True)
    families = {"v4": [False], "v6": [True], "any": [False, True]}[flow]
    lines = whole.split("\n")
    header = next(i for i, ln in enumerate(lines, 1) if ln.split() == ["--", "------", "----"])
    ins = [r.line for r in status.rules if r.direction is ufw.Direction.IN and r.v6 in families]
    return max(ins, default=header) + 1


def _proves_end(whole: str, cut: str, flow: str) -> bool:
    if "To" not in whole:  # no rule table: nothing marks the end
        return False
    return len(cut.split("\n")) - 1 >= _end_line(whole, flow)  # whole lines in the cut


@pytest.mark.parametrize("flow", list(FLOWS))
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("state", list(STATES))
def test_cut_ufw_capture_never_answers_allowed(
    captures: dict[tuple[str, str], str], state: str, fmt: str, flow: str
) -> None:
    whole = captures[(state, fmt)]
    expected, by = _decide(whole, state, flow, whole=True)
    assert expected != "error", (state, fmt, whole)
    tested = decided = false_allowed = 0
    wrong: list[str] = []
    for size, cut in cuts(whole):
        tested += 1
        got, got_by = _decide(cut, state, flow, whole=False)
        if got in ("error", "unknown"):
            continue
        decided += 1
        where = f"cut at {size} of {len(whole)}: {got} (rule at line {got_by})"
        if got in ("allow", "limit") and expected not in ("allow", "limit"):
            false_allowed += 1
            wrong.append(f"false allowed, {where}")
        elif got != expected or got_by != by:
            wrong.append(f"{where}, whole: {expected} (rule at line {by})")
        elif got_by is None and not _proves_end(whole, cut, flow):
            wrong.append(f"decided by the default policy without proof the rules ended, {where}")
        elif got_by is not None and len(cut.split("\n")) - 1 < got_by:
            wrong.append(f"decided by a rule the cut does not show whole, {where}")
    print(
        f"\nufw {fmt} {state} {flow}: {tested} cuts tested, {decided} decided, "
        f"{false_allowed} false allowed, {len(wrong)} unsound (whole: {expected})"
    )
    assert not wrong, "\n".join(wrong[:10])


def test_the_defects_capture(captures: dict[tuple[str, str], str]) -> None:
    """Issue 15, defect 7: `ufw status verbose`, default allow, DENY 10250 after ALLOW 22,
    cut after lines 3 to 8: unknown (capture incomplete) until the DENY line is whole."""
    whole = captures[("deny-after-allow", "verbose")]
    lines = whole.split("\n")
    deny = next(i for i, ln in enumerate(lines, 1) if ln.startswith("10250 "))
    src, dst = FLOWS["v4"]
    for n in range(3, deny):
        cut = "\n".join(lines[:n]) + "\n"
        v = ufw.evaluate(ufw.parse_status(cut, "cut"), src=src, dst=dst)
        assert v.verdict is ufw.UfwFlowVerdict.UNKNOWN, (n, v.reason)
        assert v.reason.startswith("capture incomplete: "), v.reason
    cut = "\n".join(lines[:deny]) + "\n"
    v = ufw.evaluate(ufw.parse_status(cut, "cut"), src=src, dst=dst)
    assert v.verdict is ufw.UfwFlowVerdict.DENY and v.rule is not None and v.rule.line == deny
