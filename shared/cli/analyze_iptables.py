"""`tunnelwatch analyze iptables`: would this node's iptables let the tunnel's packet in?

Reads one or more dumps (iptables-save, iptables -S or iptables --list output; several
files are rulesets in force at once, e.g. the legacy and the nft backend), walks a NEW
inbound packet through the INPUT path and prints the verdict, the deciding rule, the trace
and the narrowest fix. Exit 0 accept, 1 drop/reject, 3 unknown, 2 unreadable input.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis.findings import Subject
from shared.analysis.iptables import (
    Packet,
    Verdict,
    evaluate_input,
    findings_for,
    parse_rulesets,
)
from shared.analysis.iptables.model import PROTOCOLS
from shared.cli.common import (
    CommandResult,
    ExitCode,
    add_json_flag,
    ip_address,
    port_number,
    read_input,
)
from shared.errors import InputError

__all__ = ["register"]


def _proto(value: str) -> str:
    p = value.strip().lower()
    if (p in PROTOCOLS and p != "all") or (p.isdigit() and 0 < int(p) < 256):
        return p
    raise argparse.ArgumentTypeError(f"{value!r} is not a protocol (tcp, udp, icmp or a number)")


def register(kinds: Any) -> None:
    p: argparse.ArgumentParser = kinds.add_parser(
        "iptables",
        help="decide whether iptables lets a NEW inbound packet (the tunnel's) reach this node",
        description="Walks a NEW inbound packet through raw/mangle/nat/filter/security of the "
        "INPUT path. FILEs: iptables-save, iptables -S or iptables --list output ('-' for "
        "stdin); several FILEs are rulesets in force at once (legacy and nft backends).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="dump file, or - for stdin")
    p.add_argument("--src", type=ip_address, required=True, help="source address (API server side)")
    p.add_argument("--dst", type=ip_address, help="the node's address (unknown if omitted)")
    p.add_argument("--dport", type=port_number, default=10250, help="destination port (10250)")
    p.add_argument("--sport", type=port_number, help="source port (any if omitted)")
    p.add_argument("--proto", type=_proto, default="tcp", help="protocol (tcp)")
    p.add_argument("--in-iface", help="interface the packet arrives on (unknown if omitted)")
    add_json_flag(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> CommandResult:
    if args.dst is not None and args.dst.version != args.src.version:
        raise InputError(
            "--dst", f"{args.dst} is IPv{args.dst.version} but --src is IPv{args.src.version}"
        )
    packet = Packet(
        src=args.src,
        dst=args.dst,
        dport=args.dport,
        proto=args.proto,
        in_iface=args.in_iface,
        sport=args.sport,
    )
    rulesets = []
    names = []
    for path in args.files:
        name, text = read_input(path)
        names.append(name)
        rulesets.extend(parse_rulesets(text, name))
    verdict = evaluate_input(rulesets, packet)
    findings = findings_for(verdict, Subject(resource=", ".join(names)))
    doc = verdict.to_json()
    doc["findings"] = [f.to_json() for f in findings]
    code = {
        Verdict.ACCEPT: ExitCode.OK,
        Verdict.DROP: ExitCode.PROBLEM,
        Verdict.REJECT: ExitCode.PROBLEM,
        Verdict.UNKNOWN: ExitCode.INCONCLUSIVE,
    }[verdict.verdict]
    return CommandResult(code, doc, _text(doc))


def _text(doc: dict[str, Any]) -> str:
    pkt = doc["packet"]
    to = f" to {pkt['dst']}" if pkt["dst"] else ""
    lines = [
        f"iptables verdict: {doc['verdict'].upper()} for {pkt['proto'].upper()} "
        f"{pkt['dport']} from {pkt['src']}{to} ({doc['source']})"
    ]
    by = doc["decided_by"]
    if by is not None:
        if "policy" in by:
            lines.append(f"decided by: policy {by['policy']} of {by['table']} {by['chain']}")
        else:
            lines.append(
                f"decided by: {by['table']} {by['chain']} rule {by['rule_number']}: {by['rule']}"
            )
    if doc["reason"]:
        lines.append(f"why: {doc['reason']}")
    for f in doc["findings"]:
        if f["cause"] is not None and f["kind"] == "problem":
            lines.append(f"cause {f['cause']}: {f['cause_title']}")
        rem = f["remediation"]
        if rem:
            lines.extend(f"fix: {c}" for c in rem["commands"])
            lines.extend(f"note: {n}" for n in rem["notes"])
    if doc["trace"]:
        lines.append("trace:")
        for s in doc["trace"]:
            num = f" #{s['rule_number']}" if s["rule_number"] else ""
            lines.append(f"  {s['table']} {s['chain']}{num}: {s['action']}")
    for u in doc["undecided"]:
        lines.append(f"undecided: {u['table']} {u['chain']} #{u['rule_number']}: {u['reason']}")
    lines.extend(f"note: {n}" for n in doc["notes"])
    for na in doc.get("not_applicable", []):
        lines.append(f"not applicable (other address family): {na}")
    return "\n".join(lines)
