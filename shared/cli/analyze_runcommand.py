"""`tunnelwatch analyze runcommand FILE`: split a run-command result, say what was cut or failed."""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis import runcommand
from shared.analysis.runcommand import Provisioning, RunCommandOutput
from shared.cli.common import CommandResult, ExitCode, add_json_flag, read_input

__all__ = ["handle", "register", "status_of"]

_EPILOG = """\
accepts: the JSON of 'az vm|vmss run-command invoke' (RunCommandResult, Linux or Windows), the
message alone ('--query value[0].message -o tsv'), an ARM error body, or a managed run command
(or its instanceView).
exit codes: 0 complete output, 1 the run command failed, 2 unreadable input,
3 output possibly truncated (the service keeps the last 4,096 bytes per stream), a capture that
may end early (the message alone, without its JSON, never shows its end; cut JSON), or not final"""


def register(kinds: Any) -> None:
    p: argparse.ArgumentParser = kinds.add_parser(
        "runcommand",
        help="split a run-command result into stdout/stderr; detect truncation and failure",
        description="Split a VM / scale-set run-command result into stdout and stderr, and say "
        "whether the output may be cut or the run command failed.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="the result, or - for stdin")
    add_json_flag(p)
    p.set_defaults(handler=handle)


def status_of(out: RunCommandOutput) -> tuple[str, ExitCode]:
    """The one-word status of a result and its exit code."""
    if out.provisioning is Provisioning.FAILED:
        return "failed", ExitCode.PROBLEM
    if out.provisioning in (Provisioning.RUNNING, Provisioning.UNKNOWN):
        return out.provisioning.value, ExitCode.INCONCLUSIVE
    if out.truncated:
        return "truncated", ExitCode.INCONCLUSIVE
    return "complete", ExitCode.OK


def handle(args: argparse.Namespace) -> CommandResult:
    source, text = read_input(args.file)
    out = runcommand.split_result(text, source)
    status, code = status_of(out)
    found = runcommand.findings(out)
    document = {
        "source": source,
        "stdout": out.stdout,
        "stderr": out.stderr,
        "truncated": {"stdout": out.truncated_stdout, "stderr": out.truncated_stderr},
        "ends_early": out.ends_early or None,
        "platform": out.platform.value,
        "status": status,
        "provisioning": out.provisioning.value,
        "message": out.message,
        "exit_code": out.exit_code,
        "notes": list(out.notes),
        "findings": [f.to_json() for f in found],
    }
    lines = [f"{source}: {status} ({out.platform.value}, provisioning {out.provisioning.value})"]
    if out.message:
        lines.append(f"message: {out.message}")
    for name, stream, cut in (
        ("stdout", out.stdout, out.truncated_stdout),
        ("stderr", out.stderr, out.truncated_stderr),
    ):
        lines.append(f"[{name}]" + (" (possibly truncated at the start)" if cut else ""))
        if stream:
            lines.append(stream.rstrip("\n"))
    lines.extend(f"note: {n}" for n in out.notes if n != out.ends_early)
    if out.ends_early:
        lines.append(f"capture incomplete: {out.ends_early.removeprefix('capture incomplete: ')}")
    return CommandResult(code, document, "\n".join(lines))
