"""Reading `iptables --list` output (-L, with or without -n, -v, --line-numbers).

The listing is translated back into `iptables -S` words (`tcp dpt:10250` becomes
`-m tcp --dport 10250`, `ctstate NEW` becomes `-m conntrack --ctstate NEW` ...) and compiled by
the same code as the other formats. What cannot be translated stays in the rule as an
undecided match, never dropped. Without -v the listing hides interfaces: a rule that shows no
match at all (typically `-i lo -j ACCEPT`) is then undecided, and the ruleset carries a caveat.
"""

from __future__ import annotations

import re

from shared.analysis.iptables.compile import compile_words
from shared.analysis.iptables.conds import SERVICES, TCP_FLAGS, ConstCond, TcpFlagsCond
from shared.analysis.iptables.model import (
    BUILTIN_CHAINS,
    HIDDEN_IFACE,
    HIDDEN_LO,
    Chain,
    Entry,
    IptablesRuleset,
    Rule,
    Table,
)
from shared.analysis.iptables.modules import RuleError
from shared.analysis.iptables.parse_save import _infer_table, unfinished_line
from shared.analysis.iptables.tokenize import Quoted, TokenError, split_words
from shared.errors import InputError, excerpt

__all__ = ["parse_list"]

_HEADER = re.compile(r"Chain (\S+) \((?:policy (ACCEPT|DROP)\b[^)]*|\d+ references?)\)\Z")
_OPT = frozenset(("--", "-f", "!f", "!-"))
# A colon before any other colon-or-hex character: `[0-9a-fA-F:]*::?` backtracked on long runs.
_V6 = re.compile(r"\s!?[0-9a-fA-F]*:[0-9a-fA-F:]*/\d+\s")
_V4 = re.compile(r"\s!?\d+\.\d+\.\d+\.\d+(?:/\d+)?\s")
_PROTO_MODULES = ("tcp", "udp", "sctp", "udplite", "dccp")
_ANY_IFACE = {"any": "*"}
_PROTO_NAMES = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp"}
_NO_V_CAVEAT = (
    "iptables --list without -v hides interfaces (-i/-o): any rule may have one, so a rule "
    "the packet would otherwise match is undecided; "
    "use `iptables -L -n -v --line-numbers` or iptables-save for a sure answer"
)


# The column layout travels with each raw rule line as one leading digit of these bits.
_NUMBERS = 1  # --line-numbers: a `num` column first
_VERBOSE = 2  # -v: `pkts bytes` before the target, `in out` after opt
_ANY_IS_ALL = 4  # -v without -n: an interface column `any` means no interface (as `*` with -n)
# `-n` prints the whole address space as 0.0.0.0/0 or ::/0 (without -n: `anywhere`).
_NUMERIC_ANY = re.compile(r"(?<!\S)(?:0\.0\.0\.0/0|::/0)(?!\S)")


class _Layout:
    """Which columns the listing has, from its header line."""

    def __init__(self, header: str, any_is_all: bool) -> None:
        cols = header.split()
        self.numbers = cols[:1] == ["num"]
        self.verbose = "pkts" in cols
        self.bits = (
            (_NUMBERS if self.numbers else 0)
            | (_VERBOSE if self.verbose else 0)
            | (_ANY_IS_ALL if any_is_all and self.verbose else 0)
        )


