"""Turns a UFW verdict into findings, with the narrowest fix as exact ufw commands.

The fix allows the tunnel's source only, on the one port and protocol. `ufw allow` appends
its rule after every existing one, which is enough when nothing before it can drop,
reject or rate-limit the flow; otherwise the allow must go first: `ufw insert 1 ...` for
IPv4 (ufw refuses `insert 1` for an IPv6 rule while IPv4 rules exist: `ufw prepend` puts
it first among the IPv6 rules). Deleting the blocking rule is offered as the alternative,
by ufw's own rule number when the capture lets us know it.
"""

from __future__ import annotations

import ipaddress

from shared.analysis.findings import (
    TUNNEL_POD_REMINDER,
    Cause,
    Finding,
    Kind,
    Remediation,
    Severity,
    Subject,
)
from shared.analysis.shell import Placeholder, command, placeholder
from shared.analysis.ufw.evaluate import INCOMPLETE, UfwFlowVerdict, UfwVerdict
from shared.analysis.ufw.model import Action, UfwRule

__all__ = ["CHECK", "NODE_SUBNET_PLACEHOLDER", "findings_for"]

CHECK = "ufw.input"
# Why a LIMIT verdict is a problem for the tunnel, not an allow (see docs/cli.md "ufw").
LIMIT_HARM = (
    "ufw LIMIT rejects the 6th new connection within 30 seconds from one address; every "
    "kubectl logs/exec/attach/port-forward is a new connection from the same tunnel agent "
    "address, so a few at once are refused (intermittent 'error dialing backend')"
)
NODE_SUBNET_PLACEHOLDER = placeholder("node-subnet")

_NUMBER = placeholder("number")
_IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def findings_for(
    verdict: UfwVerdict, subject: Subject, fix_source: _IPNet | None = None
) -> list[Finding]:
    """No finding when UFW lets the flow through; one PROBLEM or INCONCLUSIVE otherwise.

    `fix_source` is the prefix the tunnel connects from (the scan passes the node subnet);
    without it the fix names --src, or a placeholder to fill in.
    """
    v = verdict.verdict
    if v is UfwFlowVerdict.ALLOW:
        return []
    evidence = [verdict.reason]
    evidence += [
        f"undecided{_where(u.rule)}: {u.reason}" for u in verdict.undecided if u.rule is not None
    ]
    evidence += list(verdict.notes)
    if v is UfwFlowVerdict.UNKNOWN:
        return [
            Finding(
                check=CHECK,
                cause=Cause.UFW,
                kind=Kind.INCONCLUSIVE,
                severity=Severity.WARNING,
                subject=subject,
                title=f"Could not decide whether UFW lets {verdict.flow_text()} through",
                evidence=tuple(evidence),
                remediation=Remediation(
                    (
                        "Capture the whole output (to a file: ufw ends it with a blank line) of "
                        if verdict.reason.startswith(INCOMPLETE)
                        else "Capture "
                    )
                    + "`ufw status verbose` as root and give the flow's source address, "
                    "destination address and interface, so every rule can be decided.",
                    commands=(command("sudo", "ufw", "status", "verbose"),),
                ),
                key="unknown",
            )
        ]
    source = _source_text(verdict, fix_source)
    if v is UfwFlowVerdict.LIMIT:
        return [
            Finding(
                check=CHECK,
                cause=Cause.UFW,
                kind=Kind.PROBLEM,
                severity=Severity.WARNING,
                subject=subject,
                title=f"UFW rate-limits {verdict.flow_text()}",
                evidence=(*evidence, LIMIT_HARM),
                remediation=_remediation(verdict, source),
                key="limit" if verdict.rule is None else _rule_key(verdict.rule),
            )
        ]
    doing = "drops" if v is UfwFlowVerdict.DENY else "rejects"
    return [
        Finding(
            check=CHECK,
            cause=Cause.UFW,
            kind=Kind.PROBLEM,
            severity=Severity.CRITICAL,
            subject=subject,
            title=f"UFW {doing} {verdict.flow_text()}",
            evidence=tuple(evidence),
            remediation=_remediation(verdict, source),
            key="default" if verdict.rule is None else _rule_key(verdict.rule),
        )
    ]


def _remediation(verdict: UfwVerdict, source: str | Placeholder) -> Remediation:
    spec = ("allow", "from", source, "to", "any", "port", verdict.port, "proto", verdict.proto)
    v6 = ":" in source if isinstance(source, str) else verdict.family == 6
    shadowing = [r for r in verdict.shadowing if r.v6 == v6]  # the fix's family only
    notes: list[str] = []
    if shadowing:
        fix = command("ufw", "prepend", *spec) if v6 else command("ufw", "insert", 1, *spec)
        decider = verdict.rule
        if decider is not None and decider.action is not Action.ALLOW:
            limits = decider.action is Action.LIMIT
            does, which = ("rate-limits", "limiting") if limits else ("blocks", "blocking")
            summary = (
                f"Allow the tunnel's source ahead of the rule that {does} it ({_plain(decider)}, "
                f"line {decider.line}); an appended `ufw allow` would come after it."
            )
            if decider.number is not None:
                delete = command("ufw", "delete", decider.number)
                notes.append(
                    f"Or delete the {which} rule instead: {delete}  "
                    f"(rule {decider.number}: {_plain(decider)})"
                )
            else:
                notes.append(
                    f"Or delete the {which} rule instead ({_plain(decider)}, line "
                    f"{decider.line}): this capture does not show ufw's rule numbers; find it "
                    f"with `ufw status numbered`, then {command('ufw', 'delete', _NUMBER)}"
                )
        else:
            summary = (
                "Allow the tunnel's source ahead of the rules that may block it; an appended "
                "`ufw allow` would come after them."
            )
        others = [r for r in shadowing if r is not decider]
        if others:
            notes.append(
                "Rules that may also drop, reject or limit it: "
                + "; ".join(f"line {r.line}: {_plain(r)}" for r in others)
            )
    else:
        fix = command("ufw", *spec)
        summary = (
            f"Allow TCP {verdict.port} from the tunnel's source only; the default incoming "
            f"policy ({_policy(verdict)}) stays as it is."
            if verdict.proto == "tcp"
            else f"Allow {verdict.proto.upper()} {verdict.port} from the tunnel's source only."
        )
    if source == NODE_SUBNET_PLACEHOLDER:
        notes.append(
            f"Replace {NODE_SUBNET_PLACEHOLDER} with the prefix the tunnel connects from: the "
            "node subnet (or the pod subnet when pods get their own subnet)."
        )
    notes.append(TUNNEL_POD_REMINDER)
    return Remediation(summary, (fix,), tuple(notes))


def _source_text(verdict: UfwVerdict, fix_source: _IPNet | None) -> str | Placeholder:
    if fix_source is not None:
        return str(fix_source)
    if verdict.src is not None:
        return str(verdict.src)
    return NODE_SUBNET_PLACEHOLDER


def _policy(verdict: UfwVerdict) -> str:
    return "unknown" if verdict.default_incoming is None else verdict.default_incoming.value


def _plain(rule: UfwRule) -> str:
    return f"{rule.to.text} {rule.action_text} {rule.from_.text}"


def _rule_key(rule: UfwRule) -> str:
    # The rule's own words, not its number or line: those move when other rules change.
    return "rule:" + _plain(rule)


def _where(rule: UfwRule | None) -> str:
    if rule is None:
        return ""
    number = f" rule {rule.number}" if rule.number is not None else ""
    return f"{number} (line {rule.line}: {rule.text})"
