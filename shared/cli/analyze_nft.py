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
from shared.analysis.nftables import (
    NftVerdict,
    PacketVerdict,
    evaluate_input,
    findings_for,
    parse_ruleset,
)
from shared.analysis.nftables.cut import CaptureIncomplete
from shared.cli.analyze_iptables import flow_packet, headline, verdict_result
from shared.cli.common import (
    CommandResult,
    add_flow_arguments,
    add_json_flag,
    finding_lines,
    read_paste,
    with_paste,
)

__all__ = ["handle", "register"]


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
    add_flow_arguments(p)
    add_json_flag(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> CommandResult:
    packet = flow_packet(args, "tcp")
    name, paste = read_paste(args.file, "nft")
    text = paste.text
    try:
        verdict = evaluate_input(parse_ruleset(text, name), packet)
    except CaptureIncomplete as exc:  # cut JSON: what it lacks may decide (exit 3, not 2)
        verdict = NftVerdict(PacketVerdict.UNKNOWN, name, reason=exc.message, packet=packet)
    result = verdict_result(verdict, findings_for(verdict, Subject(resource=name)), _text)
    return with_paste(result, [(name, paste)])


def _text(doc: dict[str, Any]) -> str:
    lines = [headline("nftables", doc)]
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
    lines += finding_lines(doc["findings"])
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
