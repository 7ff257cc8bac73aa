"""The iptables engine: read a dump, decide what happens to a NEW inbound packet, say why.

    rs = parse_ruleset(text, source)            # iptables-save, iptables -S or iptables --list
    v = evaluate_input([rs, ...], Packet(...))  # accept / drop / reject / unknown, with a trace
    findings = findings_for(v, subject)         # the Finding with the narrowest fix

Modules: model (data), tokenize (quoting), conds + modules (what matches and targets mean),
compile (rule lines to rules), parse_save / parse_list (the three formats), evaluate (the
walk), remediation (findings and fix commands).
"""

from __future__ import annotations

from shared.analysis.iptables.evaluate import HOOKS, Limits, evaluate_input, evaluate_ruleset
from shared.analysis.iptables.model import (
    Backend,
    DecidedBy,
    IptablesRuleset,
    IptablesUndecided,
    IptablesVerdict,
    Packet,
    PacketVerdict,
    TraceStep,
)
from shared.analysis.iptables.parse_list import parse_list
from shared.analysis.iptables.parse_save import parse_rules, parse_save
from shared.analysis.iptables.remediation import findings_for, fix_commands
from shared.analysis.paste import Command
from shared.errors import InputError, excerpt

__all__ = [
    "HOOKS",
    "Backend",
    "DecidedBy",
    "IptablesRuleset",
    "IptablesUndecided",
    "IptablesVerdict",
    "Limits",
    "Packet",
    "PacketVerdict",
    "TraceStep",
    "detect_format",
    "evaluate_input",
    "evaluate_ruleset",
    "findings_for",
    "fix_commands",
    "parse_ruleset",
    "parse_rulesets",
]


def detect_format(text: str, source: str = "<input>") -> str:
    """ "save" (iptables-save), "rules" (iptables -S) or "list" (iptables --list)."""
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("*", "[", ":")) or line == "COMMIT":
            return "save"
        if line.startswith(("-P ", "-N ", "-A ")):
            return "rules"
        if line.startswith("Chain ") and "(" in line:
            return "list"
        raise InputError(
            source,
            f"not iptables-save, iptables -S or iptables --list output: {excerpt(line)}",
            line=n,
        )
    raise InputError(source, "empty input: no tables, chains or rules")


def parse_rulesets(
    text: str, source: str = "<input>", hint: Command | None = None, *, ended: bool = False
) -> list[IptablesRuleset]:
    """Every ruleset in the text (iptables-save output of several backends can be concatenated).

    `hint`: the command line a paste showed before the output, `ended`: a prompt followed it
    (shared/analysis/paste.py). An `iptables --list` capture takes its table (`-t`) and family
    (ip6tables) from the command when the listing does not show them, and its last chain is
    whole when the output ended by a prompt and went through no pipe (`| head` may cut it)."""
    fmt = detect_format(text, source)
    if fmt == "save":
        return parse_save(text, source)
    if fmt == "rules":
        return parse_rules(text, source)
    if hint is None:
        return parse_list(text, source, ended=ended)
    if hint.listing != "list":
        return parse_list(text, source)  # the command shown is not the one that printed this
    return parse_list(
        text, source, table=hint.table, family=hint.family, ended=ended and not hint.piped
    )


def parse_ruleset(text: str, source: str = "<input>") -> IptablesRuleset:
    """The one ruleset in the text, whatever its format; InputError if unreadable."""
    found = parse_rulesets(text, source)
    if len(found) != 1:
        raise InputError(
            source, f"holds {len(found)} dumps; use parse_rulesets or pass each as its own file"
        )
    return found[0]
