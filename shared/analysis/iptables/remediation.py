"""Turning an iptables verdict into Findings, with the narrowest fix as an exact command.

A block by a rule: delete that rule by its number (`iptables [-t T] -D CHAIN N`). A block by a
policy: insert one ACCEPT for the tunnel's source in that chain. A block UFW decided: the ufw
command, since editing ufw's chains by hand is undone by the next `ufw reload`.

The wording the nftables engine's findings share with these (the flow, the inconclusive
finding, the trace's last steps, the note on managed rules) lives here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from shared.analysis.findings import (
    TUNNEL_POD_REMINDER,
    Cause,
    Finding,
    Kind,
    Remediation,
    Severity,
    Subject,
)
from shared.analysis.iptables.model import IptablesVerdict, Packet, PacketVerdict, TraceStep
from shared.analysis.shell import command, placeholder

__all__ = [
    "CHECK",
    "findings_for",
    "fix_commands",
    "flow_text",
    "inconclusive_finding",
    "last_steps",
    "managed_note",
    "trace_summary",
]

CHECK = "iptables.input"

# Chains other software rewrites: deleting their rules by hand does not last.
_MANAGED = {
    "KUBE-": "kube-proxy",
    "cali-": "Calico",
    "CILIUM_": "Cilium",
    "AZURE-": "Azure CNI",
    "ufw-": "ufw",
    "ufw6-": "ufw",
}


_Step = TypeVar("_Step")


def _manager(chain: str) -> str:
    return next((who for prefix, who in _MANAGED.items() if chain.startswith(prefix)), "")


def flow_text(p: Packet | None) -> str:
    """The flow as titles and summaries name it: "TCP 10250 from 10.224.0.99"."""
    return "the packet" if p is None else f"{p.proto.upper()} {p.dport} from {p.src}"


def managed_note(what: str, manager: str) -> str:
    return (
        f"{what} is managed by {manager}: a deleted rule comes back; change the configuration "
        "that creates it"
    )


def last_steps(steps: Sequence[_Step], line: Callable[[_Step], str], limit: int = 12) -> list[str]:
    """The last `limit` steps of a trace, one line each, after a count of those left out."""
    lines = [line(s) for s in steps[-limit:]]
    if len(steps) > limit:
        lines.insert(0, f"... {len(steps) - limit} earlier step(s)")
    return lines


def inconclusive_finding(
    check: str, engine: str, p: Packet | None, subject: Subject, evidence: list[str]
) -> Finding:
    """The finding for an engine (iptables, nftables) that cannot decide the packet's fate."""
    return Finding(
        check=check,
        cause=Cause.IPTABLES,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=subject,
        title=f"cannot decide whether {engine} lets {flow_text(p)} in",
        evidence=tuple(evidence),
        key="unknown",
    )


def fix_commands(v: IptablesVerdict) -> tuple[str, ...]:
    """The exact commands that would let the packet through (empty unless it is blocked).

    Chain and table names come from the capture, which a hostile node could have shaped
    (`iptables -N 'x$(reboot)'` is a valid chain): every such word is shell-quoted, so pasting
    the command never runs anything but iptables or ufw.
    """
    by = v.decided_by
    if not v.verdict.blocks or by is None or v.packet is None:
        return ()
    p = v.packet
    if v.cause == 2:
        allow = ("allow", "from", str(p.src), "to", "any", "port", p.dport, "proto", str(p.proto))
        if by.policy is None and by.chain.startswith(("ufw-user", "ufw6-user")):
            # A user rule denies the port: an appended allow would come after it.
            return (command("ufw", "insert", 1, *allow),)
        return (command("ufw", *allow),)
    table = () if by.table == "filter" else ("-t", by.table)
    if by.policy is not None:
        return (
            command(
                v.command,
                *table,
                "-I",
                by.chain,
                1,
                "-s",
                str(p.src),
                "-p",
                str(p.proto),
                "--dport",
                p.dport,
                "-j",
                "ACCEPT",
            ),
        )
    number = placeholder("rule-number") if by.rule_number is None else by.rule_number
    return (command(v.command, *table, "-D", by.chain, number),)


