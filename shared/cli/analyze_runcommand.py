"""`tunnelwatch analyze runcommand FILE`: split a run-command result, say what was cut or failed."""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis import runcommand
from shared.analysis.runcommand import Outcome, RunCommandOutput
from shared.cli.common import CommandResult, ExitCode, add_json_flag, read_paste, with_paste

__all__ = ["handle", "register", "status_of"]

_EPILOG = """\
accepts: the JSON of 'az vm|vmss run-command invoke' (RunCommandResult, Linux or Windows), its
'--query value -o tsv' rows, the message alone ('--query value[0].message -o tsv'), an ARM error
body (nested details too), the error text of the az CLI ('ERROR: (Conflict) ...'), of the
Python SDK (HttpResponseError, CloudError) or of PowerShell ('ErrorCode: ... StatusCode: 409'),
an 'az --debug' log, or a managed run command (or its instanceView).
exit codes: 0 complete output; 1 the run command failed, or the script's own exit code (managed
run commands) is not 0; 2 unreadable input; 3 inconclusive: output possibly truncated (the
service keeps the last 4,096 bytes per stream, or the capture may end early: the message alone
never shows its end), not final, or no output for a reason to act on: busy (409 Conflict,
another run command is in progress: try later), timed-out, not-running (VM stopped or
deallocated), denied (403, lock, policy), throttled (429), not-found"""


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
    """The one-word status of a result and its exit code (the epilog documents the mapping)."""
    result = runcommand.outcome(out)
    if result is Outcome.COMPLETE:
        # The script's own status, where the service reports one (managed run commands).
        failed = out.exit_code is not None and out.exit_code != 0
        return result.value, ExitCode.PROBLEM if failed else ExitCode.OK
    if result is Outcome.FAILED:
        return result.value, ExitCode.PROBLEM
    return result.value, ExitCode.INCONCLUSIVE


def handle(args: argparse.Namespace) -> CommandResult:
    source, paste = read_paste(args.file, "runcommand")
    text = paste.text
    out = runcommand.split_result(text, source)
    status, code = status_of(out)
    found = runcommand.findings(out)
    step = runcommand.next_step(runcommand.outcome(out))
    error = out.error
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
        "error": None
        if error is None
        else {
            "code": error.code,
            "innermost_code": error.innermost,
            "codes": list(error.codes),
            "http_status": error.status,
            "message": error.message,
        },
        "summary": step[0] if step else None,
        "next_step": step[1] if step else None,
        "notes": list(out.notes),
        "findings": [f.to_json() for f in found],
    }
    lines = [f"{source}: {status} ({out.platform.value}, provisioning {out.provisioning.value})"]
    if step is not None:
        lines.append(step[0])
    if out.message:
        lines.append(f"message: {out.message}")
    if error is not None:
        said = [f"code {error.code}"] if error.code else []
        if error.inner:
            said.append(f"innermost code {error.innermost}")
        if error.status is not None:
            said.append(f"HTTP {error.status}")
        if said:
            lines.append("error: " + ", ".join(said))
    if step is not None:
        lines.append(f"next step: {step[1]}")
        lines.extend(f"  {c}" for f in found if f.remediation for c in f.remediation.commands)
    streams = () if error is not None else (
        ("stdout", out.stdout, out.truncated_stdout),
        ("stderr", out.stderr, out.truncated_stderr),
    )  # fmt: skip
    for name, stream, cut in streams:
        lines.append(f"[{name}]" + (" (possibly truncated at the start)" if cut else ""))
        if stream:
            lines.append(stream.rstrip("\n"))
    lines.extend(f"note: {n}" for n in out.notes if n != out.ends_early)
    if out.ends_early:
        lines.append(f"capture incomplete: {out.ends_early.removeprefix('capture incomplete: ')}")
    return with_paste(CommandResult(code, document, "\n".join(lines)), [(source, paste)])
