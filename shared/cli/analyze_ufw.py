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
    read_paste,
    with_paste,
)

__all__ = ["handle", "register"]

_EPILOG = """\
input: the output of `ufw status`, `ufw status verbose` or `ufw status numbered` (as root,
LANG=C). `Status: inactive` and `ufw: command not found` mean UFW cannot block (exit 0);
`ERROR: You need to be root ...` and other ufw errors are inconclusive (exit 3).
Plain `ufw status` does not show the default incoming policy: pass --default-incoming, or
a flow no rule decides is inconclusive.
Rules on the client's source port (`Anywhere ALLOW IN 139,445/tcp (Samba)`, `from any port
N`) are decided by assuming a source port in Linux's ephemeral range 32768-60999 (the tunnel
agent's connections come from it; --src-port-range changes it); the output says so.
LIMIT is a problem for the tunnel (exit 1): it refuses the 6th new connection within 30 s
from one address, and every kubectl logs/exec is a new connection from the tunnel agent.
exit codes: 0 allowed, 1 denied, rejected or rate-limited (LIMIT), 2 unreadable input,
3 inconclusive"""

_EXIT = {
    ufw.UfwFlowVerdict.ALLOW: ExitCode.OK,
    ufw.UfwFlowVerdict.LIMIT: ExitCode.PROBLEM,  # the tunnel's bursts hit it: see the epilog
    ufw.UfwFlowVerdict.DENY: ExitCode.PROBLEM,
    ufw.UfwFlowVerdict.REJECT: ExitCode.PROBLEM,
    ufw.UfwFlowVerdict.UNKNOWN: ExitCode.INCONCLUSIVE,
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
    p.add_argument(
        "--src-port-range",
        type=_port_range,
        default=ufw.EPHEMERAL_PORTS,
        metavar="LO-HI",
        help="the client's source ports, for rules on source ports (32768-60999: Linux's "
        "default net.ipv4.ip_local_port_range)",
    )
    add_json_flag(p)
    p.set_defaults(handler=handle)


def _port_range(text: str) -> tuple[int, int]:
    lo, dash, hi = text.partition("-")
    if not dash:
        lo = hi = text
    if not (lo.isdigit() and hi.isdigit() and len(lo) <= 5 and len(hi) <= 5):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port range LO-HI (e.g. 1024-65535)")
    if not 1 <= int(lo) <= int(hi) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: need 1 <= LO <= HI <= 65535")
    return int(lo), int(hi)


def handle(args: argparse.Namespace) -> CommandResult:
    source, paste = read_paste(args.file, "ufw")
    text = paste.text
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
        src_ports=args.src_port_range,
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
    result = CommandResult(_EXIT[verdict.verdict], document, "\n".join(lines))
    return with_paste(result, [(source, paste)])