def parse_list(
    text: str,
    source: str,
    *,
    table: str | None = None,
    family: int | None = None,
    ended: bool = False,
) -> list[IptablesRuleset]:
    """The ruleset of an `iptables --list` capture.

    Hints from the command line the paste showed (shared/analysis/paste.py): `table` (its
    `-t`), which a lone chain's listing does not show (`-t mangle -L INPUT` looks like filter's
    INPUT); `family` (6 for ip6tables) when no address tells; `ended` when a prompt followed
    the output, so the command had finished and its last chain ended there."""
    blocks: list[dict[str, Chain]] = [{}]
    layouts: list[_Layout] = []
    chain: Chain | None = None
    layout: _Layout | None = None
    lines = text.split("\n")
    partial = unfinished_line(lines)
    # The chain no blank line or `Chain` header has closed yet: iptables --list prints a blank
    # line before every chain but the first, so a chain followed by one was listed whole.
    unclosed: Chain | None = None
    # iptables -L -v prints `any` for a rule without interface unless -n is given (then `*`);
    # an interface really named "any" only reads as such in a listing made with -n.
    any_is_all = _NUMERIC_ANY.search(text) is None
    for idx, raw in enumerate(lines):
        n = idx + 1
        line = raw.rstrip()
        if not line.strip():
            if idx < len(lines) - 1:  # not the nothing after the text's final newline
                unclosed = None
            continue
        if line.startswith("#"):
            continue
        if line.startswith("Chain "):
            m = _HEADER.match(line)
            if m is None:
                raise InputError(source, f"bad chain header {line[:60]!r}", line=n)
            name, policy = m.group(1), m.group(2)
            if name in blocks[-1]:
                blocks.append({})  # a second table's listing follows
            chain = Chain(name, policy, n, compiler=_compile_list_chain)
            blocks[-1][name] = chain
            unclosed = chain
            layout = None
            continue
        if chain is None:
            raise InputError(source, f"line outside of a chain: {line[:60]!r}", line=n)
        if layout is None:
            if "target" not in line.split() or "source" not in line.split():
                raise InputError(source, f"expected the column header, got {line[:60]!r}", line=n)
            layout = _Layout(line, any_is_all)
            layouts.append(layout)
            continue
        # The column layout travels with the line as one leading digit (see _compile_list_chain).
        chain.raw.append((n, f"{layout.bits}{line}"))
        unclosed = chain
    if not any(blocks[0]):
        raise InputError(source, "no chains in the iptables --list output")
    if ended and partial is None:
        unclosed = None  # a prompt followed the output: the last chain ended there
    if unclosed is not None:
        unclosed.cut = (
            "iptables --list prints nothing after its last chain, and no blank line or "
            "`Chain` header shows this one ended"
        )
        if partial is not None:
            unclosed.cut += f"; the last line {partial} has no newline and was not read"
    tables: dict[str, Table] = {}
    for block in blocks:
        t = _table_of(block, source, table if len(blocks) == 1 else None)
        if t.name in tables:
            first = next(iter(block.values()))
            raise InputError(
                source,
                f"two listings of table {t.name}: pass each as its own file",
                line=first.line,
            )
        tables[t.name] = t
    family = _family(text, source) or family
    verbose = all(lay.verbose for lay in layouts) if layouts else True
    caveats = () if verbose else (_NO_V_CAVEAT,)
    return [IptablesRuleset(source, "list", tables, family=family, caveats=caveats)]


def _table_of(block: dict[str, Chain], source: str, hint: str | None = None) -> Table:
    builtins = {name for name, c in block.items() if c.policy is not None}
    name = _infer_table(builtins)
    if hint in BUILTIN_CHAINS and builtins <= set(BUILTIN_CHAINS[hint]):
        name = hint  # the command's -t: a lone INPUT may be mangle's, a lone OUTPUT raw's
    table = Table(name, dict(block))
    for name, c in block.items():
        if c.policy is not None and name not in BUILTIN_CHAINS[table.name]:
            raise InputError(
                source, f"{name} has a policy but is not built into {table.name}", line=c.line
            )
    return table


def _family(text: str, source: str) -> int | None:
    v6 = _V6.search(text)
    v4 = _V4.search(text)
    if v6 and v4:
        raise InputError(source, "mixes IPv4 and IPv6 addresses in one listing")
    return 6 if v6 else 4 if v4 else None


def _compile_list_chain(chain: Chain, table: Table, ruleset: IptablesRuleset) -> list[Entry]:
    rules: list[Entry] = []
    for number, (n, raw) in enumerate(chain.raw, 1):
        bits, line = int(raw[0]), raw[1:]
        try:
            words, hidden_iface = _rule_words(line, number, bits)
            conds, target = compile_words(words, table.chains, ruleset.family)
        except (TokenError, RuleError) as exc:
            raise InputError(
                ruleset.source, f"in chain {chain.name} of the listing: {exc}", line=n
            ) from None
        if hidden_iface:
            conds += (ConstCond(None, hidden_iface),)
        text = " ".join(["-A", chain.name, *(_quote(w) for w in words)])
        rules.append(Rule(number, n, text, conds, target))
    return rules


