"""Recognising one line of connection-test output: which tool said it, about what, and how it ended.

Owns the wordings of OpenBSD nc, macOS nc, nmap ncat, busybox nc, traditional netcat (Debian's
netcat-traditional, `nc.traditional`), bash `/dev/tcp`, Go's `dial tcp` errors (what kubectl
prints) and our own framing lines. `read_line` turns one line
into a `Line` (or None when the line is none of these); `netcat.parse` puts lines in context.

Wordings were checked against the real OpenBSD nc 1.219 and bash 5 in a network namespace (DROP,
REJECT with tcp-reset / icmp-host-unreachable / icmp-net-unreachable, no route, no listener), and
ncat 7.93, busybox 1.35 nc and netcat-traditional 1.10 the same way (issue 10); macOS nc and Go
against their published output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from shared.errors import InputError, excerpt

__all__ = [
    "MAX_LINE",
    "Line",
    "LineKind",
    "Status",
    "Target",
    "Tool",
    "classify_error",
    "parse_target",
    "read_line",
]


class Status(StrEnum):
    OPEN = "open"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    FAILED = "failed"  # not open, the tool did not say how: a silent `nc -z` that exited 1
    UNKNOWN = "unknown"

    @property
    def blocked(self) -> bool:
        return self in (Status.REFUSED, Status.TIMEOUT, Status.UNREACHABLE, Status.FAILED)


class Tool(StrEnum):
    OPENBSD_NC = "openbsd-nc"
    MACOS_NC = "macos-nc"
    NCAT = "ncat"
    BUSYBOX_NC = "busybox-nc"
    TRADITIONAL_NC = "traditional-nc"  # netcat 1.10 (Debian's nc.traditional)
    BASH = "bash-dev-tcp"
    GO_DIAL = "go-dial"  # kubectl and other Go programs: "dial tcp 10.0.0.4:10250: i/o timeout"
    TIMEOUT = "timeout"  # GNU timeout killed a silent probe (exit 124, 137 with -s KILL)
    EXIT_STATUS = "exit-status"  # only a framing line's exit status tells the outcome


class LineKind(StrEnum):
    RESULT = "result"  # the outcome of one attempt
    PENDING = "pending"  # bash's "connect:" line: an outcome whose target comes on the next line
    FRAME = "frame"  # our framing line: target=<host>:<port> [exit=<n>]
    EXIT = "exit"  # our framing line: <host>:<port> exit=<n>
    NEXT = "next"  # ncat's "Trying next address...": its next result is the same target's


@dataclass(frozen=True, slots=True)
class Target:
    """What was probed; None where the line does not say."""

    host: str | None
    port: int | None
    protocol: str = "tcp"

    def label(self) -> str:
        host = "?" if self.host is None else (f"[{self.host}]" if ":" in self.host else self.host)
        port = "?" if self.port is None else str(self.port)
        suffix = "" if self.protocol == "tcp" else f"/{self.protocol}"
        return f"{host}:{port}{suffix}"


@dataclass(frozen=True, slots=True)
class Line:
    kind: LineKind
    target: Target
    status: Status = Status.UNKNOWN
    tool: Tool = Tool.EXIT_STATUS
    reason: str = ""
    address: str | None = None  # the resolved address when the tool prints it beside the name
    exit_code: int | None = None


_ERRORS: tuple[tuple[tuple[str, ...], Status], ...] = (
    (("connection refused",), Status.REFUSED),
    (("timed out", "timeout", "operation now in progress"), Status.TIMEOUT),
    (
        (
            "no route to host",
            "network is unreachable",
            "network unreachable",
            "host is unreachable",
            "host unreachable",
            "host is down",
            # a local OUTPUT rule (iptables DROP/REJECT) makes connect() fail with EPERM/EACCES
            "operation not permitted",
            "permission denied",
        ),
        Status.UNREACHABLE,
    ),
)


def classify_error(message: str) -> Status:
    """The status an error text stands for; UNKNOWN for anything else (DNS, bad arguments)."""
    low = message.lower()
    for needles, status in _ERRORS:
        if any(n in low for n in needles):
            return status
    return Status.UNKNOWN


_HOSTPORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^\s:\[\]/]+)):(?P<port>\d{1,5})$"
)


def parse_target(text: str) -> Target | None:
    """`host:port`, `[v6]:port`, optionally `/tcp` or `/udp`; None when it is not that."""
    protocol = "tcp"
    base, slash, proto = text.rpartition("/")
    if slash and proto.lower() in ("tcp", "udp"):
        text, protocol = base, proto.lower()
    m = _HOSTPORT.match(text)
    if not m:
        return None
    port = int(m["port"])
    if port > 65535:
        return None
    return Target(m["v6"] or m["host"], port, protocol)


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) <= 65535 else None


# One line, one meaning. Searched (not anchored at the start) so timestamps or prefixes survive.
_OPENBSD_OK = re.compile(
    r"Connection to (?P<host>\S+)(?: \((?P<addr>[^)\s]*)\))? (?P<port>\d+) port "
    r"\[(?P<proto>tcp|udp)/[^\]]*\] succeeded!"
)
_MACOS_OK = re.compile(
    r"Connection to (?P<host>\S+) port (?P<port>\d+) \[(?P<proto>tcp|udp)/[^\]]*\] succeeded!"
)
_NC_FAIL = re.compile(
    r"nc: (?P<verb>connectx?) to (?P<host>\S+)(?: \((?P<addr>[^)\s]*)\))? port (?P<port>\d+) "
    r"\((?P<proto>tcp|udp)\) (?:failed|timed out): (?P<err>.+)$"
)
_NC_GAI = re.compile(r'nc: getaddrinfo for host "(?P<host>[^"]*)" port (?P<port>\S+): (?P<err>.+)$')
_NCAT_OK = re.compile(r"Ncat: Connected to (?P<hp>\S+?)\.?$")
# ncat names the address (not the port) when a name has several: "Connection to ADDR failed: E."
_NCAT_ADDR_FAIL = re.compile(r"Ncat: Connection to (?P<addr>\S+) failed: (?P<err>.+)$")
_NCAT_NEXT = "Ncat: Trying next address..."
# netcat 1.10: "HOST [ADDR] PORT (SERVICE) open" or "... (SERVICE) : ERROR"; HOST is "(UNKNOWN)"
# without reverse DNS (or with -n). Matched at the start of the line only: linear.
_TRADITIONAL = re.compile(
    r"(?P<host>\S+) \[(?P<addr>[0-9A-Fa-f:.]+)\] (?P<port>\d{1,5}) \([^()\s]*\) "
    r"(?:(?P<open>open)|: (?P<err>.+))$"
)
_TRADITIONAL_LOOKUP = re.compile(r"(?P<host>\S+): forward host lookup failed: (?P<err>.+)$")
_NCAT_FAIL = re.compile(
    r"Ncat: (?P<err>Connection refused|TIMEOUT|Connection timed out|No route to host|"
    r"Network is unreachable|Host is unreachable|Permission denied|Operation not permitted)\.?$",
    re.IGNORECASE,
)
_BUSYBOX_FAIL = re.compile(r"nc: can't connect to remote host \((?P<host>[^)\s]*)\): (?P<err>.+)$")
_BUSYBOX_OK = re.compile(r"^(?P<host>\S+) \((?P<hp>[^()\s]+)\) open$")
_BUSYBOX_TIMEOUT = re.compile(r"^nc: timed out$")
_BUSYBOX_BADADDR = re.compile(r"nc: bad address '(?P<host>[^']*)'")
_BASH_CONNECT = re.compile(r"(?:^|[\s/])-?bash: (?:line \d+: )?connect: (?P<err>.+)$")
_BASH_DEVTCP = re.compile(
    r"(?:^|[\s/])-?bash: (?:line \d+: )?/dev/(?P<proto>tcp|udp)/(?P<host>[^/\s]+)/"
    r"(?P<port>[^:\s]+): (?P<err>.+)$"
)
# The error must name a resolution failure; that is checked on the group (a `.*(...).*` inside
# the pattern backtracks from every "bash:" of a crafted line: quadratic).
_BASH_RESOLVE = re.compile(r"(?:^|[\s/])-?bash: (?:line \d+: )?(?P<host>[^/\s:]+): (?P<err>.*)$")
_RESOLVE_ERRORS = ("name resolution", "name or service not known", "no address associated")
_GO_DIAL = re.compile(
    r"dial (?P<proto>tcp|udp)[46]? (?P<hp>\S+): (?:connect: )?(?P<err>i/o timeout|"
    r"connection refused|no route to host|network is unreachable|connection timed out)",
    re.IGNORECASE,
)
# Longer than any line the tools print (a host name is at most 253 characters): such a line is
# not read at all but reported (see `netcat.parse`), which also bounds the work per line.
MAX_LINE = 1024
_QUIT = " QUITTING"


def _frame(text: str, source: str, number: int) -> Line:
    tokens = text.split()
    if not tokens:
        raise InputError(source, "framing line 'target=' names no target", line=number)
    target = parse_target(tokens[0])
    if target is None:
        raise InputError(
            source,
            f"framing line: {excerpt(tokens[0])} is not <host>:<port> (IPv6 as [addr]:port)",
            line=number,
        )
    exit_code: int | None = None
    for token in tokens[1:]:
        key, eq, value = token.partition("=")
        if not eq:
            raise InputError(
                source, f"framing line: {excerpt(token)} is not key=value", line=number
            )
        if key == "exit":
            exit_code = _exit_code(value, source, number)
    return Line(LineKind.FRAME, target, exit_code=exit_code)


def _exit_code(value: str, source: str, number: int) -> int:
    if not value.lstrip("-").isdigit() or len(value) > 6:
        raise InputError(
            source, f"framing line: exit={excerpt(value)} is not a number", line=number
        )
    return int(value)


def _exit_line(text: str) -> tuple[str, str] | None:
    """(target, code) of `<host>:<port> exit=<code>`: two words, the first with a colon inside
    and no '=' (str methods: the regular expression this replaces backtracked on "a:a:a...")."""
    words = text.split()
    if len(words) != 2 or not words[1].startswith("exit="):
        return None
    target = words[0]
    if "=" in target or ":" not in target[1:-1]:
        return None
    return target, words[1][len("exit=") :]


def _ncat_quit(text: str) -> str | None:
    """The error of ncat's "Ncat: <err>. QUITTING." line, None when it is not one."""
    body = text.removesuffix(".")
    start = text.find("Ncat: ")
    if start < 0 or not body.endswith(_QUIT):
        return None
    err = body[start + len("Ncat: ") : len(body) - len(_QUIT)]
    return err.removesuffix(".") or err or None