def trace_summary(trace: tuple[TraceStep, ...], limit: int = 12) -> list[str]:
    def line(s: TraceStep) -> str:
        where = f"{s.table} {s.chain}" + (f" #{s.rule_number}" if s.rule_number else "")
        return f"{where}: {s.action}" + (f"  [{s.rule}]" if s.rule else "")

    return last_steps(trace, line, limit)


def _where(v: IptablesVerdict) -> str:
    by = v.decided_by
    if by is None:
        return ""
    if by.policy is not None:
        return f"policy {by.policy} of {by.table} {by.chain}"
    return f"rule {by.rule_number} of {by.table} {by.chain}"


def _blocks(v: IptablesVerdict) -> str:
    if v.blocked_as:
        return "blocks (drop or reject)"
    return "drops" if v.verdict is PacketVerdict.DROP else "rejects"


def findings_for(v: IptablesVerdict, subject: Subject) -> list[Finding]:
    """No finding for accept; a critical problem for a block; an inconclusive one otherwise."""
    what = flow_text(v.packet)
    if v.verdict is PacketVerdict.ACCEPT:
        return []
    by = v.decided_by
    if v.verdict is PacketVerdict.UNKNOWN:
        evidence = [f"source: {v.source}", f"why: {v.reason}"]
        evidence += [
            f"undecided: {u.table} {u.chain} #{u.rule_number} [{u.rule}]: {u.reason}"
            for u in v.undecided[:10]
        ]
        evidence += list(v.notes)
        return [inconclusive_finding(CHECK, "iptables", v.packet, subject, evidence)]
    if by is None:  # a block always names its rule or policy
        raise ValueError("a drop/reject verdict without decided_by")
    cause = Cause.UFW if v.cause == 2 else Cause.IPTABLES
    evidence = [f"source: {v.source}", f"decided by {_where(v)}"]
    if by.rule:
        evidence.append(f"rule: {by.rule}")
    evidence += [f"trace: {line}" for line in trace_summary(v.trace)]
    evidence += [
        f"also blocks on another path: {o.table} {o.chain} "
        + (f"policy {o.policy}" if o.policy else f"#{o.rule_number} [{o.rule}]")
        for o in v.other_blocks
    ]
    evidence += list(v.notes)
    if v.blocked_as:
        evidence.append(f"blocked ({v.blocked_as})")
    notes = []
    manager = _manager(by.chain)
    if manager and cause is Cause.IPTABLES:
        notes.append(managed_note(by.chain, manager))
    if by.policy is None and cause is Cause.IPTABLES:
        notes.append(
            "rule numbers shift when rules are added or removed: check with "
            f"`{command(v.command, '-t', by.table, '-L', by.chain, '--line-numbers')}` first"
        )
    notes.append(TUNNEL_POD_REMINDER)
    summary = (
        f"allow {what} in ufw"
        if cause is Cause.UFW
        else f"remove the {'block' if v.blocked_as else v.verdict.value.upper()} {_where(v)}"
        if by.policy is None
        else f"allow {what} before the {by.policy} policy of {by.table} {by.chain}"
    )
    key = f"{by.table}:{by.chain}:" + (f"policy:{by.policy}" if by.policy else by.rule or "")
    return [
        Finding(
            check=CHECK,
            cause=cause,
            kind=Kind.PROBLEM,
            severity=Severity.CRITICAL,
            subject=subject,
            title=f"{'UFW' if cause is Cause.UFW else 'iptables'} {_blocks(v)} {what} "
            f"({_where(v)})",
            evidence=tuple(evidence),
            remediation=Remediation(summary, fix_commands(v), tuple(notes)),
            key=key,
        )
    ]
