"""`tunnelwatch analyze nc FILE`: classify captured connection tests, one line per target."""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis import netcat
from shared.cli.common import CommandResult, ExitCode, add_json_flag, read_paste, with_paste
from shared.errors import InputError, excerpt

__all__ = ["handle", "register"]

_EPILOG = """\
recognises OpenBSD nc, macOS nc, nmap ncat, busybox nc, traditional netcat, bash /dev/tcp and
Go 'dial tcp' errors. Framing lines give a target to tools that do not name it, and let an exit
status speak:
  target=10.224.0.5:10250          before an attempt
  10.224.0.5:10250 exit=124        after it (124 = killed by timeout -> timeout, 0 -> open)
A pasted prompt does the same: `$ nc -vz 10.224.0.5 10250` names the target of the lines after
it, and `echo $?` after a silent `nc -z` gives its status (0 open, 1 failed).
A capture cannot show that no target follows its last one (nor that its last line, without a
newline, was not cut): every target open is exit 0 only with --expect N, the number of targets
tried, matching the capture; otherwise it is inconclusive (exit 3).
exit codes: 0 every target open (--expect N of them), 1 a target refused/timed out/unreachable
or failed,
2 unreadable input (lines, none of them a connection test's), 3 nothing captured, some targets
unknown, or maybe more targets"""


def register(kinds: Any) -> None:
    p: argparse.ArgumentParser = kinds.add_parser(
        "nc",
        help="classify nc / ncat / bash /dev/tcp connection results per target",
        description="Classify netcat and bash /dev/tcp connection results into open, refused, "
        "timeout, unreachable or unknown, one line per target.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="captured output, or - for stdin")
    p.add_argument(
        "--expect",
        type=_count,
        metavar="N",
        help="the number of targets the test tried: needed to answer 'every target open'",
    )
    add_json_flag(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> CommandResult:
    source, paste = read_paste(args.file, "nc")
    text = paste.text
    # A prompt's command line names the target of the lines after it (`$ nc -vz HOST PORT`).
    report = netcat.analyze(text, source, expect=args.expect, commands=paste.commands)
    if not report.results:
        _refuse_unrecognised(source, text, cut=bool(report.cut))
    found = netcat.findings(report)
    verdict = report.verdict
    if verdict is None:
        code = ExitCode.INCONCLUSIVE
    elif verdict is netcat.Status.OPEN:
        code = ExitCode.OK
    else:
        code = ExitCode.PROBLEM
    document = {
        "source": source,
        "results": [r.to_json() for r in report.results],
        "counts": report.counts,
        "incomplete": report.cut or None,
        "findings": [f.to_json() for f in found],
    }
    lines = []
    width = max((len(r.target.label()) for r in report.results), default=0)
    for r in report.results:
        a = r.decisive
        note = " (attempts disagreed)" if r.mixed and not r.families else ""
        lines.append(f"{r.target.label():<{width}} {r.status.value:<11} {a.line}{note}")
        if a.reason and r.status in (netcat.Status.UNKNOWN, netcat.Status.FAILED):
            lines.append(f"{'':<{width}} {'':<11} why: {a.reason}")
        if r.families:  # each address family's own outcome (IPv4 timeout, IPv6 unreachable)
            each = "; ".join(_family(f) for f in r.families)
            lines.append(f"{'':<{width}} {'':<11} by family: {each}")
    if not report.results:
        lines.append(f"{source}: no connection test output recognised")
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    if counts:
        lines.append(f"-- {len(report.results)} target(s): {counts}")
    if report.cut and verdict is None:
        lines.append(f"capture incomplete: {report.cut}")
    for f in found:
        if f.remediation is not None and f.severity.value == "critical":
            lines.append(f"next: {f.remediation.summary}")
            lines.extend(f"  {c}" for c in f.remediation.commands)
            lines.extend(f"  note: {n}" for n in f.remediation.notes)
            break
    return with_paste(CommandResult(code, document, "\n".join(lines)), [(source, paste)])


def _family(f: netcat.FamilyResult) -> str:
    a = f.decisive
    address = f" {a.address or a.target.host}" if f.family is not None else ""
    why = f", {a.reason}" if a.reason else ""
    return f"{f.label()}{address}: {f.status.value} (line {a.line_number}{why})"


def _refuse_unrecognised(source: str, text: str, *, cut: bool) -> None:
    """Input with lines but not one connection test line is not a capture of one (exit 2,
    like every analyzer's foreign input). An empty capture, or one whose only line may be cut,
    stays inconclusive (exit 3): a silent `nc -z` prints nothing."""
    read = text.rpartition("\n")[0] if cut else text
    for number, line in enumerate(read.split("\n"), start=1):
        if line.strip():
            raise InputError(
                source,
                "no connection test output recognised (nc, ncat, busybox nc, bash /dev/tcp, "
                f"Go 'dial tcp'): line {number} is {excerpt(line.strip())}",
            )


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of targets (1-100000)")
    return int(text)
