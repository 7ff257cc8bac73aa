"""The deep probe's rulesets: iptables (every backend in force, together), ufw, native nftables.

A packet must pass every ruleset in force, so the iptables dumps are walked together; `ufw
status` goes through the ufw engine, whose fix replaces the same block seen through ufw's
chains. A native nftables ruleset is never fed to the iptables engine (the package's
`_nftables` handles it). A ruleset the
script's size guard left out, or could not read, leaves the question undecided with the way
to read it by hand. Pure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from shared.analysis import iptables, nftables, ufw
from shared.analysis.findings import Cause, Finding, Kind, Origin, Remediation, Severity
from shared.analysis.shell import command, placeholder
from shared.checks.node.common import KUBELET_PORT, IPAddr, Where, merge, undecided
from shared.errors import InputError
from shared.probe.output import ProbeError, ProbeReport

__all__ = [
    "NFTABLES",
    "error_finding",
    "hidden_findings",
    "hidden_tables",
    "iptables_findings",
    "reveal_hidden",
    "ufw_findings",
]

NFTABLES = "nftables"  # the backend name of a native nftables ruleset record
_READ_BY_HAND = {  # what prints the whole ruleset on the node, and what reads it here
    "legacy": (command("iptables-legacy-save"), "tunnelwatch analyze iptables"),
    "nft": (command("iptables-nft-save"), "tunnelwatch analyze iptables"),
    NFTABLES: (command("nft", "-j", "list", "ruleset"), ""),
    "ufw": (command("ufw", "status", "verbose"), "tunnelwatch analyze ufw"),
}
_ANY_BACKEND = (command("iptables-save"), "tunnelwatch analyze iptables")


# What iptables-nft-save prints for a table of its own that holds what it cannot show (native
# nft chains or rules): "# Table `filter' is incompatible, use 'nft' tool." (the whole table
# left out) or "... contains incompatible base-chains, use 'nft' tool to list them." (the
# chains it can show are printed, the others are not).
_HIDDEN = re.compile(r"^# Table .([A-Za-z_]+). (?:is|contains) incompatible", re.MULTILINE)
_SECTION = re.compile(r"^\*([A-Za-z_]+)$((?:\n(?!\*|COMMIT$).*)*)", re.MULTILINE)
_DECLARED = re.compile(r"^:(\S+)", re.MULTILINE)


def hidden_tables(report: ProbeReport) -> dict[str, frozenset[str]]:
    """Tables of the nft backend iptables-nft-save said it cannot show, each with the chains
    it did print (`:CHAIN` lines of its `*table` section; none when it left the table out)."""
    out: dict[str, frozenset[str]] = {}
    for record in report.rulesets:
        if record.backend != "nft":
            continue
        names = set(_HIDDEN.findall(record.text))
        shown = {m.group(1): m.group(2) for m in _SECTION.finditer(record.text)}
        for name in names:
            out[name] = frozenset(_DECLARED.findall(shown.get(name, "")))
    return out


def reveal_hidden(
    ruleset: nftables.NftRuleset, hidden: Mapping[str, frozenset[str]]
) -> nftables.NftRuleset:
    """The ruleset with the hidden iptables-nft tables evaluated natively: their base chains
    iptables-nft-save printed lose their hook (the iptables engine evaluates those; they stay
    reachable by a jump), the rest is no longer skipped as iptables-nft's."""
    tables = []
    for t in ruleset.tables:
        if t.family != "ip" or t.name not in hidden:
            tables.append(t)
            continue
        chains = {
            n: replace(c, hook=None, prio=None, type=None, policy=None)
            if n in hidden[t.name] and c.is_base
            else c
            for n, c in t.chains.items()
        }
        tables.append(replace(t, chains=chains, compat=""))
    return replace(ruleset, tables=tuple(tables))


