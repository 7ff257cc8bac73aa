"""`tunnelwatch analyze snat FILE`: SNAT exhaustion from load balancer / NAT gateway metrics."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.analysis import snat
from shared.analysis.findings import Kind
from shared.analysis.shell import placeholder
from shared.analysis.snat import remedies
from shared.cli.common import CommandResult, ExitCode, add_json_flag, read_paste, with_paste
from shared.errors import InputError

__all__ = ["handle", "register"]

_EPILOG = """\
FILE is a metrics response (metrics.list REST/SDK body, 'az monitor metrics list' output, a JSON
list of those, or the batch API body) with one-minute points (interval PT1M):
  load balancer: SnatConnectionCount split by ConnectionState, UsedSnatPorts and
                 AllocatedSnatPorts split by BackendIPAddress (aggregation Average)
  NAT gateway:   SNATConnectionCount split by ConnectionState, PacketDropCount
With --frontend-ips, --ports-per-node, --max-nodes and --surge the fixes carry exact numbers
and the capacity of max + surge nodes is checked too.
exit codes: 0 ok, 1 exhausted / at risk / capacity short, 2 unreadable input, 3 unknown"""


def _percent(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < f <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percentage in (0, 100]")
    return f


def _count(minimum: int) -> Any:
    def parse(value: str) -> int:
        try:
            n = int(value, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{n} is less than {minimum}")
        return n

    return parse


def _time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 time") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone (add Z or +00:00)")
    return t


def register(kinds: Any) -> None:
    p: argparse.ArgumentParser = kinds.add_parser(
        "snat",
        help="judge SNAT port exhaustion from load balancer / NAT gateway metrics",
        description="Judge SNAT port exhaustion (cause 5) from Azure Monitor metrics of the "
        "outbound load balancer or a NAT gateway.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="metrics response JSON, or - for stdin")
    p.add_argument(
        "--threshold",
        type=_percent,
        default=80.0,
        help="used/allocated percent that counts as high (default 80)",
    )
    p.add_argument(
        "--window",
        type=_count(1),
        default=5,
        metavar="M",
        help="judge the last M one-minute points (default 5)",
    )
    p.add_argument(
        "--min-bad",
        type=_count(1),
        default=3,
        metavar="N",
        help="exhausted when N of the M points are high (default 3)",
    )
    p.add_argument(
        "--kind",
        choices=[k.value for k in snat.ResourceKind],
        help="the resource kind, when the metrics do not tell",
    )
    p.add_argument("--now", type=_time, help="ISO time; data older than 15 minutes is stale")
    p.add_argument(
        "--resource-group",
        type=_name("--resource-group"),
        help="the cluster's resource group, for the fix commands",
    )
    p.add_argument(
        "--cluster", type=_name("--cluster"), help="the cluster's name, for the fix commands"
    )
    p.add_argument("--frontend-ips", type=_count(1), help="outbound IPs of the load balancer")
    p.add_argument(
        "--ports-per-node", type=_count(0), help="allocated outbound ports per node (0 = automatic)"
    )
    p.add_argument("--max-nodes", type=_count(1), help="the most nodes the cluster scales to")
    p.add_argument("--surge", type=_count(0), help="extra nodes during upgrades (max surge)")
    add_json_flag(p)
    p.set_defaults(handler=handle)


def _name(option: str) -> Callable[[str], str]:
    """A name for the fix commands: any text but control characters (a newline in a
    pasted command would be a second line to the user's eye)."""

    def parse(value: str) -> str:
        if not value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise argparse.ArgumentTypeError(
                f"{option} {value!r}: give a name without control characters"
            )
        return value

    return parse


def _capacity(args: argparse.Namespace) -> snat.Capacity | None:
    values = (args.frontend_ips, args.ports_per_node, args.max_nodes, args.surge)
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise InputError(
            "arguments", "--frontend-ips, --ports-per-node, --max-nodes and --surge go together"
        )
    return snat.snat_capacity(*values)


def handle(args: argparse.Namespace) -> CommandResult:
    if args.min_bad > args.window:
        raise InputError("arguments", f"--min-bad {args.min_bad} exceeds --window {args.window}")
    capacity = _capacity(args)
    source, paste = read_paste(args.file, "snat")
    text = paste.text
    doc = snat.parse_metrics(text, source)
    kind = snat.ResourceKind(args.kind) if args.kind else None
    report = snat.evaluate(
        doc,
        source,
        kind=kind,
        threshold=args.threshold,
        window=args.window,
        min_bad=args.min_bad,
        now=args.now,
    )
    # Unknown names stay placeholders (<resource-group>) the user fills in; given ones are
    # quoted word by word in the commands, whatever they hold.
    rg = args.resource_group or placeholder("resource-group")
    cluster = args.cluster or placeholder("cluster")
    found = list(remedies.findings(report, capacity=capacity, resource_group=rg, cluster=cluster))
    if capacity is not None:
        found += remedies.capacity_findings(capacity, resource_group=rg, cluster=cluster)
    if report.verdict in (snat.SnatState.EXHAUSTED, snat.SnatState.AT_RISK) or any(
        f.kind is Kind.PROBLEM for f in found
    ):
        code = ExitCode.PROBLEM
    elif report.verdict is snat.SnatState.UNKNOWN:
        code = ExitCode.INCONCLUSIVE
    else:
        code = ExitCode.OK
    document = {
        "source": source,
        "verdict": report.verdict.value,
        "kind": report.kind.value,
        "resource_id": report.resource_id,
        "failed_connections": report.failed_connections,
        "failed_before_window": report.failed_before_window,
        "packet_drops": report.packet_drops,
        "backends": [b.to_json() for b in report.backends],
        "window": report.window.to_json(),
        "reasons": list(report.reasons),
        "capacity": None if capacity is None else capacity.to_json(),
        "findings": [f.to_json() for f in found],
    }
    result = CommandResult(code, document, _text(source, report, capacity, found))
    return with_paste(result, [(source, paste)])


def _text(
    source: str, report: snat.SnatReport, capacity: snat.Capacity | None, found: list[Any]
) -> str:
    w = report.window
    lines = [f"{source}: {report.kind.value} SNAT verdict: {report.verdict.value}"]
    ports, events = w.minutes_in(), w.event_minutes()
    if ports:
        lines.append(
            f"ports window {ports[0].isoformat()} .. {ports[-1].isoformat()}: exhausted when "
            f"{w.min_bad} of {w.minutes} points >= {w.threshold:g}%"
        )
    if events:
        lines.append(f"events window {events[0].isoformat()} .. {events[-1].isoformat()}")
    if report.failed_connections is not None:
        lines.append(f"failed SNAT connections in the window: {report.failed_connections:g}")
    if report.packet_drops is not None:
        lines.append(f"packets dropped in the window: {report.packet_drops:g}")
    for b in report.backends:
        used, allocated, ratio = b.latest()
        lines.append(
            f"  {b.backend_ip:<16} {b.verdict.value:<9} used {used} / allocated "
            f"{allocated} = {ratio}%  ({b.points_over} of {len(b.points)} high)"
        )
    lines.extend(f"note: {r}" for r in report.reasons)
    if capacity is not None:
        lines.append(
            f"capacity: {capacity.ports_needed} ports needed for {capacity.nodes} "
            f"nodes, {capacity.ports_available} available"
        )
    for f in found:
        if f.remediation is not None:
            lines.append(f"fix: {f.remediation.summary}")
            lines.extend(f"  {c}" for c in f.remediation.commands)
            lines.extend(f"  note: {n}" for n in f.remediation.notes)
    return "\n".join(lines)
