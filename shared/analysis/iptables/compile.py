"""Compiling rule lines (`-A CHAIN ...`, as iptables-save and iptables -S print them) into Rules.

The walk splits the words into generic options (-p -s -d -i -o -f), match modules (-m NAME
and the options after it) and the target (-j/-g NAME and its options); modules.py says what
each module and target means. A rule iptables would refuse raises InputError naming the line.
"""

from __future__ import annotations

from shared.analysis.iptables.conds import AddrCond, ConstCond, IfaceCond, Net, ProtoCond, parse_net
from shared.analysis.iptables.model import (
    PROTOCOLS,
    Chain,
    Cond,
    Ctx,
    Entry,
    IptablesRuleset,
    PendingRule,
    Rule,
    Table,
    Target,
    TargetKind,
)
from shared.analysis.iptables.modules import Opt, RuleError, match_conds, parse_target
from shared.analysis.iptables.tokenize import Quoted, TokenError, split_words
from shared.errors import InputError, excerpt

__all__ = ["SKIP_MARK", "compile_chain", "compile_words", "finish_rule"]

_GENERIC = {
    "-p": "-p",
    "--protocol": "-p",
    "-s": "-s",
    "--source": "-s",
    "--src": "-s",
    "-d": "-d",
    "--destination": "-d",
    "--dst": "-d",
    "-i": "-i",
    "--in-interface": "-i",
    "-o": "-o",
    "--out-interface": "-o",
    "-f": "-f",
    "--fragment": "-f",
    "-m": "-m",
    "--match": "-m",
    "-j": "-j",
    "--jump": "-j",
    "-g": "-g",
    "--goto": "-g",
    "-c": "-c",
    "--set-counters": "-c",
}


def _is_option(word: str) -> bool:
    if isinstance(word, Quoted) or len(word) < 2 or word[0] != "-":
        return False
    return not word[1].isdigit()  # "-1" is a value


def _walk(words: list[str]) -> list[Opt]:
    """The options of a rule in order, each with its negation and arguments."""
    opts: list[Opt] = []
    i, n = 0, len(words)
    neg = False
    while i < n:
        w = words[i]
        if w == "!" and not isinstance(w, Quoted):
            if neg:
                raise RuleError("two '!' in a row")
            neg = True
            i += 1
            continue
        if not _is_option(w):
            raise RuleError(f"unexpected word {excerpt(w)} (expected an option)")
        i += 1
        start = i
        while i < n and not _is_option(words[i]) and not (words[i] == "!" and i > start):
            i += 1
        args = words[start:i]
        if args and args[0] == "!" and not isinstance(args[0], Quoted):  # old "-s ! addr"
            neg = not neg
            args = args[1:]
        opts.append(Opt(w, neg, tuple(args)))
        neg = False
    if neg:
        raise RuleError("'!' at the end of the rule")
    return opts


def compile_words(
    words: list[str], chains: dict[str, Chain], family: int | None
) -> tuple[tuple[Cond, ...], Target]:
    """Conditions and target of a rule given as words after `-A CHAIN`."""
    conds: list[Cond] = []
    target = Target(TargetKind.NONE)
    module: str | None = None  # the -m (or -j) whose options follow
    module_opts: list[Opt] = []
    in_target = False
    proto_name: str | None = None

    def flush() -> None:
        nonlocal target
        if module is None:
            return
        if in_target:
            target = parse_target(module, module_opts, chains)
        else:
            conds.extend(match_conds(module, module_opts, family))

    for o in _walk(words):
        g = _GENERIC.get(o.name)
        if g is None:
            if module is None:
                # `-p tcp --dport 80` without `-m tcp`: iptables loads the protocol's module.
                if proto_name in ("tcp", "udp", "sctp", "udplite", "dccp"):
                    module, module_opts, in_target = proto_name, [], False
                else:
                    raise RuleError(f"option {o.name} outside of any -m module")
            module_opts.append(o)
            continue
        if g in ("-m", "-j", "-g"):
            if not o.args:
                raise RuleError(f"{o.name} needs a name")
            if (g != "-m" and target.kind is not TargetKind.NONE) or (in_target and g != "-m"):
                raise RuleError("two targets in one rule")
            flush()
            if g == "-g":
                name = o.arg()
                if name not in chains:
                    target = Target(
                        TargetKind.UNKNOWN,
                        name,
                        note=f"-g {name}: a chain the capture does not show",
                        unseen=True,
                    )
                else:
                    target = Target(TargetKind.GOTO, name)
                module, module_opts, in_target = None, [], False
                continue
            module, module_opts, in_target = o.args[0], [], g == "-j"
            if len(o.args) > 1:
                raise RuleError(f"{o.name} takes one name, got {excerpt(' '.join(o.args))}")
            continue
        flush()
        module, module_opts, in_target = None, [], False
        if g == "-c":
            continue
        if g == "-f":
            if o.args:
                raise RuleError("-f takes no argument")
            conds.append(ConstCond(o.neg))  # the first packet of a SYN is not a fragment
            continue
        arg = o.arg()
        if g == "-p":
            proto_name = arg.lower()
            num = int(proto_name) if proto_name.isdigit() else PROTOCOLS.get(proto_name)
            if num is None or num > 255:
                conds.append(_UnknownProto(arg, o.neg))
            else:
                conds.append(ProtoCond(num, o.neg))
        elif g in ("-s", "-d"):
            nets: list[Net] = []
            for part in arg.split(","):
                net = parse_net(part)
                if net is None:
                    if not part or ("/" in part and parse_net(part.split("/")[0]) is not None):
                        raise RuleError(f"bad address {excerpt(part)}")
                    conds.append(ConstCond(None, f"{excerpt(part)} is a hostname: address unknown"))
                    break
                if family is not None and net[0] != family:
                    raise RuleError(f"address {excerpt(part)} is not IPv{family}")
                nets.append(net)
            else:
                conds.append(AddrCond(g == "-d", tuple(nets), o.neg))
        else:  # -i / -o
            conds.append(IfaceCond(g == "-o", arg, o.neg))
    flush()
    return tuple(conds), target


