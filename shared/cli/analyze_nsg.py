"""`tunnelwatch analyze nsg`: does the subnet + NIC NSG pair allow one flow, and the fix.

Exit codes: 0 allow, 1 deny (with the az command that fixes each denying NSG), 2 bad input,
3 unknown (some rule could not be decided and it changes the outcome).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from shared.analysis.findings import TUNNEL_POD_REMINDER, Subject
from shared.analysis.nsg import (
    Flow,
    Nsg,
    NsgFlowVerdict,
    NsgVerdict,
    ServiceTags,
    TagContext,
    evaluate_flow,
    findings_for,
    load_service_tags,
    parse_nsg_text,
    propose_fix,
)
from shared.analysis.nsg.fix import Fix
from shared.analysis.paste import Paste
from shared.cli.common import (
    CommandResult,
    ExitCode,
    add_json_flag,
    ip_address,
    ip_network,
    port_number,
    read_paste,
    with_paste,
)
from shared.errors import InputError

__all__ = ["register"]

_EXIT = {NsgFlowVerdict.ALLOW: ExitCode.OK, NsgFlowVerdict.DENY: ExitCode.PROBLEM}
_NONE = "none"  # --src-asg none: the side is a member of no ASG


def register(kinds: Any) -> None:
    p: argparse.ArgumentParser = kinds.add_parser(
        "nsg",
        help="evaluate a flow against the subnet and NIC NSGs (ARM or az JSON)",
        description=(
            "Evaluate one flow against the subnet NSG and the NIC NSG in Azure's order "
            "(inbound: subnet then NIC; outbound: NIC then subnet) and print the verdict, the "
            "deciding rules and, for a deny, the az command that adds the missing allow rule. "
            "Azure Virtual Network Manager security admin rules are not visible here."
        ),
    )
    p.add_argument("--direction", required=True, choices=("inbound", "outbound"))
    p.add_argument("--src", required=True, type=ip_address, help="source IP of the flow")
    p.add_argument("--dst", required=True, type=ip_address, help="destination IP of the flow")
    p.add_argument("--dport", required=True, type=port_number, help="destination port")
    p.add_argument("--proto", default="tcp", choices=("tcp", "udp", "icmp", "esp", "ah"))
    p.add_argument("--sport", type=port_number, help="source port (default: unknown/any)")
    p.add_argument("--subnet-nsg", metavar="FILE", help="NSG on the subnet (JSON, - for stdin)")
    p.add_argument("--nic-nsg", metavar="FILE", help="NSG on the NIC (JSON, - for stdin)")
    p.add_argument(
        "--vnet-prefix",
        metavar="CIDR",
        type=ip_network,
        action="append",
        help="a prefix of the VirtualNetwork tag (VNet space, peered VNets, on-premises); repeat",
    )
    p.add_argument(
        "--service-tags", metavar="FILE", help="Service Tags API/download JSON for other tags"
    )
    for side in ("src", "dst"):
        p.add_argument(
            f"--{side}-asg",
            metavar="ID",
            action="append",
            help=f"an ASG id the {side} NIC belongs to; repeat; '{_NONE}' = member of no ASG "
            "(default: membership unknown)",
        )
    p.add_argument(
        "--fix-source", metavar="CIDR", type=ip_network, help="source of the proposed allow rule"
    )
    p.add_argument(
        "--fix-destination",
        metavar="CIDR",
        type=ip_network,
        help="destination of the proposed allow rule (default: --dst as a host prefix)",
    )
    add_json_flag(p)
    p.set_defaults(handler=run)


def _json(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(source, f"not valid JSON: {exc}") from None


def _asgs(values: list[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(v for v in values if v.strip().lower() != _NONE)


def _load(
    args: argparse.Namespace, pastes: list[tuple[str, Paste]]
) -> tuple[Nsg | None, Nsg | None, ServiceTags | None]:
    """The NSGs and service tags of the arguments; each input's paste goes to `pastes`."""
    paths = [p for p in (args.subnet_nsg, args.nic_nsg, args.service_tags) if p is not None]
    if args.subnet_nsg is None and args.nic_nsg is None:
        raise InputError("analyze nsg", "give --subnet-nsg FILE and/or --nic-nsg FILE")
    if paths.count("-") > 1:
        raise InputError("analyze nsg", "only one input can be read from stdin ('-')")
    nsgs: list[Nsg | None] = []
    for path in (args.subnet_nsg, args.nic_nsg):
        if path is None:
            nsgs.append(None)
            continue
        name, paste = read_paste(path, "nsg")
        pastes.append((name, paste))
        nsgs.append(parse_nsg_text(paste.text, name))
    tags = None
    if args.service_tags is not None:
        name, paste = read_paste(args.service_tags, "nsg-service-tags")
        pastes.append((name, paste))
        tags = load_service_tags(_json(paste.text, name), name)
    return nsgs[0], nsgs[1], tags


