"""The command lines a pasted capture shows, as far as a connection test cares.

People paste their terminal: `$ nc -vz 10.0.0.5 10250` and then what it printed, which may not
name the target (ncat's `Ncat: TIMEOUT.`, busybox's `nc: timed out`) or be nothing at all (a
silent `nc -z`, then `$ echo $?` and `1`). The paste pre-pass (`shared.analysis.paste`) finds
the prompts and parses their command lines; this module reads one such command line through
the small `CommandLine` interface (which `paste.Command` provides) and says what `netcat.parse`
needs: the target it tries when there is exactly one, and whether its exit status follows.

An exit status stands for an outcome only where the tools make it unambiguous:
0 is open (nc, ncat, busybox nc and bash `/dev/tcp` exit 0 once connected); 124 or 137 under
`timeout` is a timeout; 1 is "failed" (not open, the tool did not say how) only for one
address literal (a name may have failed to resolve); anything else is unknown.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from shared.analysis.netcat.lines import Status, Target

__all__ = ["CommandLine", "Invocation", "exit_outcome", "invocation"]

_NETCATS = frozenset({"nc", "ncat", "netcat", "nc.openbsd", "nc.traditional"})
_KILLED_BY_TIMEOUT = frozenset({124, 137})


class CommandLine(Protocol):
    """A command line found in a paste (`shared.analysis.paste.Command` is one)."""

    @property
    def line(self) -> int: ...  # 1-based line number in the capture

    @property
    def text(self) -> str: ...  # as typed, after the prompt

    @property
    def words(self) -> tuple[str, ...]: ...  # first pipeline stage, wrappers taken off

    @property
    def program(self) -> str: ...

    @property
    def nc_targets(self) -> tuple[tuple[str, str], ...]: ...  # (host, port as typed)


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a command line means for the lines after it (until the next command line)."""

    line: int
    text: str
    target: Target | None  # the one target it tries; None: not a connection test, or several
    tests: bool  # a connection test at all (one target or several)
    echoes_status: bool  # `...; echo $?`: the number after its output is its exit status
    status_echo: bool  # `echo $?` alone: prints the status of the command before it
    under_timeout: bool  # run under GNU timeout (exit 124/137: killed, no answer)


def invocation(command: CommandLine) -> Invocation:
    text = command.text
    words = command.words
    status_echo = command.program == "echo" and words[1:] == ("$?",)
    echoes = not status_echo and "echo $?" in text
    # A redirection the command line parser took for a port (`</dev/null`, `2>`) is none.
    pairs = [(h, p) for h, p in command.nc_targets if "<" not in p and ">" not in p]
    targets = [t for t in (_target(h, p, command) for h, p in pairs) if t is not None]
    one = targets[0] if len(pairs) == 1 and len(targets) == 1 else None
    under_timeout = text.lstrip().startswith("timeout ") or " timeout " in f" {text} "
    return Invocation(command.line, text, one, bool(pairs), echoes, status_echo, under_timeout)


def exit_outcome(inv: Invocation, code: int | None) -> tuple[Status, str]:
    """The outcome an exit status (None: not in the capture) tells for a command that printed
    no result line, and why."""
    if code is None:
        return Status.UNKNOWN, (
            "the command printed nothing and its exit status is not in the capture (nc -z "
            "without -v is silent either way: add -v, or `echo $?` after it)"
        )
    if code == 0:
        return Status.OPEN, "exit status 0: connected"
    if code in _KILLED_BY_TIMEOUT and inv.under_timeout:
        return Status.TIMEOUT, f"exit status {code}: killed by timeout, no answer"
    if code == 1 and inv.target is not None and _literal(inv.target.host):
        return Status.FAILED, (
            "exit status 1 and no message: the connection failed, but not how (refused, "
            "timed out or unreachable: run it again with -v)"
        )
    return Status.UNKNOWN, f"exit status {code} without a recognisable message"


def _target(host: str, port: str, command: CommandLine) -> Target | None:
    if not port.isdigit() or int(port) > 65535 or not host:
        return None  # a range ("80-90") or a service name: several or unknown ports
    udp = command.program in _NETCATS and any(
        w == "--udp" or (w.startswith("-") and not w.startswith("--") and "u" in w)
        for w in command.words[1:]
    )
    if "/dev/udp/" in command.text:
        udp = True
    return Target(host.strip("[]"), int(port), "udp" if udp else "tcp")


def _literal(host: str | None) -> bool:
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return True
