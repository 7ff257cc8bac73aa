"""Reading what the node probe script printed (format version 1) into a ProbeReport.

Owns the framing (`TWPROBE 1 BEGIN <mode>` ... `TWPROBE 1 END <records>`), the records and
the decoding of their gzip+base64 blobs. The run-command service keeps only the last 4,096
bytes of stdout, so a cut output loses its BEGIN line; a killed script loses its END line.
Either way the report says `complete=False` with the reason and carries no records at all:
half a probe is never read as a whole one. The connection-test lines are classified by
`shared.analysis.netcat`; a corrupt blob becomes an entry in `errors`, not an exception, and
so does a blob the script's size guard left out (`toolarge`: the entry carries its size).
Records added within version 1 (older outputs stay valid): note, tls, tunnel, toolarge, the
reduction counts of `ruleset`, the container and pod of `component`, and `reach`.

`reach` (the compact triage): the script names only the kubelet targets that are NOT open (in
`nc`/`ncgz` lines, as many as fit) and counts all of them in one `reach` record: targets
received, a digest of that list, tested, open, named, all|cut. Which targets were open is
never read from the output alone: `target_results` decides it against the list the worker
sent, and only when the counts and the digest agree and nothing is cut or untested. An older
output (every target framed, no `reach`) is read as before. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from shared.analysis import netcat
from shared.errors import InputError, excerpt

__all__ = [
    "FORMAT_VERSION",
    "Component",
    "ProbeError",
    "ProbeReport",
    "Reach",
    "RulesetCapture",
    "TargetResults",
    "TlsCheck",
    "parse_probe_output",
    "target_results",
    "targets_digest",
]

FORMAT_VERSION = 1
# A decompressed blob larger than this is refused (a gzip bomb, or a node stalling the worker
# with megabytes to parse): the whole output is at most 4,096 bytes, and gzip's best ratio
# (about 1:1000) cannot make more than ~4 MB of it. The refusal is an error of the report,
# hence an inconclusive finding, never a crash.
_MAX_BLOB_BYTES = 4 * 1024 * 1024
_ZERO_TIME = "0001-01-01T00:00:00Z"  # crictl's finishedAt of a container that has not exited
_MARKER = re.compile(r"^TWPROBE (?P<v>\d{1,4}) (?P<what>BEGIN|END) (?P<arg>\S{1,16})$")
_FIELDS = {  # key -> (min, max) number of fields after the key
    "error": (2, 2),
    "note": (2, 2),
    "tool": (2, 2),
    "host": (1, 1),
    "addr": (2, 2),
    "os": (3, 3),
    "nc": (1, 1),
    "ncgz": (1, 1),
    "api": (1, 1),
    "tls": (7, 7),
    "tunnel": (1, 1),
    "component": (2, 8),
    "ufw": (1, 1),
    "ruleset": (2, 5),
    "toolarge": (3, 3),
    "reach": (6, 6),
}


@dataclass(frozen=True, slots=True)
class ProbeError:
    """A problem the script reported, or a record we could not decode."""

    subject: str  # the parameter, tool or record it is about ("ruleset legacy", "ufw" ...)
    message: str
    too_large: int | None = None  # compressed size of a blob the size guard left out


@dataclass(frozen=True, slots=True)
class Component:
    """One tunnel container as crictl saw it; None where crictl did not say."""

    name: str
    state: str  # CONTAINER_RUNNING, CONTAINER_EXITED, ...
    attempt: int | None  # the container's restart count at creation
    exit_code: int | None
    reason: str  # OOMKilled, Error, Completed ... or "" when none
    finished_at: str  # RFC 3339, "" while the container has not exited
    container: str = ""  # the container's own name (tunnel-front, openvpn-client ...)
    pod: str = ""

    @property
    def oom_killed(self) -> bool:
        return self.reason == "OOMKilled"


@dataclass(frozen=True, slots=True)
class RulesetCapture:
    """One ruleset in force: an iptables-save dump (legacy, nft) or nftables JSON (nftables)."""

    backend: str  # legacy | nft | nftables
    text: str  # the dump, reduced on the node; for nftables `{"nftables": [...]}`
    kept: int | None = None  # rules the node's reduction kept / dropped (None: not reduced)
    dropped: int | None = None
    chains_dropped: int | None = None  # declarations of chains the packet cannot reach


@dataclass(frozen=True, slots=True)
class TlsCheck:
    """The TLS handshake to the API server offering ALPN konnectivity,h2, as the script saw it."""

    target: str  # host:port
    tcp: str  # open | failed | timeout
    handshake: str  # ok | failed
    alpn: str  # the protocol the peer chose, "" when none
    subject_cn: str  # "" when unknown
    issuer_cn: str
    name_match: bool | None  # the certificate is issued for the host dialled; None: unknown


@dataclass(frozen=True, slots=True)
class Reach:
    """The `reach` record: what the script did with the kubelet targets it received."""

    targets: int  # valid addresses received (the script skips, and reports, any other value)
    digest: str  # targets_digest of those addresses, 8 hex digits
    tested: int  # targets with a result (fewer when the time budget stopped the batches)
    open: int  # connects that succeeded (exit status 0): not named in the output
    named: int  # targets not open whose lines are in the output

    @property
    def failed(self) -> int:
        return self.tested - self.open

    @property
    def cut(self) -> bool:
        """Some targets that are not open are not named: their lines did not fit."""
        return self.named < self.failed


@dataclass(frozen=True, slots=True)
class ProbeReport:
    complete: bool
    reasons: tuple[str, ...] = ()  # why it is incomplete
    version: int | None = None
    mode: str | None = None
    hostname: str | None = None
    addresses: tuple[tuple[str, str], ...] = ()  # (interface, address/prefix)
    os_id: str | None = None
    os_version: str | None = None
    kernel: str | None = None
    nc: str | None = None  # "openbsd" or "none" (bash /dev/tcp used)
    tools: tuple[str, ...] = ()
    # TCP 10250 per target named in the output (with `reach`: only targets NOT open); None:
    # no target line at all. Read it with `target_results` and the list that was sent.
    targets: netcat.NetcatReport | None = None
    reach: Reach | None = None  # the summary of a compact triage; None in older outputs
    api: netcat.NetcatReport | None = None  # TCP to the API server; None: not probed
    tls: TlsCheck | None = None  # None: not tested (see notes/errors for why)
    tunnel: netcat.NetcatReport | None = None  # TCP 9000 (tunnel-front); None: not probed
    crictl_present: bool | None = None
    components: tuple[Component, ...] = ()
    ufw_present: bool | None = None
    ufw_status: str | None = None
    rulesets: tuple[RulesetCapture, ...] = ()
    errors: tuple[ProbeError, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def restarted_components(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if (c.attempt or 0) > 0 or c.oom_killed)


def _unpack(blob: str) -> str:
    """gunzip(base64(blob)) as text; ValueError with the reason when it is not that."""
    if not blob:
        raise ValueError("empty (the node lacked gzip/base64, or the command printed nothing)")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    inflate = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
    try:
        data = inflate.decompress(raw, _MAX_BLOB_BYTES)
    except zlib.error as exc:
        raise ValueError(f"not gzip: {exc}") from None
    if inflate.unconsumed_tail:
        raise ValueError(f"larger than {_MAX_BLOB_BYTES} bytes once decompressed")
    if not inflate.eof:
        raise ValueError("gzip stream cut short")
    return data.decode("utf-8", errors="replace")


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"-?\d{1,10}", text) else None


def _frame(lines: list[str]) -> tuple[int, int, list[str]]:
    """(begin index, end index, reasons); an index is -1 when the marker is missing."""
    reasons: list[str] = []
    begins = [i for i, s in enumerate(lines) if s.startswith("TWPROBE ") and " BEGIN " in s]
    ends = [i for i, s in enumerate(lines) if s.startswith("TWPROBE ") and " END " in s]
    begin = begins[0] if begins else -1
    end = ends[-1] if ends else -1
    if begin < 0:
        reasons.append("no BEGIN marker: the start of the output was cut (4,096-byte limit)")
    if end < 0:
        reasons.append("no END marker: the script did not finish (killed or timed out)")
    if len(begins) > 1 or len(ends) > 1:
        reasons.append("more than one BEGIN or END marker")
    if begin >= 0 and end >= 0 and end < begin:
        reasons.append("END comes before BEGIN")
    return begin, end, reasons


def parse_probe_output(stdout: str, source: str) -> ProbeReport:
    """The report of one probe run; raises InputError (only) for text that is not one."""
    if "\x00" in stdout:
        raise InputError(source, "binary data (NUL byte), expected probe output")
    lines = stdout.replace("\r\n", "\n").split("\n")
    if not any(s.startswith("TWPROBE ") for s in lines):
        raise InputError(source, "no TWPROBE marker: not tunnelwatch probe output")
    begin, end, reasons = _frame(lines)
    markers: dict[str, re.Match[str]] = {}
    for what, i in (("BEGIN", begin), ("END", end)):
        if i >= 0:
            m = _MARKER.match(lines[i])
            if m is None or m["what"] != what:
                raise InputError(source, f"malformed {what} marker {excerpt(lines[i])}", line=i + 1)
            markers[what] = m
    versions = {int(m["v"]) for m in markers.values()}
    if versions - {FORMAT_VERSION}:
        reasons.append(f"format version {sorted(versions)} is not {FORMAT_VERSION}")
    mode = markers["BEGIN"]["arg"] if "BEGIN" in markers else None
    if reasons:
        return ProbeReport(complete=False, reasons=tuple(reasons), mode=mode)
    records = lines[begin + 1 : end]
    expected = _int(markers["END"]["arg"])
    if expected != len(records):
        reason = f"END counts {markers['END']['arg']} records, {len(records)} are present"
        return ProbeReport(complete=False, reasons=(reason,), mode=mode)
    notes = []
    if any(s.strip() for s in lines[:begin] + lines[end + 1 :]):
        notes.append("text outside the BEGIN/END markers ignored")
    return _records(records, begin + 2, source, mode, tuple(notes))


def _records(
    records: list[str], first_line: int, source: str, mode: str | None, notes: tuple[str, ...]
) -> ProbeReport:
    values: dict[str, object] = {}
    addresses: list[tuple[str, str]] = []
    errors: list[ProbeError] = []
    components: list[Component] = []
    rulesets: list[RulesetCapture] = []
    nc_lines: list[str] = []
    api_lines: list[str] = []
    tunnel_lines: list[str] = []
    notes_seen: list[str] = list(notes)
    tls: TlsCheck | None = None
    crictl: bool | None = None
    for number, record in enumerate(records, start=first_line):
        key, *fields = record.split("\t")
        if key not in _FIELDS:
            raise InputError(source, f"unknown record {excerpt(key)}", line=number)
        low, high = _FIELDS[key]
        if not low <= len(fields) <= high:
            raise InputError(
                source,
                f"record {excerpt(key)}: {len(fields)} fields, expected {low}-{high}",
                line=number,
            )
        if key == "error":
            errors.append(ProbeError(fields[0], fields[1]))
        elif key == "note":
            notes_seen.append(f"{fields[0]}: {fields[1]}")
        elif key == "tool":
            values["nc"] = fields[0].removeprefix("nc=")
            values["tools"] = tuple(fields[1].split())
        elif key == "host":
            values["hostname"] = fields[0]
        elif key == "addr":
            addresses.append((fields[0], fields[1]))
        elif key == "os":
            values.update(os_id=fields[0], os_version=fields[1], kernel=fields[2])
        elif key == "nc":
            nc_lines.append(fields[0])
        elif key == "api":
            api_lines.append(fields[0])
        elif key == "tunnel":
            tunnel_lines.append(fields[0])
        elif key == "tls":
            tls = _tls(fields)
        elif key == "toolarge":
            errors.append(_too_large(fields, source, number))
        elif key == "reach":
            if "reach" in values:
                raise InputError(source, "a second reach record", line=number)
            values["reach"] = _reach(fields, source, number)
        elif key == "ncgz":
            try:
                nc_lines.extend(_unpack(fields[0]).splitlines())
            except ValueError as exc:
                errors.append(ProbeError("ncgz", f"corrupt connection-test blob: {exc}"))
        elif key == "component":
            if fields[0] == "-" and fields[1] == "absent":
                crictl = False
                continue
            crictl = True
            f = [*fields, "", "", "", "", "", ""]
            finished = _dash(f[5])
            components.append(
                Component(
                    f[0], f[1], _int(f[2]), _int(f[3]), _dash(f[4]),
                    "" if finished == _ZERO_TIME else finished, _dash(f[6]), _dash(f[7]),
                )
            )  # fmt: skip
        elif key == "ufw":
            if fields[0] == "absent":
                values["ufw_present"] = False
                continue
            values["ufw_present"] = True
            try:
                values["ufw_status"] = _unpack(fields[0])
            except ValueError as exc:
                errors.append(ProbeError("ufw", f"corrupt ufw status: {exc}"))
        elif key == "ruleset":
            counts = [_count(x) for x in fields[2:]] + [None, None, None]
            try:
                rulesets.append(RulesetCapture(fields[0], _unpack(fields[1]), *counts[:3]))
            except ValueError as exc:
                errors.append(ProbeError(f"ruleset {fields[0]}", f"corrupt ruleset: {exc}"))
    tools = _tools(values.get("tools"))
    if crictl is None and "tools" in values:
        crictl = "crictl" in tools  # crictl ran and found no tunnel container, or is missing

    # The lines are whole records of a whole output (END counted them); which targets a
    # report must hold is decided with the `reach` counts (target_results), not here.
    def read(lines: list[str], what: str) -> netcat.NetcatReport | None:
        return netcat.analyze("\n".join(lines), f"{source} ({what})", whole=True) if lines else None

    targets, api, tunnel = (
        read(nc_lines, "10250"),
        read(api_lines, "api"),
        read(tunnel_lines, "9000"),
    )
    return ProbeReport(
        complete=True,
        version=FORMAT_VERSION,
        mode=mode,
        hostname=_str(values.get("hostname")),
        addresses=tuple(addresses),
        os_id=_str(values.get("os_id")),
        os_version=_str(values.get("os_version")),
        kernel=_str(values.get("kernel")),
        nc=_str(values.get("nc")),
        tools=tools,
        targets=targets,
        reach=_reach_of(values.get("reach")),
        api=api,
        tls=tls,
        tunnel=tunnel,
        crictl_present=crictl,
        components=tuple(components),
        ufw_present=_bool(values.get("ufw_present")),
        ufw_status=_str(values.get("ufw_status")),
        rulesets=tuple(rulesets),
        errors=tuple(errors),
        notes=tuple(notes_seen),
    )


def _reach_of(v: object) -> Reach | None:
    return v if isinstance(v, Reach) else None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _bool(v: object) -> bool | None:
    return v if isinstance(v, bool) else None


def _tools(v: object) -> tuple[str, ...]:
    return tuple(t for t in v if isinstance(t, str)) if isinstance(v, tuple) else ()


def _dash(v: str) -> str:
    return "" if v == "-" else v  # the script prints "-" for an empty field


def _count(v: str) -> int | None:
    return int(v) if re.fullmatch(r"\d{1,9}", v) else None  # "-": the node could not reduce


def _tls(f: list[str]) -> TlsCheck:
    name = {"yes": True, "no": False}.get(f[6])
    return TlsCheck(f[0], f[1], f[2], _dash(f[3]), _dash(f[4]), _dash(f[5]), name)


def _too_large(f: list[str], source: str, line: int) -> ProbeError:
    """`toolarge <record> <backend or -> <bytes>`: a blob the script's size guard left out."""
    size = _count(f[2])
    if f[0] not in ("ruleset", "ufw") or size is None:
        raise InputError(source, f"bad toolarge record {excerpt('|'.join(f))}", line=line)
    subject = "ufw" if f[0] == "ufw" else f"ruleset {f[1]}"
    return ProbeError(
        subject,
        f"too large to fit the 4,096-byte run-command output ({size} bytes compressed); "
        "left out so that the rest of the report arrives",
        too_large=size,
    )


