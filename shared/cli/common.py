"""What every subcommand shares: exit codes, the result type, reading inputs, typed arguments.

A subcommand module exposes `register(subparsers)`; its handler takes the parsed arguments
and returns a CommandResult. main() prints it (human text, or JSON with --json) and exits
with its code. Handlers raise InputError for input they cannot read; main turns that into
exit code 2 with the message on stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, BinaryIO

from shared.analysis.paste import Paste, clean
from shared.analysis.recognise import foreign
from shared.errors import InputError

__all__ = [
    "MAX_INPUT_BYTES",
    "CommandResult",
    "ExitCode",
    "Handler",
    "add_flow_arguments",
    "add_json_flag",
    "check_flow_family",
    "finding_lines",
    "ip_address",
    "ip_network",
    "port_number",
    "read_input",
    "read_paste",
    "with_paste",
]


class ExitCode(IntEnum):
    OK = 0  # the flow is allowed / no problem
    PROBLEM = 1  # blocked / problem found
    USAGE = 2  # bad input or usage
    INCONCLUSIVE = 3  # could not decide
    STORAGE = 4  # `scan --record`: the scan ran, but Table/Queue storage failed (see stderr)
    INTERNAL = 5  # a fault of tunnelwatch or of a library (the traceback is on stderr)


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: ExitCode
    document: dict[str, Any]  # printed with --json
    text: str  # printed otherwise
    message: str = ""  # an error to print on stderr, whatever stdout gets


Handler = Callable[[argparse.Namespace], CommandResult]


# The largest input one command reads: 4 times the iptables-save of a 50,000-rule kube-proxy
# cluster (7.5 MB). Parsing holds the whole capture and its model in memory (up to ~20 bytes
# per byte of input), so a larger file is refused by name rather than read (docs/cli.md).
MAX_INPUT_BYTES = 32 * 1024 * 1024


def _read_at_most(f: BinaryIO, limit: int) -> bytes:
    """Up to limit + 1 bytes, read by the MiB (one read(limit + 1) allocates the whole limit)."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit and (chunk := f.read(1024 * 1024)):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_input(path: str) -> tuple[str, str]:
    """Returns (name, text) of a file, or of stdin for '-'. Undecodable bytes become U+FFFD.
    An input larger than MAX_INPUT_BYTES is an InputError naming it and the limit."""
    if path == "-":
        data = _read_at_most(sys.stdin.buffer, MAX_INPUT_BYTES)
        name = "<stdin>"
    else:
        p = Path(path)
        try:
            with p.open("rb") as f:
                data = _read_at_most(f, MAX_INPUT_BYTES)
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except IsADirectoryError:
            raise InputError(path, "is a directory, expected a file") from None
        except PermissionError:
            raise InputError(path, "permission denied") from None
        except OSError as exc:
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
        name = path
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(
            name,
            f"larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB, the limit for one input: "
            "pass the part that matters (one table, one node's capture)",
        )
    return name, data.decode("utf-8", errors="replace")


def read_paste(path: str, analyzer: str) -> tuple[str, Paste]:
    """read_input, then the paste pre-pass (shared/analysis/paste.py: prompts, console
    prefixes, markdown taken off, line numbers kept), then the foreign-input check: input
    that is clearly another analyzer's ("this looks like `ufw status` output, not ...; use
    `tunnelwatch analyze ufw`") is an InputError naming it (exit 2). `analyzer` is the
    subcommand's name (shared/analysis/recognise.py EXPECTS)."""
    name, text = read_input(path)
    paste = clean(text)
    refusal = foreign(paste.text, analyzer)
    if refusal is not None:
        raise InputError(name, refusal)
    return name, paste


def with_paste(result: CommandResult, pastes: list[tuple[str, Paste]]) -> CommandResult:
    """The result with what the pre-pass skipped shown: a `note: NAME: skipped line 1: ...`
    line per group in the text, and a "paste" list in the JSON document (only when a paste
    had something taken off or a command line)."""
    shown = [(name, p) for name, p in pastes if p.skipped or p.commands]
    if not shown:
        return result
    document = dict(result.document)
    document["paste"] = [{"source": name, **p.to_json()} for name, p in shown]
    notes = [f"note: {name}: {n}" for name, p in shown for n in p.notes()]
    text = "\n".join([result.text.rstrip("\n"), *notes]) if notes else result.text
    return CommandResult(result.exit_code, document, text, result.message)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON document")


def ip_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None


def ip_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a CIDR prefix") from None


def port_number(value: str) -> int:
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def add_flow_arguments(
    parser: argparse.ArgumentParser, proto: Callable[[str], str] | None = None
) -> None:
    """The inbound flow a firewall analyzer decides: --src (required), --dst, --dport,
    --sport, --proto (only when `proto`, its argument type, is given) and --in-iface."""
    add = parser.add_argument
    add("--src", type=ip_address, required=True, help="source address (API server side)")
    add("--dst", type=ip_address, help="the node's address (unknown if omitted)")
    add("--dport", type=port_number, default=10250, help="destination port (10250)")
    add("--sport", type=port_number, help="source port (any if omitted)")
    if proto is not None:
        add("--proto", type=proto, default="tcp", help="protocol (tcp)")
    add("--in-iface", help="interface the packet arrives on (unknown if omitted)")


def check_flow_family(args: argparse.Namespace) -> None:
    """--src and --dst (when given) must be of one address family."""
    if args.dst is not None and args.dst.version != args.src.version:
        raise InputError(
            "--dst", f"{args.dst} is IPv{args.dst.version} but --src is IPv{args.src.version}"
        )


def finding_lines(findings: list[dict[str, Any]]) -> list[str]:
    """The human lines of findings (Finding.to_json() documents): each problem's cause, then
    the fix commands and notes of every finding."""
    lines = []
    for f in findings:
        if f["cause"] is not None and f["kind"] == "problem":
            lines.append(f"cause {f['cause']}: {f['cause_title']}")
        rem = f["remediation"]
        if rem:
            lines.extend(f"fix: {c}" for c in rem["commands"])
            lines.extend(f"note: {n}" for n in rem["notes"])
    return lines