def hidden_findings(
    report: ProbeReport, where: Where, hidden: Mapping[str, frozenset[str]], revealed: set[str]
) -> list[Finding]:
    """A hidden table (`hidden_tables`) the report holds no native dump of: undecided."""
    if any(e.subject == f"ruleset {NFTABLES}" for e in report.errors):
        return []  # the nftables read failed: error_finding says so already
    why = (
        "iptables-nft-save cannot show the nft backend's {} table (it holds native nft "
        "rules) and the report holds no native dump of it; read it with `{}`"
    )
    return [
        undecided(
            where,
            "node.ruleset",
            Cause.IPTABLES,
            why.format(n, command("nft", "list", "table", "ip", n)),
            f"hidden:{n}",
        )
        for n in sorted(set(hidden) - revealed)
    ]


def error_finding(e: ProbeError, where: Where) -> Finding:
    """What the script could not do or report, and records we could not decode: undecided."""
    if e.too_large is not None:
        return _too_large(e, e.too_large, where)
    if e.subject == "ufw":  # ufw failed, timed out or was not read: cause 2 is not decided
        dump, analyze = _READ_BY_HAND["ufw"]
        return Finding(
            check="node.ufw",
            cause=Cause.UFW,
            kind=Kind.INCONCLUSIVE,
            severity=Severity.WARNING,
            subject=where.subject,
            title="the ufw status could not be read: ufw not decided",
            evidence=(f"{e.subject}: {e.message}",),
            remediation=Remediation(
                f"Run the deep probe again; if it repeats, capture `{dump}` on the node as root "
                f"and check it with {analyze}."
            ),
            key="error:ufw",
            origin=Origin.TUNNELWATCH,
        )
    backend = e.subject.removeprefix("ruleset ") if e.subject.startswith("ruleset ") else ""
    what = "native nftables" if backend == NFTABLES else f"{backend} iptables"
    return Finding(
        check="node.ruleset" if backend else "node.probe",
        cause=Cause.IPTABLES if backend else None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title=(
            f"the {what} ruleset could not be read: iptables not decided"
            if backend
            else f"the probe could not report {e.subject}"
        ),
        evidence=(f"{e.subject}: {e.message}",),
        remediation=Remediation(
            "Run the deep probe again; if it repeats, capture the ruleset by hand "
            "(iptables-save for that backend) and check it with tunnelwatch analyze "
            "iptables."
        ),
        key=f"error:{e.subject}",
        origin=Origin.TUNNELWATCH,
    )


def _too_large(e: ProbeError, size: int, where: Where) -> Finding:
    """A blob the size guard left out: the rules it holds are not decided, never guessed."""
    name = "ufw" if e.subject == "ufw" else e.subject.removeprefix("ruleset ")
    dump, analyze = _READ_BY_HAND.get(name, _ANY_BACKEND)
    is_ufw = name == "ufw"
    what = "ufw status" if is_ufw else f"{name} ruleset"
    managed = command(
        "az", "vmss", "run-command", "create", "-g", where.node_rg, "--vmss-name", where.vmss,
        "--instance-id", where.instance_id, "--name", "tunnelwatch-read", "--script", dump,
        "--output-blob-uri", placeholder("sas-url-of-output-blob"),
    )  # fmt: skip
    as_root = command("sudo", *dump.parts[0])
    then = f"; then run {analyze} on the file" if analyze else ""
    return Finding(
        check="node.ufw" if is_ufw else "node.ruleset",
        cause=Cause.UFW if is_ufw else Cause.IPTABLES,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title=f"the {what} did not fit the run-command output ({size} bytes compressed, even "
        "after dropping the rules that cannot match): not decided",
        evidence=(f"{e.subject}: {e.message}",),
        remediation=Remediation(
            f"Read it by hand: on the node (SSH or Azure Bastion) `{as_root} > rules.txt`, or "
            "a managed run command that writes the whole output to a blob (the 4,096-byte "
            f"limit applies only to the instance view){then}.",
            commands=(managed,),
            notes=(
                "Run-command output keeps only its last 4,096 bytes; tunnelwatch leaves a "
                "ruleset out rather than evaluate half of it.",
                "Replace <sas-url-of-output-blob> with the SAS URL of a blob the command may "
                "write (create, write permissions).",
            ),
        ),
        key=f"toolarge:{e.subject}",
        origin=Origin.TUNNELWATCH,
    )


