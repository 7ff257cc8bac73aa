"""Whether a text is a JSON document cut short: the start of one, without its end.

A capture that ends early (a paste cut short, an output past a size limit) of a JSON document
is a strict prefix of it: every character fits the JSON grammar and the text ends before the
document does. Callers answer that as inconclusive ("capture incomplete"), not unreadable.
`json_cut` scans once, left to right, with an explicit stack (no recursion, no backtracking:
linear in the input). Pure.
"""

from __future__ import annotations

import re

__all__ = ["json_cut"]

_SPACE = re.compile(r"[ \t\r\n]*")
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')  # string characters that need no escape
_NUMBER_CHARS = re.compile(r"[-+0-9.eE]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NUMBER_PREFIX = re.compile(r"-?(?:0|[1-9][0-9]*)?(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?")
_ESCAPES = frozenset('"\\/bfnrt')
_HEX = frozenset("0123456789abcdefABCDEF")
_LITERALS = ("true", "false", "null")


def json_cut(text: str) -> str | None:
    """What the text lacks when it is a strict prefix of a JSON document ("the JSON ends
    before ..."); None when it is a whole document or not JSON at all."""
    n = len(text)
    stack: list[str] = []  # "{" or "["
    expect = "value"  # value | first-value | key | first-key | colon | next | done
    i = 0
    while True:
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
        if i == n:
            if expect == "done":
                return None
            return _lacking(stack, "a value" if expect in ("value", "first-value") else None)
        c = text[i]
        if expect == "done":
            return None
        if expect == "colon":
            if c != ":":
                return None
            i, expect = i + 1, "value"
            continue
        if expect == "next":
            close = "}" if stack[-1] == "{" else "]"
            if c == ",":
                i, expect = i + 1, "key" if stack[-1] == "{" else "value"
            elif c == close:
                stack.pop()
                i, expect = i + 1, "next" if stack else "done"
            else:
                return None
            continue
        if expect in ("key", "first-key"):
            if c == "}" and expect == "first-key":
                stack.pop()
                i, expect = i + 1, "next" if stack else "done"
                continue
            if c != '"':
                return None
            end = _string(text, i)
            if end is None:
                return None
            if end > n:
                return _lacking(stack, "the end of a key")
            i, expect = end, "colon"
            continue
        # a value (or, first in an array, its end)
        if c == "]" and expect == "first-value":
            stack.pop()
            i, expect = i + 1, "next" if stack else "done"
            continue
        if c in "{[":
            stack.append(c)
            i, expect = i + 1, "first-key" if c == "{" else "first-value"
            continue
        if c == '"':
            end = _string(text, i)
            if end is None:
                return None
            if end > n:
                return _lacking(stack, "the end of a string")
            i = end
        elif c in "-0123456789":
            run = _NUMBER_CHARS.match(text, i).end()  # type: ignore[union-attr]
            if run == n and _NUMBER_PREFIX.fullmatch(text, i, run):
                return _lacking(stack, "the end of a number")
            if not _NUMBER.fullmatch(text, i, run):
                return None
            i = run
        else:
            word = next((w for w in _LITERALS if text.startswith(w, i)), None)
            if word is None:
                rest = text[i:]
                if any(w.startswith(rest) for w in _LITERALS):
                    return _lacking(stack, f"the end of {rest!r}")
                return None
            i += len(word)
        expect = "next" if stack else "done"


def _string(text: str, i: int) -> int | None:
    """The index after the string starting at text[i] ('"'); len(text) + 1 when the text
    ends inside it (escapes so far valid); None when it is not a JSON string."""
    n = len(text)
    j = i + 1
    while True:
        j = _PLAIN.match(text, j).end()  # type: ignore[union-attr]
        if j == n:
            return n + 1
        c = text[j]
        if c == '"':
            return j + 1
        if c != "\\":
            return None  # a control character
        if j + 1 == n:
            return n + 1
        e = text[j + 1]
        if e == "u":
            digits = text[j + 2 : j + 6]
            if not all(d in _HEX for d in digits):
                return None
            if len(digits) < 4:
                return n + 1
            j += 6
        elif e in _ESCAPES:
            j += 2
        else:
            return None


def _lacking(stack: list[str], inside: str | None) -> str:
    closes = "".join("}" if s == "{" else "]" for s in reversed(stack))
    what = f"{inside} and " if inside else ""
    if not closes:
        return f"the JSON ends before {inside}"
    return f"the JSON ends before {what}its closing {closes!r}"