class _UnknownProto(Cond):
    """-p NAME with a name we do not know: not one of the common protocols we know all names of."""

    __slots__ = ("neg",)

    def __init__(self, name: str, neg: bool) -> None:
        super().__init__(f"unknown protocol {name!r}")
        self.neg = neg

    def test(self, ctx: Ctx) -> bool | None:
        if ctx.proto in (1, 6, 17):
            return self.neg
        return None


_HEAD_CUT = (" -m ", " -j ", " -g ", " --")


def _quick(text: str, family: int | None) -> tuple[Cond, ...]:
    """The -s/-d/-p matches at the head of a rule, read without tokenizing the line."""
    head = text
    for cut in _HEAD_CUT:
        k = head.find(cut)
        if k >= 0:
            head = head[:k]
    if '"' in head or "\\" in head:
        return ()
    words = head.split()[2:]
    conds: list[Cond] = []
    i, n, neg = 0, len(words), False
    while i < n:
        w = words[i]
        if w == "!":
            neg = True
            i += 1
            continue
        if i + 1 >= n or w not in ("-s", "-d", "-p", "-i", "-o"):
            break
        value = words[i + 1]
        if w == "-p":
            num = int(value) if value.isdigit() else PROTOCOLS.get(value.lower())
            if num is not None and num < 256:
                conds.append(ProtoCond(num, neg))
        elif w in ("-s", "-d") and "," not in value:
            net = parse_net(value)
            if net is not None and (family is None or net[0] == family):
                conds.append(AddrCond(w == "-d", (net,), neg))
        i += 2
        neg = False
    return tuple(conds)


SKIP_MARK = "# tw-skip "  # parse_save stores `# tw-skip <count>` for rules a probe left out


def compile_chain(chain: Chain, table: Table, ruleset: IptablesRuleset) -> list[Entry]:
    """The entries of a chain of a save/-S dump: pending where the head allows a cheap test.

    A `# tw-skip <count>` entry (rules the node probe dropped as unable to match) holds
    their place: the rules after it keep the numbers `iptables -D CHAIN <n>` needs.
    """
    entries: list[Entry] = []
    number = 0
    for line, text in chain.raw:
        if text.startswith(SKIP_MARK):
            number += int(text[len(SKIP_MARK) :])
            continue
        number += 1
        quick = _quick(text, ruleset.family)
        if quick:
            entries.append(PendingRule(number, line, text, quick))
        else:
            entries.append(_compile_one(chain, table, ruleset, number, line, text))
    return entries


def finish_rule(chain: Chain, table: Table, ruleset: IptablesRuleset, p: PendingRule) -> Rule:
    return _compile_one(chain, table, ruleset, p.number, p.line, p.text)


def _compile_one(
    chain: Chain, table: Table, ruleset: IptablesRuleset, number: int, line: int, text: str
) -> Rule:
    try:
        words = split_words(text)
        conds, target = compile_words(words[2:], table.chains, ruleset.family)
    except (TokenError, RuleError) as exc:
        raise InputError(
            ruleset.source, f"in chain {chain.name} of table {table.name}: {exc}", line=line
        ) from None
    return Rule(number, line, text, conds, target)
