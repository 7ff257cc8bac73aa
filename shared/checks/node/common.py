"""What every part of the node checks shares: the node a report came from, run-command quoting.

A fix is given as the `az vmss run-command invoke` that would run it on the node, quoted so
that no text from the node (chain names, comments) can escape the --scripts argument. Pure.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
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

__all__ = [
    "KUBELET_PORT",
    "IPAddr",
    "Where",
    "adapt",
    "merge",
    "run_command",
    "shell_word",
    "undecided",
]

KUBELET_PORT = 10250
_MAX_LISTED = 10  # sources named in one evidence line
# Characters a shell gives no meaning to: a word made only of these needs no quoting.
_PLAIN = re.compile(r"[A-Za-z0-9_./:,=@+%-]+")
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Where:
    """The node a report came from, as run command and the findings name it."""

    subject: Subject
    node_rg: str
    vmss: str
    instance_id: str

    def invoke(self, fix: str) -> str | None:
        return run_command(fix, node_rg=self.node_rg, vmss=self.vmss, instance_id=self.instance_id)


def shell_word(word: str) -> str:
    return word if _PLAIN.fullmatch(word) else shlex.quote(word)


def run_command(fix: str, *, node_rg: str, vmss: str, instance_id: str) -> str | None:
    """`fix` as the `az vmss run-command invoke` that runs it on the node; None if unsafe.

    A fix is a shell command line whose words taken from captures are already quoted (the
    engines quote chain names, which may hold `$(...)` or quotes). It is parsed into words and
    joined again canonically, so anything outside quotes (an operator slipped into a name)
    becomes a literal word; the whole script is then one word for the user's shell: in double
    quotes when it holds only plain characters (the article's spelling), else shlex-quoted.
    """
    if "\n" in fix or "\r" in fix:
        return None  # two command lines: joining them would make one different command
    try:
        words = shlex.split(fix)
    except ValueError:
        return None  # unbalanced quotes: no command rather than a wrong one
    if not words or any("\t" in w for w in words):
        return None
    script = shlex.join(words)
    quoted = f'"{script}"' if all(_PLAIN.fullmatch(w) for w in words) else shlex.quote(script)
    return (
        f"az vmss run-command invoke -g {shell_word(node_rg)} -n {shell_word(vmss)} "
        f"--instance-id {shell_word(instance_id)} --command-id RunShellScript "
        f"--scripts {quoted}"
    )


def adapt(f: Finding, where: Where) -> Finding:
    """An engine finding with its commands wrapped in run command for this node."""
    r = f.remediation
    if r is None:
        return f
    commands: list[str] = []
    notes = list(r.notes)
    for fix in r.commands:
        wrapped = where.invoke(fix)
        if wrapped is None:
            notes.append(f"this fix could not be quoted safely for run command; adapt it: {fix}")
        else:
            commands.append(wrapped)
            notes.append(f"on the node itself the command is: {fix}")
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