def _reach(f: list[str], source: str, line: int) -> Reach:
    """`reach <targets> <digest> <tested> <open> <named> <all|cut>`, checked for consistency."""
    counts = [_count(x) for x in (f[0], f[2], f[3], f[4])]
    bad = f"bad reach record {'|'.join(f)[:80]!r}"
    if None in counts or not re.fullmatch(r"[0-9a-f]{8}", f[1]) or f[5] not in ("all", "cut"):
        raise InputError(source, bad, line=line)
    targets, tested, opened, named = (c or 0 for c in counts)
    r = Reach(targets, f[1], tested, opened, named)
    if not (opened <= tested <= targets and named <= r.failed) or r.cut != (f[5] == "cut"):
        raise InputError(source, f"{bad}: the counts do not add up", line=line)
    return r


def targets_digest(addresses: Iterable[str]) -> str:
    """The script's digest of a target list (IPv4, as sent): the sum, mod 2**32, of
    h ^ (h >> 16) with h = (address * 2654435761) mod 2**32. Order does not matter."""
    total = 0
    for text in addresses:
        h = (int(ipaddress.IPv4Address(text)) * 2654435761) & 0xFFFFFFFF
        total = (total + (h ^ (h >> 16))) & 0xFFFFFFFF
    return f"{total:08x}"