def run(args: argparse.Namespace) -> CommandResult:
    pastes: list[tuple[str, Paste]] = []
    subnet, nic, tags = _load(args, pastes)
    flow = Flow(
        direction=args.direction,
        src=args.src,
        dst=args.dst,
        dport=args.dport,
        proto=args.proto,
        sport=args.sport,
        src_asgs=_asgs(args.src_asg),
        dst_asgs=_asgs(args.dst_asg),
    )
    vnet = None if args.vnet_prefix is None else tuple(args.vnet_prefix)
    verdict = evaluate_flow(flow, subnet, nic, TagContext(vnet_prefixes=vnet, service_tags=tags))
    fix = propose_fix(verdict, fix_source=args.fix_source, fix_destination=args.fix_destination)
    resource = " ".join(n.id or n.source for n in (subnet, nic) if n is not None)
    findings = findings_for(verdict, Subject(resource=resource), fix=fix)
    document = verdict.to_json()
    document["fix"] = None if fix is None else fix.to_json()
    document["findings"] = [f.to_json() for f in findings]
    result = CommandResult(
        exit_code=_EXIT.get(verdict.verdict, ExitCode.INCONCLUSIVE),
        document=document,
        text=render(verdict, fix),
    )
    return with_paste(result, pastes)


def render(verdict: NsgVerdict, fix: Fix | None) -> str:
    lines = [f"NSG verdict: {verdict.verdict.value.upper()}  ({verdict.flow.label()})"]
    for lr in verdict.layers:
        if lr.nsg is None:
            lines.append(f"  {lr.layer.value:<6}  no NSG (allows)")
        elif lr.decided_by is None:
            lines.append(f"  {lr.layer.value:<6}  {lr.nsg.label}: no rule matches for certain")
        else:
            d = lr.decided_by
            lines.append(
                f"  {lr.layer.value:<6}  {lr.nsg.label}: {d.rule} "
                f"(priority {d.priority}, {d.access.value}) -> {lr.outcome.value}"
            )
    undecided = verdict.undecided
    if undecided:
        lines.append("Undecided rules:")
        for u in undecided:
            where = "(end of rules)" if u.rule is None else u.rule.label()
            effect = "changes the outcome" if u.matters else "does not change the outcome"
            lines.append(f"  {where}: {'; '.join(u.reasons)} [{effect}]")
    if fix is not None:
        lines.append("Fix (tunnelwatch does not run these commands):")
        for r in fix.rules:
            at = "no free priority" if r.priority is None else f"priority {r.priority}"
            lines.append(
                f"  {r.layer.value} NSG {r.nsg}: allow rule {r.name} at {at}, before "
                f"{r.denying_rule.rule} ({r.denying_rule.priority})"
            )
            lines.extend(f"    {c}" for c in r.commands)
            lines.extend(f"    note: {n}" for n in r.notes)
        lines.append(TUNNEL_POD_REMINDER)
    lines.append(
        "Not checked: Azure Virtual Network Manager security admin rules (evaluated before NSGs)."
    )
    return "\n".join(lines)
