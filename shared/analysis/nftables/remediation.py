"""Turning an nftables verdict into Findings, with the narrowest fix as an exact command.

A block by a rule: delete that rule by its handle (`nft delete rule FAMILY TABLE CHAIN handle
N`). A block by a named verdict map's element: delete that element. A block by an inline
verdict map: insert an accept for the tunnel's source before that rule (deleting the rule
would drop its other elements too). A block by a chain's policy: insert an accept for the
tunnel's source at the top of that base chain.

Table, chain and map names come from the capture, which a hostile node could have shaped:
plain identifiers are shell-quoted words on nft's command line; any other name (nft's
command line cannot spell it) goes into a JSON command piped to `nft -j -f -`, itself one
shell-quoted word. Pasting a fix never runs anything but printf and nft.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.analysis.findings import (
    TUNNEL_POD_REMINDER,
    Cause,
    Finding,
    Kind,
    Remediation,
    Severity,
    Subject,
)
from shared.analysis.iptables.remediation import (
    flow_text,
    inconclusive_finding,
    last_steps,
    managed_note,
)
from shared.analysis.nftables.model import NftTraceStep, NftVerdict
from shared.analysis.shell import Command, command, pipeline
from shared.analysis.walk import Packet, PacketVerdict

__all__ = ["CHECK", "findings_for", "fix_commands", "trace_summary"]

CHECK = "node.nftables"

# nft's scanner: an unquoted identifier (src/scanner.l, "identifier").
_IDENT = re.compile(r"[A-Za-z_.][A-Za-z0-9/\-_.]*\Z")
_KEYWORDS = frozenset(
    {"ip", "ip6", "inet", "arp", "bridge", "netdev", "table", "chain", "rule", "set", "map"}
    | {"handle", "index", "position", "accept", "drop", "return", "jump", "goto", "counter"}
)
_FAMILIES = frozenset({"ip", "ip6", "inet", "arp", "bridge", "netdev"})
# Tables other software rewrites: deleting their rules by hand does not last.
_MANAGED = {
    "kube-proxy": "kube-proxy (nftables mode)",
    "firewalld": "firewalld (use firewall-cmd)",
    "cilium": "Cilium",
    "calico": "Calico",
}


def _plain(*names: str) -> bool:
    return all(_IDENT.match(n) and n not in _KEYWORDS for n in names)


def _json_cmd(nft_command: dict[str, Any]) -> Command:
    """The command as nft's JSON input on stdin: nft's command line reads table and chain
    names only as plain identifiers, while JSON (which made such names) spells any name."""
    text = json.dumps({"nftables": [nft_command]}, separators=(",", ":"))
    return pipeline(command("printf", "%s\\n", text), command("nft", "-j", "-f", "-"))


def _accept_rule(p: Packet) -> tuple[tuple[str | int, ...], list[dict[str, Any]]]:
    """`ip saddr SRC tcp dport N accept` as nft's words and as JSON expressions."""
    ip = "ip" if p.family == 4 else "ip6"
    proto = p.proto.lower() if p.proto.lower() in ("tcp", "udp") else "th"
    text: tuple[str | int, ...] = (ip, "saddr", str(p.src), proto, "dport", p.dport, "accept")
    if proto == "th":
        number = p.proto_number()
        l4 = str(p.proto) if number is None else number
        text = (ip, "saddr", str(p.src), "meta", "l4proto", l4, "th", "dport", p.dport, "accept")
    expr: list[dict[str, Any]] = [
        _match({"payload": {"protocol": ip, "field": "saddr"}}, str(p.src)),
        _match({"payload": {"protocol": proto, "field": "dport"}}, p.dport),
        {"accept": None},
    ]
    if proto == "th":
        expr.insert(1, _match({"meta": {"key": "l4proto"}}, p.proto_number()))
    return text, expr


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def fix_commands(v: NftVerdict) -> tuple[str, ...]:
    """The exact commands that would let the packet through (empty unless it is blocked).

    Names from the capture are plain nft identifiers on the command line, shell-quoted; any
    other name (a hostile node could have made `x$(reboot)` through nft's JSON input) goes
    into a JSON command piped to `nft -j -f -`, itself one shell-quoted word.
    """
    by = v.decided_by
    p = v.packet
    if not v.verdict.blocks or by is None or p is None:
        return ()
    fam, table, chain = by.family, by.table, by.chain
    plain = fam in _FAMILIES and _plain(table, chain)
    ident = {"family": fam, "table": table, "chain": chain}
    text, expr = _accept_rule(p)
    if by.policy is not None:
        if plain:
            return (command("nft", "insert", "rule", fam, table, chain, *text),)
        return (_json_cmd({"insert": {"rule": {**ident, "expr": expr}}}),)
    if by.handle is None:
        return ()
    if by.element is not None and by.map_name:
        if fam not in _FAMILIES or not _plain(table, by.map_name):
            return ()  # the element is only known as nft text; nft cannot name this map
        elem = "{ " + by.element + " }"
        return (command("nft", "delete", "element", fam, table, by.map_name, elem),)
    if by.element is not None:
        # An inline verdict map: deleting the rule would drop its other elements too.
        if plain:
            return (
                command("nft", "insert", "rule", fam, table, chain, "handle", by.handle, *text),
            )
        return (_json_cmd({"insert": {"rule": {**ident, "handle": by.handle, "expr": expr}}}),)
    if plain:
        return (command("nft", "delete", "rule", fam, table, chain, "handle", by.handle),)
    return (_json_cmd({"delete": {"rule": {**ident, "handle": by.handle}}}),)


