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
from typing import Any

from shared.errors import InputError

__all__ = [
    "CommandResult",
    "ExitCode",
    "Handler",
    "add_json_flag",
    "ip_address",
    "ip_network",
    "port_number",
    "read_input",
]


class ExitCode(IntEnum):
    OK = 0  # the flow is allowed / no problem
    PROBLEM = 1  # blocked / problem found
    USAGE = 2  # bad input or usage
    INCONCLUSIVE = 3  # could not decide


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: ExitCode
    document: dict[str, Any]  # printed with --json
    text: str  # printed otherwise


Handler = Callable[[argparse.Namespace], CommandResult]


def read_input(path: str) -> tuple[str, str]:
    """Returns (name, text) of a file, or of stdin for '-'. Undecodable bytes become U+FFFD."""
    if path == "-":
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except IsADirectoryError:
            raise InputError(path, "is a directory, expected a file") from None
        except PermissionError:
            raise InputError(path, "permission denied") from None
        except OSError as exc:
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
        name = path
    return name, data.decode("utf-8", errors="replace")


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
