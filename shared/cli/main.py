"""Entry point of the `tunnelwatch` command: parses arguments and dispatches subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from types import ModuleType

from shared import __version__
from shared.cli import (
    analyze_iptables,
    analyze_nc,
    analyze_nsg,
    analyze_runcommand,
    analyze_snat,
    analyze_ufw,
)
from shared.cli.common import CommandResult, ExitCode
from shared.errors import TunnelwatchError

__all__ = ["build_parser", "main"]

ANALYZERS: tuple[ModuleType, ...] = (
    analyze_iptables,
    analyze_ufw,
    analyze_nc,
    analyze_nsg,
    analyze_runcommand,
    analyze_snat,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunnelwatch",
        description="Find what blocks the AKS tunnel (node port 10250, egress to the API server).",
        epilog="exit codes: 0 allowed / no problem, 1 blocked / problem, 2 bad input or usage, "
        "3 inconclusive",
    )
    parser.add_argument("--version", action="version", version=f"tunnelwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    analyze = commands.add_parser(
        "analyze", help="analyze one captured input (iptables, ufw, nc, nsg, runcommand, snat)"
    )
    kinds = analyze.add_subparsers(dest="kind", metavar="KIND", required=True)
    for module in ANALYZERS:
        module.register(kinds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: CommandResult = args.handler(args)
    except TunnelwatchError as exc:
        print(f"tunnelwatch: error: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    if getattr(args, "json", False):
        json.dump(result.document, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.text if result.text.endswith("\n") else result.text + "\n")
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main())