def read_line(text: str, source: str, number: int) -> Line | None:
    """What this line says, or None when it is not connection-test output."""
    text = text.rstrip("\r\n\t ")
    if len(text) > MAX_LINE:
        return Line(
            LineKind.RESULT,
            Target(None, None),
            reason=f"a line of {len(text):,} characters (no tool prints more than {MAX_LINE}): "
            "not read",
        )
    stripped = text.lstrip()
    if stripped.startswith("target="):
        return _frame(stripped[len("target=") :], source, number)
    if (ends := _exit_line(text)) and not stripped.startswith(("nc:", "Ncat:")):
        target = parse_target(ends[0])
        if target is None:
            raise InputError(
                source, f"framing line: {excerpt(ends[0])} is not <host>:<port>", line=number
            )
        return Line(LineKind.EXIT, target, exit_code=_exit_code(ends[1], source, number))
    if m := _OPENBSD_OK.search(text):
        return _ok(m["host"], m["port"], m["proto"], Tool.OPENBSD_NC, m["addr"])
    if m := _MACOS_OK.search(text):
        return _ok(m["host"], m["port"], m["proto"], Tool.MACOS_NC, None)
    if m := _NC_FAIL.search(text):
        tool = Tool.MACOS_NC if m["verb"] == "connectx" else Tool.OPENBSD_NC
        target = Target(m["host"], _port(m["port"]), m["proto"])
        return _fail(target, m["err"], tool, m["addr"])
    if m := _NC_GAI.search(text):
        target = Target(m["host"], _port(m["port"]))
        return Line(
            LineKind.RESULT,
            target,
            Status.UNKNOWN,
            Tool.OPENBSD_NC,
            f"name resolution failed: {m['err']}",
        )
    if m := _NCAT_OK.search(text):
        target = parse_target(m["hp"]) or Target(None, None)
        return Line(LineKind.RESULT, target, Status.OPEN, Tool.NCAT)
    if m := _NCAT_ADDR_FAIL.search(text):
        return _fail(Target(None, None), m["err"], Tool.NCAT, m["addr"])
    if text.endswith(_NCAT_NEXT):
        return Line(LineKind.NEXT, Target(None, None), tool=Tool.NCAT)
    if m := _NCAT_FAIL.search(text):
        return _fail(Target(None, None), m["err"], Tool.NCAT, None)
    if (err := _ncat_quit(text)) is not None:
        return Line(LineKind.RESULT, Target(None, None), Status.UNKNOWN, Tool.NCAT, err)
    if m := _BUSYBOX_FAIL.search(text):
        return _fail(Target(m["host"], None), m["err"], Tool.BUSYBOX_NC, None)
    if m := _BUSYBOX_OK.match(text.strip()):
        hp = parse_target(m["hp"])
        if hp is not None:
            return Line(
                LineKind.RESULT,
                Target(m["host"], hp.port),
                Status.OPEN,
                Tool.BUSYBOX_NC,
                address=hp.host,
            )
    if m := _TRADITIONAL.match(stripped):
        host = None if m["host"] == "(UNKNOWN)" else m["host"]
        target = Target(host or m["addr"], _port(m["port"]))
        if m["open"]:
            return Line(LineKind.RESULT, target, Status.OPEN, Tool.TRADITIONAL_NC, "", m["addr"])
        return _fail(target, m["err"], Tool.TRADITIONAL_NC, m["addr"])
    if m := _TRADITIONAL_LOOKUP.match(stripped):
        return Line(
            LineKind.RESULT,
            Target(m["host"], None),
            Status.UNKNOWN,
            Tool.TRADITIONAL_NC,
            f"name resolution failed: {m['err']}",
        )
    if _BUSYBOX_TIMEOUT.match(text.strip()):
        return _fail(Target(None, None), "timed out", Tool.BUSYBOX_NC, None)
    if m := _BUSYBOX_BADADDR.search(text):
        return Line(
            LineKind.RESULT,
            Target(m["host"], None),
            Status.UNKNOWN,
            Tool.BUSYBOX_NC,
            "name resolution failed",
        )
    if m := _BASH_DEVTCP.search(text):
        target = Target(m["host"], _port(m["port"]), m["proto"])
        return _fail(target, m["err"], Tool.BASH, None)
    if m := _BASH_CONNECT.search(text):
        status = classify_error(m["err"])
        return Line(LineKind.PENDING, Target(None, None), status, Tool.BASH, m["err"])
    if (m := _BASH_RESOLVE.search(text)) and any(e in m["err"].lower() for e in _RESOLVE_ERRORS):
        return Line(
            LineKind.PENDING,
            Target(m["host"], None),
            Status.UNKNOWN,
            Tool.BASH,
            f"name resolution failed: {m['err']}",
        )
    if m := _GO_DIAL.search(text):
        target = parse_target(m["hp"]) or Target(None, None)
        target = Target(target.host, target.port, m["proto"].lower())
        return _fail(target, m["err"], Tool.GO_DIAL, None)
    return None


def _ok(host: str, port: str, proto: str, tool: Tool, addr: str | None) -> Line:
    target = Target(host, _port(port), proto)
    if proto == "udp":
        # UDP has no handshake: nc reports "succeeded" without any answer from the far side.
        return Line(
            LineKind.RESULT,
            target,
            Status.UNKNOWN,
            tool,
            "UDP: nc reports success without an answer, so this proves nothing",
            addr,
        )
    return Line(LineKind.RESULT, target, Status.OPEN, tool, "", addr)


def _fail(target: Target, err: str, tool: Tool, addr: str | None) -> Line:
    err = err.strip().rstrip(".")
    status = classify_error(err)
    reason = err if status is not Status.UNKNOWN else f"unrecognised error: {err}"
    return Line(LineKind.RESULT, target, status, tool, reason, addr)