def trace_summary(trace: tuple[NftTraceStep, ...], limit: int = 12) -> list[str]:
    def line(s: NftTraceStep) -> str:
        handle = f" handle {s.handle}" if s.handle is not None else ""
        where = f"{s.family} {s.table} {s.chain}{handle}"
        return f"[{s.packet}] {where}: {s.action}" + (f"  [{s.rule}]" if s.rule else "")

    return last_steps(trace, line, limit)


def findings_for(v: NftVerdict, subject: Subject) -> list[Finding]:
    """No finding for accept; a critical problem for a block; an inconclusive one otherwise."""
    what = flow_text(v.packet)
    if v.verdict is PacketVerdict.ACCEPT:
        return []
    skipped = [f"skipped table {s}" for s in v.skipped]
    by = v.decided_by
    if v.verdict is PacketVerdict.UNKNOWN:
        evidence = [f"source: {v.source}", f"why: {v.reason}"]
        if by is not None:
            evidence.append(f"at: {by.where()}" + (f": {by.rule}" if by.rule else ""))
        evidence += [
            f"undecided: {u.family} {u.table} {u.chain} handle {u.handle} [{u.rule}]: {u.reason}"
            for u in v.undecided[:10]
        ]
        evidence += [*v.notes, *skipped]
        return [inconclusive_finding(CHECK, "nftables", v.packet, subject, evidence)]
    if by is None:
        raise ValueError("a drop/reject verdict without decided_by")
    evidence = [f"source: {v.source}", f"decided by {by.where()}"]
    if by.rule is not None:
        evidence.append(f"rule: {by.rule}  [handle {by.handle}]")
    if by.element is not None:
        evidence.append(
            f"verdict map element: {by.element}"
            + (f" of map {by.map_name}" if by.map_name else " (inline map)")
        )
    evidence += [f"trace: {line}" for line in trace_summary(v.trace)]
    evidence += [f"also blocks on another path: {o.where()}" for o in v.other_blocks]
    evidence += [*v.notes, *skipped]
    notes = []
    manager = _MANAGED.get(by.table)
    if manager:
        notes.append(managed_note(f"table {by.family} {by.table}", manager))
    if by.policy is None:
        listing = command("nft", "-a", "list", "chain", by.family, by.table, by.chain)
        notes.append(f"check the handle first with `{listing}`")
    notes.append(TUNNEL_POD_REMINDER)
    verb = "drops" if v.verdict is PacketVerdict.DROP else "rejects"
    if by.policy is not None:
        summary = f"allow {what} before the {by.policy} policy of {by.family} {by.table} {by.chain}"
    elif by.element is not None:
        summary = f"remove the verdict map element {by.element} that {verb} {what}"
    else:
        summary = f"remove the {v.verdict.value} rule (handle {by.handle}) of {by.chain}"
    key = f"{by.family}:{by.table}:{by.chain}:" + (
        f"policy:{by.policy}" if by.policy else (by.element or by.rule or "")
    )
    return [
        Finding(
            check=CHECK,
            cause=Cause.IPTABLES,
            kind=Kind.PROBLEM,
            severity=Severity.CRITICAL,
            subject=subject,
            title=f"nftables {verb} {what} ({by.where()})",
            evidence=tuple(evidence),
            remediation=Remediation(summary, fix_commands(v), tuple(notes)),
            key=key,
        )
    ]
