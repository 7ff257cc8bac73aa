"""Splitting one rule line into words the way iptables-save quotes them.

iptables-save puts double quotes around arguments with spaces (comments, log prefixes) and
escapes `"` and `\\` inside them with a backslash. Most lines have no quote at all and take
the fast path, str.split.
"""

from __future__ import annotations

import re

__all__ = ["Quoted", "TokenError", "split_words"]


class Quoted(str):
    """A word that was quoted: an argument, never an option, even if it starts with '-'."""

    __slots__ = ()


class TokenError(ValueError):
    """The line cannot be split (an unterminated quote)."""


_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|((?:[^\s"\\]|\\.)+)|(\S)', re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def split_words(line: str) -> list[str]:
    """The words of a rule line; quoted words come back as Quoted, without their quotes."""
    if "\\" not in line:
        if '"' not in line:
            return line.split()
        # Quotes without escapes (kube-proxy comments): split on the quotes, in C.
        parts = line.split('"')
        if len(parts) % 2 == 0:
            raise TokenError(f"unterminated quote at column {line.rfind(chr(34)) + 1}")
        fast: list[str] = []
        for k, part in enumerate(parts):
            if k % 2:
                fast.append(Quoted(part))
            elif part and (
                (part[0] not in " \t" and k) or (part[-1] not in " \t" and k < len(parts) - 1)
            ):
                break  # a quote glued to a word (a"b"): let the general splitter decide
            else:
                fast.extend(part.split())
        else:
            return fast
    words: list[str] = []
    for m in _WORD.finditer(line):
        quoted, bare, stray = m.groups()
        if stray is not None:
            what = "quote" if stray == '"' else f"character {stray!r}"
            raise TokenError(f"unterminated {what} at column {m.start() + 1}")
        if quoted is not None:
            words.append(Quoted(_ESCAPE.sub(r"\1", quoted)))
        elif bare is not None:
            words.append(_ESCAPE.sub(r"\1", bare) if "\\" in bare else bare)
    return words
