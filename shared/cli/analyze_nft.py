"""`tunnelwatch analyze nft FILE`: would this node's native nftables tables let the tunnel in?

Reads `nft -j list ruleset` output (or the probe's join of `nft -j list table ...` outputs
in the same shape), walks a TCP connection (SYN, then the handshake's ACK) to the node
through the base chains on ingress, prerouting and input, and prints the verdict, the
deciding rule with its handle, the trace and the narrowest fix. iptables-nft's own tables
are skipped (named in the output): `tunnelwatch analyze iptables` reads them.
Exit 0 accept, 1 drop/reject, 3 unknown, 2 unreadable input.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis.findings import Subject
from shared.analysis.nftables import Packet, Verdict, evaluate_input, findings_for, parse_ruleset
from shared.cli.common import (
    CommandResult,
    ExitCode,
    add_json_flag,
    ip_address,
    port_number,
    read_input,
)
from shared.errors import InputError

__all__ = ["handle", "register"]

_EXIT = {
    Verdict.ACCEPT: ExitCode.OK,
    Verdict.DROP: ExitCode.PROBLEM,
    Verdict.REJECT: ExitCode.PROBLEM,
    Verdict.UNKNOWN: ExitCode.INCONCLUSIVE,
}


def register(kinds: Any) -> None:
    p: argparse.ArgumentParser = kinds.add_parser(
        "nft",
        help="decide whether native nftables tables let TCP 10250 reach this node",
        description="Walks the tunnel's TCP connection through the native nftables base "
        "chains (hooks ingress, prerouting, input) of `nft -j list ruleset` output. "
        "iptables-nft's own tables are skipped: analyze them with `analyze iptables`.",
        epilog="exit codes: 0 allowed, 1 dropped or rejected, 2 unreadable input, 3 inconclusive",
    )
    p.add_argument("file", metavar="FILE", help="`nft -j list ruleset` output, or - for stdin")
    p.add_argument("--src", type=ip_address, required=True, help="source address (API server side)")
    p.add_argument("--dst", type=ip_address, help="the node's address (unknown if omitted)")
    p.add_argument("--dport", type=port_number, default=10250, help="destination port (10250)")
    p.add_argument("--sport", type=port_number, help="source port (any if omitted)")
    p.add_argument("--in-iface", help="interface the packet arrives on (unknown if omitted)")
    add_json_flag(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> CommandResult:
    if args.dst is not None and args.dst.version != args.src.version:
        raise InputError(
            "--dst", f"{args.dst} is IPv{args.dst.version} but --src is IPv{args.src.version}"
        )
    name, text = read_input(args.file)
    ruleset = parse_ruleset(text, name)
    packet = Packet(
        src=args.src,
        dst=args.dst,
        dport=args.dport,
        proto="tcp",
        in_iface=args.in_iface,
        sport=args.sport,
    )
    verdict = evaluate_input(ruleset, packet)
    findings = findings_for(verdict, Subject(resource=name))
    doc = verdict.to_json()
    doc["findings"] = [f.to_json() for f in findings]
    return CommandResult(_EXIT[verdict.verdict], doc, _text(doc))


def _text(doc: dict[str, Any]) -> str:
    pkt = doc["packet"]
    to = f" to {pkt['dst']}" if pkt["dst"] else ""
    lines = [
        f"nftables verdict: {doc['verdict'].upper()} for TCP {pkt['dport']} from "
        f"{pkt['src']}{to} ({doc['source']})"
    ]
    by = doc["decided_by"]
    if by is not None:
        where = f"{by['family']} {by['table']} {by['chain']}"
        if "policy" in by:
            lines.append(f"decided by: policy {by['policy']} of {where}")
        else:
            lines.append(f"decided by: {where} handle {by['handle']}: {by['rule']}")
            if "element" in by:
                lines.append(f"  via verdict map element {by['element']} ({by['map'] or 'inline'})")
    if doc["reason"]:
        lines.append(f"why: {doc['reason']}")
    for f in doc["findings"]:
        if f["kind"] == "problem":
            lines.append(f"cause {f['cause']}: {f['cause_title']}")
        rem = f["remediation"]
        if rem:
            lines.extend(f"fix: {c}" for c in rem["commands"])
            lines.extend(f"note: {n}" for n in rem["notes"])
    if doc["trace"]:
        lines.append("trace:")
        for s in doc["trace"]:
            num = f" handle {s['handle']}" if s["handle"] is not None else ""
            lines.append(
                f"  [{s['packet']}] {s['family']} {s['table']} {s['chain']}{num}: {s['action']}"
            )
    for u in doc["undecided"]:
        lines.append(f"undecided: {u['table']} {u['chain']} handle {u['handle']}: {u['reason']}")
    lines.extend(f"note: {n}" for n in doc["notes"])
    lines.extend(f"skipped: {s}" for s in doc["skipped_tables"])
    if not doc["base_chains"]:
        lines.append("no native base chain on the input path")
    return "\n".join(lines)