def iptables_findings(
    report: ProbeReport,
    where: Where,
    sources: Sequence[IPAddr],
    dst: IPAddr | None,
    iface: str,
) -> list[Finding]:
    rulesets: list[iptables.IptablesRuleset] = []
    out: list[Finding] = []
    records = [r for r in report.rulesets if r.backend != NFTABLES]
    for record in records:
        if not any(x[:1] not in ("", "#") for x in record.text.splitlines()):
            continue  # no table: iptables-*-save prints nothing, or only a comment
        source = f"{where.subject.node} {record.backend} ruleset"
        backend = iptables.Backend.LEGACY if record.backend == "legacy" else iptables.Backend.NFT
        try:
            # The record says which binary dumped it: that decides the fix's command. The
            # script proved the dump whole (its save command's exit status, a complete gzip
            # stream): a table it lacks is a table the node does not have.
            rulesets += [
                replace(rs, backend=backend, whole=True)
                for rs in iptables.parse_rulesets(record.text, source)
            ]
        except InputError as exc:
            out.append(
                undecided(
                    where, "node.ruleset", Cause.IPTABLES,
                    f"the {record.backend} ruleset does not parse: {exc}",
                    f"unparsable:{record.backend}",
                )
            )  # fmt: skip
    if not rulesets:
        if (
            not records
            and not out
            and not any(
                e.subject.startswith("ruleset ") and e.subject != f"ruleset {NFTABLES}"
                for e in report.errors
            )
        ):
            out.append(
                undecided(
                    where, "node.ruleset", Cause.IPTABLES,
                    "the report holds no iptables ruleset (no iptables-*-save on the node?)",
                    "no-ruleset",
                )
            )  # fmt: skip
        return out
    flow = f"TCP {KUBELET_PORT} to {dst or 'the node (address unknown)'} on {iface}"
    per_source: list[tuple[IPAddr, Finding]] = []
    for src in sources:
        if dst is not None and dst.version != src.version:
            continue
        packet = iptables.Packet(src=src, dst=dst, dport=KUBELET_PORT, in_iface=iface)
        try:
            verdict = iptables.evaluate_input(rulesets, packet)
        except InputError as exc:
            # Rules compile on first use: a malformed one surfaces here, naming its ruleset.
            out.append(
                undecided(
                    where, "node.ruleset", Cause.IPTABLES, f"a rule does not parse: {exc}",
                    f"unparsable:{exc.source}",
                )
            )  # fmt: skip
            return out
        per_source += [(src, f) for f in iptables.findings_for(verdict, where.subject)]
    return out + merge(per_source, flow, where)


def ufw_findings(
    report: ProbeReport,
    where: Where,
    sources: Sequence[IPAddr],
    dst: IPAddr | None,
    iface: str,
    fix_net: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
) -> list[Finding]:
    if report.ufw_status is None:
        return []  # ufw absent (it blocks nothing), its blob corrupt or too large (an error)
    try:
        # The script proved the capture whole (ufw's exit status, a complete gzip stream):
        # a listing without rules is one, not a capture cut before its table.
        status = ufw.parse_status(report.ufw_status, f"{where.subject.node} ufw status", whole=True)
    except InputError as exc:
        return [undecided(where, "node.ufw", Cause.UFW, f"ufw status unreadable: {exc}", "ufw")]
    per_source: list[tuple[IPAddr, Finding]] = []
    for src in sources:
        if dst is not None and dst.version != src.version:
            continue
        verdict = ufw.evaluate(status, KUBELET_PORT, "tcp", src, dst, iface)
        per_source += [(src, f) for f in ufw.findings_for(verdict, where.subject, fix_net)]
    flow = f"TCP {KUBELET_PORT} to {dst or 'the node (address unknown)'} on {iface}"
    return merge(per_source, flow, where)
