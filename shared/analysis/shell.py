"""The one builder of every shell command tunnelwatch prints (fixes, checks to run by hand).

A command is built from its words, never from text: `command("az", "aks", "update", "-g",
rg)` quotes each word with `shlex.quote`, so a name that holds `(`, `;`, `$(...)`, quotes,
spaces or a newline reaches the program as that one word when the user pastes the command in
bash or sh, and nothing else runs. Names come from Azure (a resource group may be `rg(prod)`
or `rg-café`), from the user's own arguments, and from captures a hostile node may have
shaped (chain names, comments), so no word is ever trusted.

A word the user must supply is a `Placeholder`, printed as `<ip-count>`, unquoted: it reads
as "replace this", and a command still holding one does not run as it is (bash reads `<` as
a redirection from a file that should not exist and stops before running the program).

`Command` is a `str` (the text users see, store and compare) that also keeps the words it was
built from (`parts`, one argv per simple command of a pipeline or `&&` chain), so a test can
run every printed command under stub programs and check each argv is exactly the intended
one. Pure: no I/O.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "Command",
    "Placeholder",
    "Word",
    "all_of",
    "command",
    "pipeline",
    "placeholder",
    "sequence",
]

# Lower-case words joined by hyphens: `<ip-count>`, never `<a b>` (two shell words).
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# A program is a plain name: it is the one word that must never need quoting.
_PROGRAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_OPERATORS = ("|", "&&", ";")


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A value the user must fill in before running the command, printed as `<name>`."""

    name: str

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"placeholder name {self.name!r}: lower-case words and hyphens only")

    def __str__(self) -> str:
        return f"<{self.name}>"


Word: TypeAlias = str | int | Placeholder


class Command(str):
    """The printed text of a command, with the words each of its simple commands is made of.

    `parts` holds one argv per simple command, in order; `operators` the operator between
    each pair (`|`, `&&` or `;`). A word is a str, an int, a Placeholder, or a Command given
    whole as one argument (the script of `az vmss run-command invoke --scripts`).
    """

    parts: tuple[tuple[Word, ...], ...]
    operators: tuple[str, ...]

    def __new__(
        cls,
        parts: tuple[tuple[Word, ...], ...],
        operators: tuple[str, ...] = (),
    ) -> Command:
        if not parts or len(operators) != len(parts) - 1:
            raise ValueError("a command needs one operator between each two parts")
        if any(op not in _OPERATORS for op in operators):
            raise ValueError(f"operators must be among {_OPERATORS}")
        pieces = [" ".join(_render(w) for w in parts[0])]
        for op, argv in zip(operators, parts[1:], strict=True):
            pieces.append(f" {op} " if op != ";" else "; ")
            pieces.append(" ".join(_render(w) for w in argv))
        self = super().__new__(cls, "".join(pieces))
        self.parts = parts
        self.operators = operators
        return self

    def __getnewargs__(self) -> tuple[tuple[tuple[Word, ...], ...], tuple[str, ...]]:  # type: ignore[override]
        return (self.parts, self.operators)  # copy and pickle rebuild from the words

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        """Every placeholder in the command (inner commands included), first seen first."""
        seen: dict[Placeholder, None] = {}
        for argv in self.parts:
            for w in argv:
                if isinstance(w, Placeholder):
                    seen.setdefault(w)
                elif isinstance(w, Command):
                    seen.update(dict.fromkeys(w.placeholders))
        return tuple(seen)

    def fill(self, values: Mapping[str, str]) -> Command:
        """The command with the placeholders named in `values` replaced by those values."""

        def word(w: Word) -> Word:
            if isinstance(w, Placeholder):
                return values.get(w.name, w)
            if isinstance(w, Command):
                return w.fill(values)
            return w

        return Command(tuple(tuple(word(w) for w in argv) for argv in self.parts), self.operators)


def _render(word: Word) -> str:
    if isinstance(word, Placeholder):
        return str(word)
    if isinstance(word, bool) or not isinstance(word, (str, int)):
        raise TypeError(f"a command word must be str, int or Placeholder, not {type(word)}")
    return shlex.quote(str(word))


def command(program: str, *args: Word) -> Command:
    """One simple command: `program` and its arguments, each quoted as one word."""
    if not _PROGRAM.fullmatch(program):
        raise ValueError(f"program {program!r} is not a plain name")
    for a in args:
        _render(a)  # type check now, not at first print
    return Command(((program, *args),))


def placeholder(name: str) -> Placeholder:
    return Placeholder(name)


def _join(operator: str, commands: tuple[Command, ...]) -> Command:
    if len(commands) < 2:
        raise ValueError("joining needs two commands or more")
    parts = commands[0].parts
    operators = commands[0].operators
    for c in commands[1:]:
        parts += c.parts
        operators += (operator, *c.operators)
    return Command(parts, operators)


def pipeline(*commands: Command) -> Command:
    """`a | b`: the output of each command is the input of the next."""
    return _join("|", commands)


def all_of(*commands: Command) -> Command:
    """`a && b`: each command runs only when the one before succeeded."""
    return _join("&&", commands)


def sequence(*commands: Command) -> Command:
    """`a; b`: each command runs after the one before, whatever its outcome."""
    return _join(";", commands)
