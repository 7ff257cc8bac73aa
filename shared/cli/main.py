"""Entry point of the `tunnelwatch` command: parses arguments and dispatches subcommands.

`tunnelwatch analyze KIND ...` imports only KIND's module: on a 50,000-rule iptables dump the
whole process should take no longer than the kernel's own parser, so startup counts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from shared import __version__
from shared.cli import scan
from shared.cli.common import CommandResult, ExitCode
from shared.errors import TunnelwatchError
from shared.redaction import install_log_redaction, redact, redact_json

__all__ = ["ANALYZERS", "build_parser", "main"]

# analyze KIND -> the module that registers it (register(kinds) adds the subparser)
ANALYZERS: dict[str, str] = {
    "iptables": "shared.cli.analyze_iptables",
    "ufw": "shared.cli.analyze_ufw",
    "nc": "shared.cli.analyze_nc",
    "nsg": "shared.cli.analyze_nsg",
    "runcommand": "shared.cli.analyze_runcommand",
    "snat": "shared.cli.analyze_snat",
    "nft": "shared.cli.analyze_nft",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (with `only`) one that knows just that analyze subcommand."""
    parser = argparse.ArgumentParser(
        prog="tunnelwatch",
        description="Find what blocks the AKS tunnel (node port 10250, egress to the API server).",
        epilog="exit codes: 0 allowed / no problem, 1 blocked / problem, 2 bad input or usage, "
        "3 inconclusive, 4 storage failed (scan --record), 5 internal error",
    )
    parser.add_argument("--version", action="version", version=f"tunnelwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    analyze = commands.add_parser(
        "analyze", help="analyze one captured input (iptables, nft, ufw, nc, nsg, runcommand, snat)"
    )
    kinds = analyze.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, module in ANALYZERS.items():
        if only is None or kind == only:
            importlib.import_module(module).register(kinds)
    scan.register(commands)  # light: its handler imports the Azure SDKs when it runs
    return parser


def _only(argv: Sequence[str]) -> str | None:
    if len(argv) >= 2 and argv[0] == "analyze" and argv[1] in ANALYZERS:
        return argv[1]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="tunnelwatch: %(levelname)s: %(message)s")
    install_log_redaction()  # every log line, ours and the SDKs', masks credentials
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_only(args_list)).parse_args(args_list)
    # Everything printed below goes through redact(): ARM error text can quote tokens, SAS
    # signatures and keys, and those must not reach a terminal, a CI log or a --json file.
    try:
        result: CommandResult = args.handler(args)
    except TunnelwatchError as exc:
        print(redact(f"tunnelwatch: error: {exc}"), file=sys.stderr)
        return int(ExitCode.USAGE)
    except Exception:
        # A fault of ours or of a dependency: the traceback still goes to stderr with exit 1,
        # as the interpreter would print it, but redacted.
        sys.stderr.write(redact(traceback.format_exc()))
        return int(ExitCode.INTERNAL)
    if getattr(args, "json", False):
        text = json.dumps(redact_json(result.document), indent=2) + "\n"
    else:
        text = redact(result.text if result.text.endswith("\n") else result.text + "\n")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours. Point stdout at /dev/null so
        # the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if result.message:
        print(redact(f"tunnelwatch: error: {result.message}"), file=sys.stderr)
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main())
