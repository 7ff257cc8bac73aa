"""`tunnelwatch analyze iptables`: would this node's iptables let the tunnel's packet in?

Reads one or more dumps (iptables-save, iptables -S or iptables --list output; several
files are rulesets in force at once, e.g. the legacy and the nft backend), walks a NEW
inbound packet through the INPUT path and prints the verdict, the deciding rule, the trace
and the narrowest fix. Exit 0 accept, 1 drop/reject, 3 unknown, 2 unreadable input.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from shared.analysis.findings import Finding, Subject
from shared.analysis.iptables import (
    Packet,
    PacketVerdict,
    evaluate_input,
    findings_for,
    parse_rulesets,
)
from shared.analysis.iptables.model import PROTOCOLS
from shared.cli.common import (
    CommandResult,
    ExitCode,
    add_flow_arguments,
    add_json_flag,
    check_flow_family,
    finding_lines,
    read_paste,
    with_paste,
)

__all__ = ["EXIT_CODES", "flow_packet", "headline", "register", "verdict_result"]

# The exit code of a verdict of the iptables engine (and of the nftables engine, its PacketVerdict).
EXIT_CODES = {
    PacketVerdict.ACCEPT: ExitCode.OK,
    PacketVerdict.DROP: ExitCode.PROBLEM,
    PacketVerdict.REJECT: ExitCode.PROBLEM,
    PacketVerdict.UNKNOWN: ExitCode.INCONCLUSIVE,
}


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
    add_flow_arguments(p, proto=_proto)
    add_json_flag(p)
    p.set_defaults(handler=handle)


def flow_packet(args: argparse.Namespace, proto: str) -> Packet:
    """The packet of add_flow_arguments' arguments (InputError if --src and --dst differ in
    address family)."""
    check_flow_family(args)
    return Packet(
        src=args.src,
        dst=args.dst,
        dport=args.dport,
        proto=proto,
        in_iface=args.in_iface,
        sport=args.sport,
    )


def handle(args: argparse.Namespace) -> CommandResult:
    packet = flow_packet(args, args.proto)
    rulesets = []
    names = []
    pastes = []
    for path in args.files:
        name, paste = read_paste(path, "iptables")
        names.append(name)
        pastes.append((name, paste))
        # The command line shown before the output is a hint (its -t, ip6tables); with
        # several commands in one paste it is not clear which printed what.
        hint = paste.command if len(paste.commands) == 1 else None
        rulesets.extend(parse_rulesets(paste.text, name, hint, ended=paste.ended_by_prompt))
    verdict = evaluate_input(rulesets, packet)
    findings = findings_for(verdict, Subject(resource=", ".join(names)))
    return with_paste(verdict_result(verdict, findings, _text), pastes)


def verdict_result(
    verdict: Any, findings: list[Finding], render: Callable[[dict[str, Any]], str]
) -> CommandResult:
    """The result of an engine's verdict (IptablesVerdict, NftVerdict): its JSON document with
    the findings added, the exit code of the verdict, and `render(document)` as the text."""
    doc: dict[str, Any] = verdict.to_json()
    doc["findings"] = [f.to_json() for f in findings]
    return CommandResult(EXIT_CODES[verdict.verdict], doc, render(doc))


def headline(engine: str, doc: dict[str, Any]) -> str:
    """The first line of the text: the verdict and the packet it is for. Blocked on every
    path but by DROP on some and REJECT on others: "BLOCKED (DROP or REJECT, depending on
    ...)", never one of the two as if it were sure."""
    pkt = doc["packet"]
    to = f" to {pkt['dst']}" if pkt["dst"] else ""
    word = f"BLOCKED ({doc['blocked_as']})" if doc.get("blocked_as") else doc["verdict"].upper()
    return (
        f"{engine} verdict: {word} for {pkt['proto'].upper()} "
        f"{pkt['dport']} from {pkt['src']}{to} ({doc['source']})"
    )


def _text(doc: dict[str, Any]) -> str:
    lines = [headline("iptables", doc)]
    by = doc["decided_by"]
    # An unknown verdict was not decided: its rule is where the walk stopped.
    label = "stopped at" if doc["verdict"] == "unknown" else "decided by"
    if by is not None:
        if "policy" in by:
            lines.append(f"{label}: policy {by['policy']} of {by['table']} {by['chain']}")
        else:
            lines.append(
                f"{label}: {by['table']} {by['chain']} rule {by['rule_number']}: {by['rule']}"
            )
    if doc["reason"]:
        lines.append(f"why: {doc['reason']}")
    lines += finding_lines(doc["findings"])
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
