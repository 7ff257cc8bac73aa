"""What every part of the node checks shares: the node a report came from, run-command quoting.

A fix is given as the `az vmss run-command invoke` that would run it on the node, quoted so
that no text from the node (chain names, comments) can escape the --scripts argument. Pure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

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
from shared.analysis.shell import Command, command

__all__ = [
    "KUBELET_PORT",
    "IPAddr",
    "Where",
    "adapt",
    "merge",
    "run_command",
    "undecided",
]

KUBELET_PORT = 10250
_MAX_LISTED = 10  # sources named in one evidence line
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Where:
    """The node a report came from, as run command and the findings name it."""

    subject: Subject
    node_rg: str
    vmss: str
    instance_id: str

    def invoke(self, fix: Command) -> Command:
        return run_command(fix, node_rg=self.node_rg, vmss=self.vmss, instance_id=self.instance_id)


def run_command(fix: Command, *, node_rg: str, vmss: str, instance_id: str) -> Command:
    """`fix` as the `az vmss run-command invoke` that runs it on the node.

    The fix is built from words (shared.analysis.shell), so names taken from captures (chain
    names that may hold `$(...)` or quotes) are quoted in its text; that text is then one
    quoted word of the az command, so neither the user's shell nor the node's runs anything
    but the fix's own words.
    """
    return command(
        "az", "vmss", "run-command", "invoke", "-g", node_rg, "-n", vmss,
        "--instance-id", instance_id, "--command-id", "RunShellScript", "--scripts", fix,
    )  # fmt: skip


def adapt(f: Finding, where: Where) -> Finding:
    """An engine finding with its commands wrapped in run command for this node."""
    r = f.remediation
    if r is None:
        return f
    commands: list[str] = []
    notes = list(r.notes)
    for fix in r.commands:
        if isinstance(fix, Command):
            commands.append(where.invoke(fix))
            notes.append(f"on the node itself the command is: {fix}")
        else:  # text not built from words: never wrapped into a command that might differ
            notes.append(f"this fix could not be quoted safely for run command; adapt it: {fix}")
    if TUNNEL_POD_REMINDER not in notes:
        notes.append(TUNNEL_POD_REMINDER)
    return replace(f, remediation=Remediation(r.summary, tuple(commands), tuple(notes)))


def undecided(where: Where, check: str, cause: Cause | None, why: str, key: str) -> Finding:
    return Finding(
        check=check,
        cause=cause,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title=f"could not evaluate this node's rules: {why}",
        evidence=(why,),
        remediation=Remediation("Run the deep probe again, or check the node by hand."),
        key=key,
        origin=Origin.TUNNELWATCH,
    )


def merge(per_source: list[tuple[IPAddr, Finding]], flow: str, where: Where) -> list[Finding]:
    """One finding per fingerprint, naming every source it holds for and every fix."""
    groups: dict[str, tuple[Finding, list[str], list[str]]] = {}
    for src, f in per_source:
        first, srcs, commands = groups.setdefault(f.fingerprint, (f, [], []))
        srcs.append(str(src))
        if f.remediation is not None:
            commands += [c for c in f.remediation.commands if c not in commands]
    out = []
    for first, srcs, commands in groups.values():
        more = f" (+{len(srcs) - _MAX_LISTED} more)" if len(srcs) > _MAX_LISTED else ""
        evidence = (f"packet: {flow} from {', '.join(srcs[:_MAX_LISTED])}{more}", *first.evidence)
        rem = first.remediation
        merged = replace(
            first,
            evidence=evidence,
            remediation=None if rem is None else replace(rem, commands=tuple(commands)),
        )
        out.append(adapt(merged, where))
    return out
