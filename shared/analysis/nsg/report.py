"""NSG verdicts as Findings: a deny is a critical problem with the fix; unknown is inconclusive.

Inbound denies are the article's cause 1 (an NSG blocks TCP 10250); other inbound ports are
reported under the same cause as tunnelwatch's extension. Outbound denies are cause 4
(egress): TCP 9000 and UDP 1194 come from the article, anything else (TCP 443 to the API
server above all) is tunnelwatch's extension.
"""

from __future__ import annotations

from shared.analysis.findings import (
    TUNNEL_POD_REMINDER,
    Cause,
    Finding,
    Kind,
    Origin,
    Remediation,
    Severity,
    Subject,
)
from shared.analysis.nsg.evaluate import NsgFlowVerdict, NsgVerdict
from shared.analysis.nsg.fix import Fix, propose_fix
from shared.analysis.nsg.model import Direction, Protocol

__all__ = ["cause_of", "findings_for"]

_ARTICLE_EGRESS = {(Protocol.TCP, 9000), (Protocol.UDP, 1194)}
_AVNM_NOTE = (
    "Azure Virtual Network Manager security admin rules are evaluated before NSGs and are "
    "not part of this check"
)


def cause_of(verdict: NsgVerdict) -> tuple[Cause, Origin]:
    flow = verdict.flow
    if flow.direction is Direction.INBOUND:
        article = flow.proto is Protocol.TCP and flow.dport == 10250
        return Cause.NSG, Origin.ARTICLE if article else Origin.TUNNELWATCH
    article = (flow.proto, flow.dport) in _ARTICLE_EGRESS
    return Cause.EGRESS, Origin.ARTICLE if article else Origin.TUNNELWATCH


def _layer_evidence(verdict: NsgVerdict) -> list[str]:
    lines = []
    for lr in verdict.layers:
        if lr.nsg is None:
            lines.append(f"{lr.layer.value}: no NSG associated (allows)")
        elif lr.decided_by is None:
            lines.append(f"{lr.layer.value} NSG {lr.nsg.label}: no rule matches for certain")
        else:
            lines.append(f"{lr.decided_by.label()} -> {lr.outcome.value}")
    return lines


def findings_for(verdict: NsgVerdict, subject: Subject, *, fix: Fix | None = None) -> list[Finding]:
    """No finding for allow; one problem for deny (with `fix`, or the default fix); one
    inconclusive finding for unknown, listing the undecided rules that matter."""
    if verdict.verdict is NsgFlowVerdict.ALLOW:
        return []
    flow = verdict.flow
    cause, origin = cause_of(verdict)
    check = f"nsg.{flow.direction.value.lower()}"
    what = f"{flow.proto.value.upper()} {flow.dport} from {flow.src} to {flow.dst}"
    if verdict.verdict is NsgFlowVerdict.DENY:
        if fix is None:
            fix = propose_fix(verdict)
        deciders = verdict.decided_by
        names = ", ".join(f"{r.nsg}/{r.rule} ({r.priority})" for r in deciders)
        key = f"{flow.proto.value.lower()}/{flow.dport}:" + ",".join(
            f"{r.layer.value}:{r.nsg_id or r.nsg}/{r.rule}".lower() for r in deciders
        )
        commands = () if fix is None else fix.commands
        notes = () if fix is None else fix.notes
        return [
            Finding(
                check=check,
                cause=cause,
                kind=Kind.PROBLEM,
                severity=Severity.CRITICAL,
                subject=subject,
                title=f"NSG denies {what}: {names}",
                evidence=(*_layer_evidence(verdict), f"flow: {flow.label()}"),
                remediation=Remediation(
                    summary=(
                        "Add an allow rule that beats the deny in each denying NSG "
                        f"({len(commands)} command(s) below)"
                    ),
                    commands=commands,
                    notes=(*notes, TUNNEL_POD_REMINDER),
                ),
                key=key,
                origin=origin,
            )
        ]
    mattering = [u for u in verdict.undecided if u.matters]
    evidence = [
        f"{'(end of rules)' if u.rule is None else u.rule.label()}: " + "; ".join(u.reasons)
        for u in mattering
    ]
    return [
        Finding(
            check=check,
            cause=cause,
            kind=Kind.INCONCLUSIVE,
            severity=Severity.WARNING,
            subject=subject,
            title=f"Cannot decide whether the NSGs allow {what}",
            evidence=(*evidence, *_layer_evidence(verdict), f"flow: {flow.label()}"),
            remediation=Remediation(
                summary=(
                    "Give what the undecided rules need (--vnet-prefix, --service-tags, "
                    "ASG membership, source port), or verify the flow with Network Watcher "
                    "NSG diagnostics"
                ),
                notes=(_AVNM_NOTE,),
            ),
            key=f"{flow.proto.value.lower()}/{flow.dport}:unknown",
            origin=origin,
        )
    ]