def _quote(word: str) -> str:
    if isinstance(word, Quoted) or not word or any(c.isspace() or c == '"' for c in word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def _columns(line: str, bits: int) -> tuple[list[str], str]:
    """The fixed columns (target possibly "") and the rest of the line.

    The leading columns are `num` (--line-numbers) and `pkts bytes` (-v): counters may carry
    a K/M/G/T suffix (`123M`) or, with -x, be long exact numbers; they are skipped, never read
    as the rule number."""
    verbose = bool(bits & _VERBOSE)
    lead = (1 if bits & _NUMBERS else 0) + (2 if verbose else 0)
    spans = [(m.group(), m.end()) for m in re.finditer(r"\S+", line)]
    words = [w for w, _ in spans]

    def at(i: int) -> str:
        if i >= len(words):
            raise RuleError("too few columns")
        return words[i]

    i = lead
    if at(i + 1) in _OPT:
        target, prot, opt = "", at(i), at(i + 1)
        i += 2
    elif at(i + 2) in _OPT:
        target, prot, opt = at(i), at(i + 1), at(i + 2)
        i += 3
    else:
        raise RuleError("cannot find the target/prot/opt columns")
    iface_in = iface_out = "*"
    if verbose:
        iface_in, iface_out = at(i), at(i + 1)
        i += 2
    src, dst = at(i), at(i + 1)
    end = spans[i + 1][1]
    if verbose and bits & _ANY_IS_ALL:
        iface_in, iface_out = (_ANY_IFACE.get(v, v) for v in (iface_in, iface_out))
    num = words[0] if bits & _NUMBERS else ""
    if num and not num.isdigit():
        raise RuleError(f"rule number {excerpt(num)} is not a number")
    cols = [num, target, prot, opt]
    return [*cols, iface_in, iface_out, src, dst], line[end:].strip()


def _rule_words(line: str, number: int, bits: int) -> tuple[list[str], str]:
    """The -S words of a listed rule, and why its hidden interface may matter ("" when the
    listing shows interfaces)."""
    verbose = bool(bits & _VERBOSE)
    cols, rest = _columns(line, bits)
    num, target, prot, opt, iface_in, iface_out, src, dst = cols
    if num and int(num) != number:
        raise RuleError(f"rule number {num} where {number} was expected (a truncated listing?)")
    words: list[str] = []
    for flag, value, anyv in (
        ("-s", src, ("anywhere", "0.0.0.0/0", "::/0")),
        ("-d", dst, ("anywhere", "0.0.0.0/0", "::/0")),
        ("-i", iface_in, ("*",)),
        ("-o", iface_out, ("*",)),
    ):
        bare = value.lstrip("!")
        if bare not in anyv:
            words += [*(("!",) if value.startswith("!") else ()), flag, bare]
    if prot not in ("all", "0"):
        neg = prot.startswith("!")
        name = _PROTO_NAMES.get(prot.lstrip("!"), prot.lstrip("!"))
        words += [*(("!",) if neg else ()), "-p", name]
    if opt == "-f":
        words.append("-f")
    elif opt == "!f":
        words += ["!", "-f"]
    goto = rest.startswith("[goto]")
    if goto:
        rest = rest[len("[goto]") :].strip()
    comments, rest = _comments(rest)
    extra = split_words(rest)
    extra, target_words = _target_options(target, extra)
    words += _translate(extra)
    # Without -v any rule may have an -i (or -o) the listing does not show: every rule is
    # undecided on it. `-i lo -j ACCEPT` lists as a rule matching everything (the loopback
    # rule distributions put first in INPUT): the likely reading evaluate.py offers.
    hidden = ""
    if not verbose:
        hidden = HIDDEN_LO if not words and target == "ACCEPT" else HIDDEN_IFACE
    for c in comments:
        words += ["-m", "comment", "--comment", Quoted(c)]
    if target:
        words += ["-g" if goto else "-j", target, *target_words]
    return words, hidden


def _comments(rest: str) -> tuple[list[str], str]:
    """The `/* ... */` comments of a listed rule, and the rule with each replaced by a space.

    With str.find: a lazy regular expression scanned to the end of the line from every
    unclosed "/* " (quadratic on a crafted line)."""
    comments: list[str] = []
    parts: list[str] = []
    i = 0
    while (start := rest.find("/* ", i)) >= 0:
        end = rest.find(" */", start + 3)
        if end < 0:
            break
        comments.append(rest[start + 3 : end])
        parts += [rest[i:start], " "]
        i = end + 3
    parts.append(rest[i:])
    return comments, "".join(parts)


def _target_options(target: str, words: list[str]) -> tuple[list[str], list[str]]:
    """Splits the target's printed options off the end and turns them into -S words."""
    markers = {
        "REJECT": "reject-with",
        "DNAT": "to:",
        "SNAT": "to:",
        "REDIRECT": "redir",
        "MASQUERADE": "masq",
        "NFLOG": "nflog",
    }
    start = None
    if target in markers:
        start = next((i for i, w in enumerate(words) if w.startswith(markers[target])), None)
    elif target:
        start = next((i for i in range(len(words) - 1, -1, -1) if words[i] == target), None)
        if target == "CT" and start is None:
            start = next((i for i, w in enumerate(words) if w == "NOTRACK"), None)
    if start is None:
        return words, []
    opts = words[start:]
    words = words[:start]
    if target in ("MARK", "CONNMARK"):
        return words, _mark_options(target, opts[1:])
    if target == "REJECT" and len(opts) == 2:
        return words, ["--reject-with", opts[1]]
    if target == "CT":
        return words, ["--notrack"] if opts[-1:] in (["notrack"], ["NOTRACK"]) else []
    return words, []


def _mark_options(target: str, opts: list[str]) -> list[str]:
    ops = {
        "set": "--set-mark",
        "xset": "--set-xmark",
        "and": "--and-mark",
        "or": "--or-mark",
        "xor": "--xor-mark",
    }
    if len(opts) == 2 and opts[0] in ops:
        return [ops[opts[0]], opts[1]]
    if target == "CONNMARK" and opts in (["save"], ["restore"]):
        return [f"--{opts[0]}-mark"]
    raise RuleError(f"cannot read the {target} target: {' '.join(opts)!r}")


def _port(text: str) -> str:
    """A listed port (or range a:b) with service names turned into numbers where known."""
    out = []
    for part in text.split(":"):
        out.append(str(SERVICES[part]) if part in SERVICES else part)
    return ":".join(out)


def _flag_names(text: str) -> str:
    """TCP flags as iptables -S writes them: `-n` prints 0x17 for FIN,SYN,RST,ACK."""
    value = TcpFlagsCond.flags(text) if text.startswith("0x") else None
    if value is None:
        return text
    names = [name for name, bit in TCP_FLAGS.items() if value & bit]
    return ",".join(names) if names else "NONE"


def _translate(words: list[str]) -> list[str]:
    """The -S words of the listed matches; whatever is not understood stays undecided."""
    out: list[str] = []
    i, n = 0, len(words)
    neg = False

    def bang(value: str) -> tuple[list[str], str]:
        return (["!"], value[1:]) if value.startswith("!") else ([], value)

    while i < n:
        w = words[i]
        nxt = words[i + 1] if i + 1 < n else ""
        if w == "!":
            neg = True
            i += 1
            continue
        pre = ["!"] if neg else []
        neg = False
        if w in _PROTO_MODULES:
            out += ["-m", w]
            i += 1
            while i < n and words[i].partition(":")[0] in ("dpt", "dpts", "spt", "spts", "flags"):
                key, _, value = words[i].partition(":")
                b, value = bang(value)
                if key == "flags":
                    mask, _, comp = value.partition("/")
                    out += [*b, "--tcp-flags", _flag_names(mask), _flag_names(comp)]
                else:
                    out += [*b, "--dport" if key[0] == "d" else "--sport", _port(value)]
                i += 1
        elif w == "multiport" and nxt in ("dports", "sports", "ports") and i + 2 < n:
            b, value = bang(words[i + 2])
            ports = ",".join(_port(p) for p in value.split(","))
            out += ["-m", "multiport", *b, f"--{nxt}", ports]
            i += 3
        elif (
            w
            in (
                "ctstate",
                "state",
                "ctstatus",
                "ctorigsrc",
                "ctorigdst",
                "ctreplsrc",
                "ctrepldst",
                "ctproto",
                "ctorigsrcport",
                "ctorigdstport",
                "ctdir",
            )
            and nxt
        ):
            module = "state" if w == "state" else "conntrack"
            out += ["-m", module, *pre, f"--{w}", nxt]
            i += 2
        elif w in ("mark", "connmark") and nxt == "match" and i + 2 < n:
            i += 2
            if words[i] == "!":
                pre, i = ["!"], i + 1
            if i >= n:
                break
            out += ["-m", w, *pre, "--mark", words[i]]
            i += 1
        elif w == "ADDRTYPE" and nxt == "match":
            out += ["-m", "addrtype"]
            i += 2
            while i + 1 < n and words[i] in ("src-type", "dst-type"):
                b, value = bang(words[i + 1])
                out += [*b, f"--{words[i]}", value]
                i += 2
        elif w in ("source", "destination") and words[i + 1 : i + 3] == ["IP", "range"]:
            i += 3
            if i < n and words[i] == "!":
                pre, i = ["!"], i + 1
            if i >= n:
                break
            out += [
                "-m",
                "iprange",
                *pre,
                "--src-range" if w == "source" else "--dst-range",
                words[i],
            ]
            i += 1
        elif w == "match-set" and i + 2 < n:
            out += ["-m", "set", *pre, "--match-set", words[i + 1], words[i + 2]]
            i += 3
        elif w == "PKTTYPE" and nxt in ("=", "!=") and i + 2 < n:
            out += ["-m", "pkttype", *(["!"] if nxt == "!=" else []), "--pkt-type", words[i + 2]]
            i += 3
        else:
            # Not understood: keep it as an undecided match, with the text as listed.
            out += ["-m", "listed", "--text", Quoted(" ".join(pre + words[i:]))]
            break
    return out