@dataclass(frozen=True, slots=True)
class TargetResults:
    """The kubelet targets of one run, read against the list that was sent.

    `statuses` holds every target whose outcome the report decides (named ones as the
    netcat lines say; the others OPEN only when the `reach` counts prove it); `gaps` says why
    any sent target is missing from it. `unnamed` counts targets known NOT open but not named
    (a cut output), `untested` those that got no result.
    """

    statuses: Mapping[str, netcat.Status]
    gaps: tuple[str, ...] = ()
    unnamed: int = 0
    untested: int = 0


def _named(report: ProbeReport) -> dict[str, netcat.Status]:
    results = report.targets.results if report.targets is not None else ()
    return {r.target.host or "": r.status for r in results}


def target_results(report: ProbeReport, sent: Sequence[str]) -> TargetResults:
    """Every sent target's outcome that `report` decides, and what it leaves undecided.

    `sent`: the addresses of TW_TARGETS, as sent (unique; order does not matter). A target
    absent from the output is read as OPEN only when the report has a `reach` record whose
    count and digest match `sent`, whose named targets are exactly the failures it counts,
    and that tested every target: never from silence alone.
    """
    named = _named(report)
    reach = report.reach
    if reach is None:  # an older output: every tested target has its own lines
        missing = [t for t in sent if t not in named]
        why = ("targets without a result: " + ", ".join(missing[:20]),) if missing else ()
        return TargetResults(MappingProxyType(named), why, 0, len(missing))
    problems = []
    try:
        digest = targets_digest(sent)
    except ValueError:
        digest = "-"
    if reach.targets != len(sent) or reach.digest != digest:
        problems.append(
            f"the probe tested another target list ({reach.targets} targets, digest "
            f"{reach.digest}) than was sent ({len(sent)}, digest {digest})"
        )
    strangers = sorted(set(named) - set(sent))
    if len(named) != reach.named or strangers:
        problems.append(
            f"the output names {len(named)} targets, its summary {reach.named}"
            + (f"; not sent: {', '.join(strangers[:5])}" if strangers else "")
        )
    if problems:
        return TargetResults(MappingProxyType(named), tuple(problems), 0, len(sent))
    gaps: list[str] = []
    unnamed = reach.failed - reach.named
    untested = reach.targets - reach.tested
    if unnamed:
        gaps.append(
            f"{reach.failed} of {reach.targets} targets not reachable, {reach.named} named: the "
            "others did not fit the 4,096-byte output"
        )
    if untested:
        gaps.append(f"{untested} of {reach.targets} targets not tested (time budget)")
    statuses = dict(named)
    if not gaps:  # every target not named was tested and open
        statuses.update((t, netcat.Status.OPEN) for t in sent if t not in named)
    return TargetResults(MappingProxyType(statuses), tuple(gaps), unnamed, untested)
