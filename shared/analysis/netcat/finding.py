"""One reading of a connection test's result as a Finding, for every place that has one.

`tunnelwatch analyze nc` (a pasted capture, `netcat.findings`) and the node probe's connection
tests (`checks.node.reach`: peers' kubelet ports, the API server, tunnel-front's TCP 9000) say
the same thing: a blocked target is a PROBLEM whose title names how it failed, an unknown one
an INCONCLUSIVE with the reason, an open one nothing; the evidence is every attempt's line.
What differs is the caller's: the check id, cause, subject and key (together the finding's
fingerprint), the severity of a block, and the remediation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.analysis.findings import Cause, Finding, Kind, Origin, Remediation, Severity, Subject
from shared.analysis.netcat.lines import Status

if TYPE_CHECKING:  # the package imports this module
    from shared.analysis.netcat import TargetResult

__all__ = ["WHAT_A_FAILURE_MEANS", "Reading", "connection_finding", "how", "result_evidence"]

# What each way of failing says about where the packet was stopped; nc itself cannot tell.
WHAT_A_FAILURE_MEANS = (
    "A timeout means the SYN was dropped on the way: an NSG deny (NSGs drop silently) or a "
    "DROP rule in UFW/iptables on the target node.",
    "A refusal comes from the target node itself: a REJECT rule in UFW/iptables, or nothing "
    "listening on the port (for 10250: kubelet down). 'No route to host' can also be a REJECT "
    "rule (icmp-host-unreachable / icmp-host-prohibited).",
)


def how(status: Status) -> str:
    """How a target failed, in a title: "timed out", "refused", "unreachable", "failed"."""
    return "timed out" if status is Status.TIMEOUT else status.value


def result_evidence(r: TargetResult, prefix: str = "") -> tuple[str, ...]:
    """Every attempt's line; `prefix` names the output ("probe " for the node probe's)."""
    return tuple(
        f"{prefix}line {a.line_number}: {a.line}" + (f" ({a.reason})" if a.reason else "")
        for a in r.attempts
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """What the caller decides about a finding: the fingerprint's parts (check, cause,
    subject, key), the words around the target, the severity and remediation of a block."""

    check: str
    cause: Cause | None
    subject: Subject
    key: str
    target: str  # "10.0.0.5:10250", "kubelet port of node-b", "the API server x:443"
    path: str = ""  # " from node-a", " from the node"
    severity: Severity = Severity.CRITICAL
    remediation: Remediation | None = None
    origin: Origin = Origin.ARTICLE  # of a block; an unknown outcome is tunnelwatch's
    evidence_prefix: str = ""
    context: tuple[str, ...] = ()  # evidence before the attempts, for a block


def connection_finding(r: TargetResult, reading: Reading) -> Finding | None:
    """A PROBLEM for a blocked target, an INCONCLUSIVE for an unknown outcome, else None."""
    g = reading
    evidence = result_evidence(r, g.evidence_prefix)
    if r.status.blocked:
        return Finding(
            check=g.check,
            cause=g.cause,
            kind=Kind.PROBLEM,
            severity=g.severity,
            subject=g.subject,
            title=f"{g.target} not reachable{g.path}: {how(r.status)}",
            evidence=(*g.context, *evidence),
            remediation=g.remediation,
            key=g.key,
            origin=g.origin,
        )
    if r.status is Status.UNKNOWN:
        why = r.decisive.reason or "no recognisable output"
        return Finding(
            check=g.check,
            cause=g.cause,
            kind=Kind.INCONCLUSIVE,
            severity=Severity.WARNING,
            subject=g.subject,
            title=f"{g.target}{g.path}: outcome unknown ({why})",
            evidence=evidence,
            key=g.key,
            origin=Origin.TUNNELWATCH,
        )
    return None
