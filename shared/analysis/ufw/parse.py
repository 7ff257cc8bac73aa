"""Reads `ufw status`, `ufw status verbose` and `ufw status numbered` captures.

ufw pads its columns (`%-26s %-12s%-26s`) but real captures lose that: long IPv6 cells push
the action right, copies turn spaces into tabs, Windows adds CR. So a rule line is read by
TOKENS: the action keyword (ALLOW/DENY/REJECT/LIMIT, optionally followed by IN/OUT/FWD) is
the anchor; what is left of it is the To side, what is right is the From side, then the
attributes `(log)`/`(log-all)`/`(out)` and a `# comment`.

Shapes of one side, as ufw 0.36 prints them (see ufw's backend_iptables.get_status):
    Anywhere | Anywhere/tcp | ADDR | ADDR/tcp | [ADDR ]PORTS[/proto] | [ADDR ]APP
    [ADDR ]PORTS/proto (APP)            verbose application rules
each optionally followed by ` (v6)` (inside the app parentheses for verbose apps) and
` on IFACE`. PORTS is `22`, `22,10250`, `10000:10300` or a mix.

Rule numbers are ufw's own (what `ufw delete N` takes): read from `[ N]` when numbered;
otherwise recounted as ufw counts them (every IPv4 rule, in, out and routed, then every IPv6
rule; rows of one application rule count once). Plain and verbose captures list IN rules
before OUT and routed ones, so the interleaving is lost: when a family has OUT or routed
rules, its numbers are unknown (None) rather than guessed.

The texts ufw and the shell print instead of a status are recognised too: `ERROR: ...`
(for instance `ERROR: You need to be root to run this script`) gives state UNREADABLE, and
`ufw: command not found` (and its dash/sudo/command-not-found variants) NOT_INSTALLED.
Anything else that is not a status line is an InputError naming the line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from shared.analysis.ufw.model import (
    Action,
    Direction,
    IPNetwork,
    Policy,
    PortSet,
    Side,
    State,
    StatusFormat,
    UfwRule,
    UfwStatus,
)
from shared.errors import InputError, excerpt

__all__ = ["parse_status"]

_ACTIONS = {a.value.upper(): a for a in Action}
_DIRECTIONS = {d.value.upper(): d for d in Direction}
_ATTRIBUTES = frozenset({"log", "log-all", "out"})
_NUMBER = re.compile(r"\[\s*([0-9]{1,6})\s*\]")
_STATUS = re.compile(r"status:\s*(\S+)", re.IGNORECASE)
_DEFAULT = re.compile(
    r"Default:\s*([a-z]+)\s*\(incoming\)\s*,\s*([a-z]+)\s*\(outgoing\)"
    r"(?:\s*,\s*([a-z]+)\s*\(routed\))?",
    re.IGNORECASE,
)
_ANYWHERE = re.compile(r"Anywhere(?:/([a-z][a-z0-9]{0,15}))?")
_PORTSPEC = re.compile(r"([0-9][0-9,:]*)(?:/([a-z][a-z0-9]{0,15}))?")
_PROTOCOL = re.compile(r"[a-z][a-z0-9]{0,15}")
_VERBOSE_APP = re.compile(r"\((.+?)( \(v6\))?\)")
_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _\-.+]*")
_NOT_INSTALLED = re.compile(
    r"(?:^|[\s:/])ufw:\s*(?:command\s+)?not\s+found"  # bash, sudo, dash
    r"|Command 'ufw' not found"  # Ubuntu's command-not-found helper
    r"|/ufw:\s*No such file or directory",
    re.IGNORECASE,
)
_UNDERLINE = ["--", "------", "----"]  # the line under `To Action From`
_MAX_PORT = 65535
_IFNAMSIZ = 15


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: str  # stripped


def parse_status(text: str, source: str, *, whole: bool = False) -> UfwStatus:
    """Parse one capture. Raises InputError (and nothing else) on text it cannot read.

    `whole`: the producer proved the capture whole (the node probe checks ufw's exit status);
    otherwise the capture may have been cut, and the rules it cannot show ended are marked
    (UfwStatus.cut4/cut6, see _cut_reasons).
    """
    lines = [
        _Line(i, raw.strip())
        for i, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1)
    ]
    # A last line without a newline may be cut mid-line (a rule before its From side's
    # prefix length ends, `10.0.0.0/1` of `10.0.0.0/16`): after the Status line it is not read.
    partial = lines[-1] if lines[-1].text and not whole else None
    content = [ln for ln in lines if ln.text]
    if not content:
        raise InputError(
            source, "empty input: expected the output of `ufw status [verbose|numbered]`"
        )

    errors = [ln for ln in content if ln.text.startswith("ERROR:")]
    if errors:
        # ufw refused or failed; whatever else was printed cannot be trusted as a status.
        reason = "; ".join(ln.text.removeprefix("ERROR:").strip() for ln in errors)
        return UfwStatus(source, State.UNREADABLE, reason=f"ufw said: {reason}")
    status_lines = [ln for ln in content if _STATUS.fullmatch(ln.text)]
    missing = [ln for ln in content if _NOT_INSTALLED.search(ln.text)]
    if missing and not status_lines:
        return UfwStatus(source, State.NOT_INSTALLED, reason=missing[0].text)
    if not status_lines:
        raise InputError(
            source,
            "no 'Status:' line: not the output of `ufw status` (run it as root with LANG=C)",
            line=content[0].number,
        )
    if len(status_lines) > 1:
        raise InputError(
            source,
            "a second 'Status:' line: two captures in one input?",
            line=status_lines[1].number,
        )
    status = _parse_body(content, status_lines[0], source, partial)
    if whole or not status.active:
        return status
    cut4, cut6 = _cut_reasons(lines, status, partial)
    return replace(status, cut4=cut4, cut6=cut6)


def _parse_body(
    content: list[_Line], status: _Line, source: str, partial: _Line | None
) -> UfwStatus:
    word = status.text.partition(":")[2].strip()
    if word.lower() not in {"active", "inactive"}:
        raise InputError(source, f"unknown status {excerpt(word)}", line=status.number)
    word = word.lower()
    before = [ln for ln in content if ln.number < status.number]
    warnings = [ln.text for ln in before if ln.text.startswith("WARN:")]
    for ln in before:
        if not ln.text.startswith("WARN:"):
            raise InputError(
                source, f"unexpected text before 'Status:': {excerpt(ln.text)}", line=ln.number
            )

    default: Policy | None = None
    default_line: int | None = None
    verbose = False
    raw_rules: list[tuple[int | None, UfwRule]] = []
    for ln in content:
        if ln.number <= status.number or ln is partial:
            continue
        t = ln.text
        if t.startswith("WARN:"):
            warnings.append(t)
        elif t.startswith(("Logging:", "New profiles:")):
            verbose = True
        elif t.startswith("Default:"):
            default, default_line, verbose = _parse_default(ln, source), ln.number, True
        elif t.split() == ["To", "Action", "From"] or t.split() == ["--", "------", "----"]:
            continue
        else:
            raw_rules.append(_parse_rule(ln, source))

    if word == "inactive":
        if raw_rules or default is not None:
            raise InputError(
                source,
                "rules or defaults listed under 'Status: inactive'",
                line=raw_rules[0][1].line if raw_rules else default_line,
            )
        return UfwStatus(source, State.INACTIVE, warnings=tuple(warnings))

    numbered = [n is not None for n, _ in raw_rules]
    if any(numbered):
        if not all(numbered):
            first = next(r for n, r in raw_rules if n is None)
            raise InputError(source, "a rule without '[N]' in a numbered listing", line=first.line)
        if verbose:
            raise InputError(
                source, "a numbered listing mixed with verbose lines", line=raw_rules[0][1].line
            )
        fmt = StatusFormat.NUMBERED
        rules = _explicit_numbers(raw_rules, source)
    else:
        fmt = StatusFormat.VERBOSE if verbose else StatusFormat.PLAIN
        rules = _recount(tuple(r for _, r in raw_rules), dedupe_apps=verbose)
    return UfwStatus(
        source,
        State.ACTIVE,
        format=fmt,
        rules=rules,
        default_incoming=default,
        default_line=default_line,
        warnings=tuple(warnings),
    )


def _cut_reasons(lines: list[_Line], status: UfwStatus, partial: _Line | None) -> tuple[str, str]:
    """Why the IN rules of IPv4 and of IPv6 may go on past the capture ("" when it shows
    they ended).

    ufw prints its rules under a `To Action From` header and its `--` underline, and ends
    the listing with a blank line; with no rules it prints no table at all, and nothing marks
    the end. Plain and verbose listings print every IN rule first, IPv4 before IPv6, then a
    blank line and the OUT rules, then the routed ones; a numbered listing prints ufw's own
    order, every IPv4 rule (in, out, routed) before every IPv6 rule. So a family's IN rules
    ended when a blank line follows the header, or a rule printed after them: an IPv6 rule
    for IPv4, and in plain and verbose listings an OUT or routed rule.
    """
    header = next((ln.number for ln in lines if ln.text.split() == _UNDERLINE), None)
    if header is None:
        no_table = (
            "it has no rule table: ufw prints none when there are no rules, but a capture "
            "cut before the table looks the same"
        )
        return no_table, no_table
    # The last element is what follows the final newline, not a blank line.
    ended = any(not ln.text and header < ln.number < len(lines) for ln in lines)
    sections = status.format is not StatusFormat.NUMBERED
    later = sections and any(r.direction is not Direction.IN for r in status.rules)
    v6_rules = any(r.v6 and (r.direction is Direction.IN or not sections) for r in status.rules)
    unread = (
        f"; its last line (line {partial.number}) has no newline and was not read"
        if partial is not None
        else ""
    )
    after = ", nor an OUT or routed rule (printed after the IN rules)" if sections else ""

    def why(family: str, more: str) -> str:
        return (
            f"ufw ends its rule listing with a blank line, and none follows the {family} "
            f"rules shown{more}{after}: more of them may follow{unread}"
        )

    cut6 = "" if ended or later else why("IPv6", "")
    cut4 = "" if ended or later or v6_rules else why("IPv4", ", nor an IPv6 rule")
    return cut4, cut6


def _parse_default(ln: _Line, source: str) -> Policy:
    m = _DEFAULT.fullmatch(ln.text)
    if m is None:
        raise InputError(source, f"unreadable 'Default:' line: {excerpt(ln.text)}", line=ln.number)
    word = m.group(1).lower()
    try:
        return Policy(word)
    except ValueError:
        raise InputError(
            source, f"unknown default incoming policy {excerpt(m.group(1))}", line=ln.number
        ) from None


def _explicit_numbers(raw: list[tuple[int | None, UfwRule]], source: str) -> tuple[UfwRule, ...]:
    out: list[UfwRule] = []
    last = 0
    for number, rule in raw:
        if number is None or number <= last:
            raise InputError(source, f"rule number [{number}] after [{last}]", line=rule.line)
        last = number
        out.append(_with_number(rule, number))
    return tuple(out)


def _recount(rules: tuple[UfwRule, ...], *, dedupe_apps: bool) -> tuple[UfwRule, ...]:
    """ufw's numbers for a plain or verbose listing, where they can be known."""
    seen: set[tuple[object, ...]] = set()
    counted: dict[int, bool] = {}  # index -> counts as a rule of its own
    for i, r in enumerate(rules):
        key = _app_key(r) if dedupe_apps else None
        counted[i] = key is None or key not in seen
        if key is not None:
            seen.add(key)
    v4_total = sum(1 for i, r in enumerate(rules) if not r.v6 and counted[i])
    mixed = {
        fam: any(r.direction is not Direction.IN for r in rules if r.v6 is fam)
        for fam in (False, True)
    }
    out: list[UfwRule] = []
    position = {False: 0, True: v4_total}
    last: dict[tuple[object, ...], int] = {}
    for i, r in enumerate(rules):
        key = _app_key(r) if dedupe_apps else None
        if counted[i]:
            position[r.v6] += 1
            number: int | None = position[r.v6]
            if key is not None:
                last[key] = position[r.v6]
        else:  # a further row of an application rule already counted
            number = last.get(key) if key is not None else None
        out.append(_with_number(r, None if mixed[r.v6] else number))
    return tuple(out)


def _app_key(r: UfwRule) -> tuple[object, ...] | None:
    """What ufw's get_app_tuple keys an application rule by (rows of one app count once)."""
    if r.to.app is None and r.from_.app is None:
        return None
    return (
        r.v6,
        r.direction,
        r.to.app if r.to.app is not None else r.to.ports,
        r.to.network,
        r.to.iface,
        r.from_.app if r.from_.app is not None else r.from_.ports,
        r.from_.network,
        r.from_.iface,
    )


def _with_number(rule: UfwRule, number: int | None) -> UfwRule:
    return UfwRule(
        line=rule.line,
        text=rule.text,
        to=rule.to,
        action=rule.action,
        direction=rule.direction,
        from_=rule.from_,
        protocol=rule.protocol,
        v6=rule.v6,
        number=number,
        log=rule.log,
        comment=rule.comment,
    )


def _parse_rule(ln: _Line, source: str) -> tuple[int | None, UfwRule]:
    text = ln.text
    number: int | None = None
    m = _NUMBER.match(text)
    if m is not None:
        number = int(m.group(1))
        text = text[m.end() :].strip()
    tokens = list(re.finditer(r"\S+", text))
    anchor = next((i for i in range(1, len(tokens)) if tokens[i].group() in _ACTIONS), None)
    if anchor is None:
        raise InputError(
            source,
            f"not a ufw rule (no ALLOW/DENY/REJECT/LIMIT after a To side): {excerpt(ln.text)}",
            line=ln.number,
        )
    action = _ACTIONS[tokens[anchor].group()]
    rest = anchor + 1
    direction = Direction.IN  # plain `ufw status` leaves IN out
    if rest < len(tokens) and tokens[rest].group() in _DIRECTIONS:
        direction = _DIRECTIONS[tokens[rest].group()]
        rest += 1

    after = tokens[rest:]
    comment: str | None = None
    for k, tok in enumerate(after):
        # `on #x` would be an interface named '#x'; a lone '#' after anything else opens
        # the comment, which may itself contain '#', keywords or parentheses.
        if tok.group() == "#" and (k == 0 or after[k - 1].group() != "on"):
            comment = text[tok.end() :].strip()
            after = after[:k]
            break
    from_words = [t.group() for t in after]
    attributes = _take_attributes(from_words)
    log = next((a for a in attributes if a != "out"), None)
    if not from_words:
        raise InputError(source, f"rule without a From side: {excerpt(ln.text)}", line=ln.number)

    to = _parse_side([t.group() for t in tokens[:anchor]], "To", ln, source)
    from_ = _parse_side(from_words, "From", ln, source)
    if direction is Direction.IN and from_.iface is not None:
        raise InputError(source, "an IN rule with an outgoing interface", line=ln.number)
    if "out" in attributes and direction is not Direction.OUT:
        raise InputError(source, "'(out)' on a rule that is not OUT", line=ln.number)
    protocols = {p for p in (to.protocol, from_.protocol) if p is not None}
    if len(protocols) > 1:
        raise InputError(
            source, f"the two sides name different protocols {sorted(protocols)}", line=ln.number
        )
    if protocols:
        protocol = protocols.pop()
    elif (to.app is not None and to.ports is None) or (
        from_.app is not None and from_.ports is None
    ):
        protocol = "app"  # plain listings hide an application's protocols
    else:
        protocol = "any"
    families = {n.version for n in (to.network, from_.network) if n is not None}
    if len(families) > 1:
        raise InputError(source, "IPv4 and IPv6 addresses in one rule", line=ln.number)
    v6 = to.v6_marker or from_.v6_marker or families == {6}
    if v6 and families == {4}:
        raise InputError(source, "'(v6)' on a rule with IPv4 addresses", line=ln.number)
    rule = UfwRule(
        line=ln.number,
        text=" ".join(ln.text.split()),
        to=to,
        action=action,
        direction=direction,
        from_=from_,
        protocol=protocol,
        v6=v6,
        log=log,
        comment=comment,
    )
    return number, rule


def _take_attributes(words: list[str]) -> tuple[str, ...]:
    """Remove a trailing `(log)`, `(log-all)`, `(out)` or `(log, out)` group from words."""
    for size in (1, 2):
        if len(words) <= size:
            break
        group = " ".join(words[-size:])
        if not (group.startswith("(") and group.endswith(")")):
            continue
        names = tuple(w.strip() for w in group[1:-1].split(","))
        if names and all(n in _ATTRIBUTES for n in names):
            del words[-size:]
            return names
    return ()


def _parse_side(words: list[str], name: str, ln: _Line, source: str) -> Side:
    def bad(why: str) -> InputError:
        return InputError(source, f"{name} side {excerpt(' '.join(words))}: {why}", line=ln.number)

    text = " ".join(words)
    rest = list(words)
    iface: str | None = None
    if len(rest) >= 2 and rest[-2] == "on":
        iface = rest[-1]
        del rest[-2:]
        if len(iface) > _IFNAMSIZ or "/" in iface:
            raise bad(f"{iface!r} is not an interface name")
    v6_marker = bool(rest) and rest[-1] == "(v6)"
    if v6_marker:
        rest.pop()
    if not rest:
        raise bad("empty")

    network: IPNetwork | None = None
    protocol: str | None = None
    anywhere = _ANYWHERE.fullmatch(rest[0])
    if anywhere is not None:
        if len(rest) > 1:
            raise bad("text after 'Anywhere'")
        return Side(text, protocol=anywhere.group(1), iface=iface, v6_marker=v6_marker)
    address = _parse_address(rest[0])
    if address is not None:
        network, protocol = address
        rest.pop(0)
        if not rest:
            return Side(text, network, protocol=protocol, iface=iface, v6_marker=v6_marker)
        if protocol is not None:
            raise bad("text after an address with a protocol")

    spec = _PORTSPEC.fullmatch(rest[0])
    if spec is None:
        app_name = " ".join(rest)
        if _APP_NAME.fullmatch(app_name) is None:
            raise bad(f"{excerpt(app_name)} is neither ports nor an application name")
        return Side(text, network, app=app_name, iface=iface, v6_marker=v6_marker)
    ports = _parse_ports(spec.group(1))
    if ports is None:
        raise bad(f"{excerpt(spec.group(1))} are not ports")
    protocol = spec.group(2)
    rest.pop(0)
    app: str | None = None
    if rest:
        verbose_app = _VERBOSE_APP.fullmatch(" ".join(rest))
        if verbose_app is None or _APP_NAME.fullmatch(verbose_app.group(1)) is None:
            raise bad(f"unexpected {excerpt(' '.join(rest))} after the ports")
        app = verbose_app.group(1)
        v6_marker = v6_marker or verbose_app.group(2) is not None
    if protocol not in {None, "tcp", "udp"}:
        raise bad(f"ports with protocol {protocol!r}")
    return Side(text, network, ports, app, protocol, iface, v6_marker)


def _parse_address(word: str) -> tuple[IPNetwork, str | None] | None:
    """`10.0.0.0/8`, `10.0.0.1`, `2001:db8::/32` and the same with `/proto` appended."""
    candidates: list[tuple[str, str | None]] = [(word, None)]
    head, sep, tail = word.rpartition("/")
    if sep and _PROTOCOL.fullmatch(tail):
        candidates.append((head, tail))
    for address, protocol in candidates:
        try:
            return ipaddress.ip_network(address, strict=False), protocol
        except ValueError:
            continue
    return None


def _parse_ports(spec: str) -> PortSet | None:
    ranges: list[tuple[int, int]] = []
    for item in spec.split(","):
        lo_text, sep, hi_text = item.partition(":")
        if not lo_text or (sep and not hi_text) or len(lo_text) > 5 or len(hi_text) > 5:
            return None
        if ":" in hi_text:
            return None
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
        if not 0 <= lo <= hi <= _MAX_PORT:
            return None
        ranges.append((lo, hi))
    return PortSet(tuple(ranges))
