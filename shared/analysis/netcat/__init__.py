"""Connection-test output (nc, ncat, busybox nc, bash /dev/tcp, timeout) classified per target.

Owns the reading of a whole capture: lines in context, one result per target, the verdict and
the findings. The wording of single lines lives in `netcat.lines`.

Framing convention (what our node probe script prints, and what anyone may add by hand):

    target=<host>:<port>[/tcp|/udp] [key=value ...]   before each attempt; IPv6 as [addr]:port
    <host>:<port> exit=<n>                             after it, with the probe command's status
    target=<host>:<port> exit=<n>                      both at once

Lines between a `target=` line and the next framing line belong to that target; this is how
the tools that do not name the target (ncat's failures, busybox's "nc: timed out", bash's
"connect:" line) get one. Without a framing line such a result keeps an unknown target. When
no tool line spoke for a framed target, its exit status decides: 0 -> open (nc -z and bash
/dev/tcp are silent on success), 124 or 137 -> timeout (GNU timeout killed it), anything else
or no exit status -> unknown. A tool line always wins over the exit status.

Command lines in a paste (`$ nc -vz 10.0.0.5 10250`, found by `shared.analysis.paste` and
passed as `commands`) frame the lines after them the same way when they name one target
(`netcat.commands`): a bare `Ncat: TIMEOUT.` after it is that target's. A silent command's
exit status, printed by `echo $?` (on its own prompt or after `;`), speaks for it as
`netcat.commands.exit_outcome` says (1 from a silent `nc -z` to an address: "failed").

Several attempts at one target (nc trying each address of a name, or repeated probes) make one
result; `mixed` says when attempts disagreed. Within one address family the last decisive
attempt decides. When the addresses of several families were tried (a name with an IPv4 and an
IPv6 address: IPv4 timed out, IPv6 "Network is unreachable"), each family keeps its own outcome
(`families`), and the target's status is the one that got furthest: open, then refused (the
host answered), then timeout, then unreachable (often only "this node has no route for IPv6").
ncat's "Trying next address..." ties its next line to the same target.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from shared.analysis.findings import (
    Finding,
    Origin,
    Remediation,
    Severity,
    Subject,
)
from shared.analysis.netcat.commands import CommandLine, Invocation, exit_outcome, invocation
from shared.analysis.netcat.finding import WHAT_A_FAILURE_MEANS, Reading, connection_finding
from shared.analysis.netcat.lines import (
    MAX_LINE,
    Line,
    LineKind,
    Status,
    Target,
    Tool,
    classify_error,
    parse_target,
    read_line,
)
from shared.analysis.shell import command, placeholder, sequence
from shared.errors import InputError

__all__ = [
    "Attempt",
    "CommandLine",
    "FamilyResult",
    "NetcatReport",
    "Status",
    "Target",
    "TargetResult",
    "Tool",
    "analyze",
    "classify_error",
    "findings",
    "parse",
    "parse_target",
]

KUBELET_PORT = 10250
# Egress the tunnel needs: 443 (Konnectivity, our extension), 9000 (tunnel-front), 1194 (aks-link).
EGRESS_PORTS = frozenset({443, 9000, 1194})
_KILLED_BY_TIMEOUT = frozenset({124, 137})  # timeout's own status; 128+9 with --signal=KILL


@dataclass(frozen=True, slots=True)
class Attempt:
    target: Target
    status: Status
    tool: Tool
    line: str  # the evidence, as captured
    line_number: int
    reason: str = ""
    address: str | None = None
    group: int = 0  # for a result naming no target: the line of the attempt it continues

    @property
    def family(self) -> int | None:
        """4 or 6 when the attempt names an address (or the target is one), else None."""
        for host in (self.address, self.target.host):
            try:
                return ipaddress.ip_address((host or "").split("%")[0]).version
            except ValueError:
                continue
        return None


@dataclass(frozen=True, slots=True)
class FamilyResult:
    """The outcome for the addresses of one family (None: an address ncat did not print)."""

    family: int | None
    status: Status
    decisive: Attempt

    def label(self) -> str:
        return "another address" if self.family is None else f"IPv{self.family}"

    def to_json(self) -> dict[str, object]:
        a = self.decisive
        return {
            "family": self.family,
            "status": self.status.value,
            "address": a.address or (a.target.host if self.family is not None else None),
            "line": a.line,
            "line_number": a.line_number,
            "reason": a.reason,
        }


@dataclass(frozen=True, slots=True)
class TargetResult:
    """One target: the deciding attempt, and all attempts seen for it. `families` holds one
    outcome per address family when attempts of more than one were seen (else empty)."""

    target: Target
    status: Status
    decisive: Attempt
    attempts: tuple[Attempt, ...]
    mixed: bool
    families: tuple[FamilyResult, ...] = ()

    def to_json(self) -> dict[str, object]:
        a = self.decisive
        return {
            "target": self.target.label(),
            "host": self.target.host,
            "port": self.target.port,
            "protocol": self.target.protocol,
            "status": self.status.value,
            "tool": a.tool.value,
            "line": a.line,
            "line_number": a.line_number,
            "reason": a.reason,
            "address": a.address,
            "attempts": len(self.attempts),
            "mixed": self.mixed,
            "families": [f.to_json() for f in self.families],
        }


@dataclass(frozen=True, slots=True)
class NetcatReport:
    results: tuple[TargetResult, ...]
    # Why the capture may lack targets (or attempts) after what it shows; "" when the number
    # of targets was given and matched, or the producer proved the capture whole.
    cut: str = ""

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r.status for r in self.results)
        return {s.value: c.get(s, 0) for s in Status}

    @property
    def verdict(self) -> Status | None:
        """The first blocked status if any; OPEN when every target is open and the capture
        cannot lack one (not `cut`); None otherwise (inconclusive)."""
        if any(r.status.blocked for r in self.results):
            return next(r.status for r in self.results if r.status.blocked)
        if self.results and all(r.status is Status.OPEN for r in self.results) and not self.cut:
            return Status.OPEN
        return None  # nothing recognisable, some targets unknown, or maybe more targets


@dataclass(slots=True)
class _Frame:
    target: Target
    line_number: int
    line: str
    attempts: list[Attempt] = field(default_factory=list)
    command: Invocation | None = None  # framed by a command line of the paste


def _belongs(frame: _Frame, attempt: Attempt) -> bool:
    """Whether an attempt that names its target is about the framed target."""
    t, f = attempt.target, frame.target
    if t.host is None:
        return True
    same_host = t.host.lower() == (f.host or "").lower() or attempt.address == f.host
    return same_host and t.port in (None, f.port)


def parse(text: str, source: str, commands: Sequence[CommandLine] = ()) -> tuple[Attempt, ...]:
    """Every attempt in a capture, with framing context applied. Raises InputError only.

    `commands` are the command lines the paste pre-pass took out of `text` (their lines are
    blank in it, the other lines keep their numbers)."""
    if "\x00" in text:
        where = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(source, "binary data (NUL byte), expected text output", line=where)
    attempts: list[Attempt] = []
    frame: _Frame | None = None
    pending: tuple[Line, str, int] | None = None
    by_line = {c.line: invocation(c) for c in commands}
    awaiting_status = False  # an `echo $?` was typed: the next number is an exit status
    continues: int = 0  # ncat's "Trying next address...": the line of the attempt it goes on

    def close(frame: _Frame | None, exit_code: int | None) -> None:
        if frame is None or frame.attempts:
            return
        if frame.command is not None:
            status, reason = exit_outcome(frame.command, exit_code)
            tool = Tool.TIMEOUT if status is Status.TIMEOUT else Tool.EXIT_STATUS
            where = frame.line_number
            attempts.append(Attempt(frame.target, status, tool, frame.line, where, reason))
            return
        if exit_code == 0:
            status, tool, reason = Status.OPEN, Tool.EXIT_STATUS, "exit status 0, no message"
        elif exit_code in _KILLED_BY_TIMEOUT:
            status, tool = Status.TIMEOUT, Tool.TIMEOUT
            reason = f"exit status {exit_code}: killed by timeout, no answer"
        elif exit_code is None:
            status, tool, reason = Status.UNKNOWN, Tool.EXIT_STATUS, "no output for this target"
        else:
            status, tool = Status.UNKNOWN, Tool.EXIT_STATUS
            reason = f"exit status {exit_code} without a recognisable message"
        attempts.append(Attempt(frame.target, status, tool, frame.line, frame.line_number, reason))

    def add(line: Line, raw: str, number: int, *, unread: bool = False) -> None:
        nonlocal continues
        attempt = Attempt(
            line.target, line.status, line.tool, raw, number, line.reason, line.address
        )
        if continues and line.tool is Tool.NCAT and line.target.host is None:
            attempt = replace(attempt, group=continues)
        continues = 0
        # A line too long to read stays a result of its own: attached to a frame, a later
        # "succeeded" of that target would outvote it, and what it said is unknown.
        if frame is not None and not unread and _belongs(frame, attempt):
            t = line.target
            address = line.address or (t.host if t.host and t.host != frame.target.host else None)
            attempt = replace(attempt, target=frame.target, address=address)
            frame.attempts.append(attempt)
        attempts.append(attempt)

    def flush_pending() -> None:
        nonlocal pending
        if pending is not None:
            add(*pending)
            pending = None

    lines = text.splitlines()
    # The pre-pass drops skipped lines after the last one kept: a command line may lie past
    # the text's end (a silent `nc -z` that ends the paste).
    lines += [""] * (max(by_line, default=0) - len(lines))
    for number, captured in enumerate(lines, start=1):
        if (inv := by_line.get(number)) is not None:
            flush_pending()
            continues = 0
            if inv.status_echo:
                awaiting_status = frame is not None and frame.command is not None
                continue
            close(frame, None)
            frame = None
            if inv.target is not None:
                frame = _Frame(inv.target, number, f"$ {inv.text}", command=inv)
            awaiting_status = inv.echoes_status and frame is not None
            continue
        if awaiting_status and (code := captured.strip()).isdigit() and len(code) <= 3:
            flush_pending()
            close(frame, int(code))
            frame, awaiting_status = None, False
            continue
        line = read_line(captured, source, number)
        if line is None:
            continue
        if len(captured) > MAX_LINE:  # read_line did not read it: keep an excerpt as evidence
            flush_pending()
            add(line, f"{captured[:120]}... ({len(captured):,} characters)", number, unread=True)
            continue
        raw = captured.strip()
        if line.kind is LineKind.PENDING:
            flush_pending()
            pending = (line, raw, number)
            continue
        if line.kind is LineKind.RESULT and line.tool is Tool.BASH and pending is not None:
            # bash says it twice: "connect: <err>" then "/dev/tcp/<host>/<port>: <err>".
            first, first_raw, _ = pending
            pending = None
            status = first.status if first.status is not Status.UNKNOWN else line.status
            keep_first = first.status is not Status.UNKNOWN or line.status is Status.UNKNOWN
            reason = first.reason if keep_first else line.reason
            add(replace(line, status=status, reason=reason), f"{first_raw} / {raw}", number)
            continue
        flush_pending()
        if line.kind is LineKind.NEXT:
            previous = attempts[-1] if attempts else None
            if previous is not None and previous.tool is Tool.NCAT:
                continues = previous.group or previous.line_number
            continue
        if line.kind is LineKind.FRAME:
            close(frame, None)
            frame = _Frame(line.target, number, raw)
            if line.exit_code is not None:
                close(frame, line.exit_code)
                frame = None
        elif line.kind is LineKind.EXIT:
            if frame is not None and frame.target == line.target:
                frame.line, frame.line_number = raw, number
                close(frame, line.exit_code)
            else:
                close(frame, None)
                close(_Frame(line.target, number, raw), line.exit_code)
            frame = None
        else:
            add(line, raw, number)
    flush_pending()
    close(frame, None)
    return tuple(attempts)


def analyze(
    text: str,
    source: str,
    *,
    expect: int | None = None,
    whole: bool = False,
    commands: Sequence[CommandLine] = (),
) -> NetcatReport:
    """One result per target, in order of first appearance.

    A capture may end early, and nc prints nothing after its last target, so the capture
    alone never shows that no target follows: "every target open" needs `expect` (the number
    of targets tried) to match, or `whole` (its producer counted them: the node probe). A
    last line without a newline may be cut in the middle ("Connection to ... failed" before
    its reason, "succeeded!" of a later attempt): unless `whole`, it is not read.
    `commands`: the command lines of a paste (see `parse`).
    """
    cut = ""
    if not whole:
        last = text.rpartition("\n")[2]
        if last.strip():  # no newline after it: maybe cut mid-line
            cut = f"its last line (line {text.count(chr(10)) + 1}) has no newline and was not read"
            text = text[: len(text) - len(last)]
    groups: dict[object, list[Attempt]] = {}
    for a in parse(text, source, commands):
        t = a.target
        # A result without host and port cannot be merged with anything but what it
        # continues (ncat's next address): key it by its line.
        key: object = (
            (t.host.lower(), t.port, t.protocol)
            if t.host is not None
            else ("line", a.group or a.line_number)
        )
        groups.setdefault(key, []).append(a)
    results = [_result(attempts) for attempts in groups.values()]
    if not whole:
        cut = "; ".join(w for w in (_count_gap(len(results), expect), cut) if w)
    return NetcatReport(tuple(results), cut)


# Which family's outcome the target shows when they differ: the one that got furthest.
_REACH = (Status.OPEN, Status.REFUSED, Status.TIMEOUT, Status.UNREACHABLE, Status.FAILED)


def _result(attempts: list[Attempt]) -> TargetResult:
    decisive_ones = [a for a in attempts if a.status is not Status.UNKNOWN]
    decisive = decisive_ones[-1] if decisive_ones else attempts[-1]
    mixed = len({a.status for a in decisive_ones}) > 1
    per_family: dict[int | None, Attempt] = {}
    for a in decisive_ones:  # the last decisive attempt of each family, in order of first try
        per_family[a.family] = a
    families: tuple[FamilyResult, ...] = ()
    if len(per_family) > 1:
        families = tuple(FamilyResult(f, a.status, a) for f, a in per_family.items())
        decisive = min(per_family.values(), key=lambda a: _REACH.index(a.status))
    status = decisive.status
    return TargetResult(decisive.target, status, decisive, tuple(attempts), mixed, families)


def _count_gap(shown: int, expect: int | None) -> str:
    """Why the targets shown may not be all of them ("" when `expect` says they are)."""
    if expect is None:
        return (
            "nc prints nothing after its last target, so a capture cannot show that no "
            "target follows the last one shown (give the number of targets tried: --expect N)"
        )
    if shown < expect:
        return f"{expect} targets were tried, {shown} are in the capture (cut?)"
    if shown > expect:
        return f"{expect} targets were tried, but {shown} are in the capture"
    return ""


_READ_RULES = sequence(command("ufw", "status", "verbose"), command("iptables-save"))
_NSG_SHOW = command(
    *("az", "network", "nsg", "show", "-g", placeholder("node-resource-group")),
    *("-n", placeholder("nsg"), "-o", "json"),
)
_NODE_CHECKS = Remediation(
    summary=(
        "nc alone cannot tell which layer blocks the kubelet port. Run the checks that can: "
        "the effective NSGs of the node (tunnelwatch analyze nsg), UFW on the target node "
        "(tunnelwatch analyze ufw) and its iptables rules (tunnelwatch analyze iptables)."
    ),
    commands=(
        command(
            *("az", "vmss", "run-command", "invoke", "-g", placeholder("node-resource-group")),
            *("-n", placeholder("vmss"), "--instance-id", placeholder("instance-id")),
            *("--command-id", "RunShellScript", "--scripts", _READ_RULES),
            *("--query", "value[0].message", "-o", "tsv"),
        ),
        _NSG_SHOW,
    ),
    notes=WHAT_A_FAILURE_MEANS,
)
_EGRESS_CHECKS = Remediation(
    summary=(
        "nc alone cannot tell what blocks the tunnel's egress. Check the node's outbound path: "
        "NSG outbound rules, route tables (UDR to a firewall), the firewall's rules, and SNAT "
        "(tunnelwatch analyze snat)."
    ),
    commands=(_NSG_SHOW,),
)


def findings(report: NetcatReport, subject: Subject | None = None) -> tuple[Finding, ...]:
    """A PROBLEM per blocked target, an INCONCLUSIVE per unknown one (`netcat.finding`).

    The cause stays None on purpose: a failed connect says that something blocks the port,
    not what (NSG, UFW, iptables, a dead kubelet). The remediation points at the checks that
    can tell, and the evidence line says how it failed, which narrows it down.
    """
    subject = subject or Subject()
    out: list[Finding] = []
    for r in report.results:
        port = r.target.port
        egress = port in EGRESS_PORTS
        label = r.target.label()
        reading = Reading(
            check="probe.tcp",
            cause=None,
            subject=subject,
            key=label if r.target.host is not None else f"line{r.decisive.line_number}",
            target=label,
            severity=Severity.CRITICAL if port == KUBELET_PORT or egress else Severity.WARNING,
            remediation=_EGRESS_CHECKS if egress else _NODE_CHECKS,
            origin=Origin.ARTICLE if port == KUBELET_PORT else Origin.TUNNELWATCH,
        )
        finding = connection_finding(r, reading)
        if finding is not None:
            out.append(finding)
    return tuple(out)
