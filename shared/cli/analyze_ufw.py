"""`tunnelwatch analyze ufw FILE`: does the captured ufw configuration let TCP 10250 in?"""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis import ufw
from shared.analysis.findings import Subject
from shared.cli.common import (
    CommandResult,
    ExitCode,
    add_json_flag,
    ip_address,
    ip_network,
    port_number,
    read_input,
)

__all__ = ["handle", "register"]

_EPILOG = """\
input: the output of `ufw status`, `ufw status verbose` or `ufw status numbered` (as root,
LANG=C). `Status: inactive` and `ufw: command not found` mean UFW cannot block (exit 0);
`ERROR: You need to be root ...` and other ufw errors are inconclusive (exit 3).
Plain `ufw status` does not show the default incoming policy: pass --default-incoming, or
a flow no rule decides is inconclusive.
exit codes: 0 allowed (or LIMIT: allowed, rate-limited), 1 denied or rejected, 2 unreadable
input, 3 inconclusive"""

_EXIT = {
    ufw.Verdict.ALLOW: ExitCode.OK,
    ufw.Verdict.LIMIT: ExitCode.OK,
    ufw.Verdict.DENY: ExitCode.PROBLEM,
    ufw.Verdict.REJECT: ExitCode.PROBLEM,
    ufw.Verdict.UNKNOWN: ExitCode.INCONCLUSIVE,
}


def register(kinds: Any) -> None:
    p: argparse.ArgumentParser = kinds.add_parser(
        "ufw",
        help="decide whether a ufw status capture lets TCP 10250 in",
        description="Decide whether the ufw rules of a `ufw status [verbose|numbered]` "
        "capture let one new inbound connection (TCP 10250 by default) through, and say "
        "which rule decides and the narrowest fix.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="captured output, or - for stdin")
    p.add_argument("--port", type=port_number, default=10250, help="destination port (10250)")
    p.add_argument("--proto", choices=("tcp", "udp"), default="tcp", help="protocol (tcp)")
    p.add_argument("--src", type=ip_address, help="the connecting address (a tunnel agent)")
    p.add_argument("--dst", type=ip_address, help="the node address connected to")
    p.add_argument("--in-iface", metavar="NAME", help="the interface the connection arrives on")
    p.add_argument(
        "--default-incoming",
        choices=[p.value for p in ufw.Policy],
        help="the default incoming policy, when the capture (plain `ufw status`) omits it",
    )
    p.add_argument(
        "--fix-source",
        type=ip_network,
        metavar="CIDR",
        help="the prefix the fix should allow (the node subnet); default --src",
    )
    add_json_flag(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> CommandResult:
    source, text = read_input(args.file)
    status = ufw.parse_status(text, source)
    policy = None if args.default_incoming is None else ufw.Policy(args.default_incoming)
    verdict = ufw.evaluate(
        status,
        port=args.port,
        proto=args.proto,
        src=args.src,
        dst=args.dst,
        in_iface=args.in_iface,
        default_incoming=policy,
    )
    found = ufw.findings_for(verdict, Subject(resource=source), fix_source=args.fix_source)
    document = verdict.to_json()
    document["findings"] = [f.to_json() for f in found]

    state = status.state.value
    if status.active and verdict.default_incoming is not None:
        state += f", default incoming {verdict.default_incoming.value}"
    fmt = "" if status.format is None else f", {status.format.value} listing"
    lines = [
        f"{source}: ufw {state}{fmt}, {len(status.rules)} rule(s)",
        f"{verdict.flow_text()}: {verdict.verdict.value.upper()}",
        f"why: {verdict.reason}",
    ]
    lines += [f"note: {n}" for n in verdict.notes]
    for f in found:
        if f.remediation is not None:
            lines.append(f"fix: {f.remediation.summary}")
            lines += [f"  {c}" for c in f.remediation.commands]
            lines += [f"  note: {n}" for n in f.remediation.notes]
    return CommandResult(_EXIT[verdict.verdict], document, "\n".join(lines))
