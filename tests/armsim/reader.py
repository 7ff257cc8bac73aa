"""Typed access to a JSON scenario with errors that name the file and the path of the bad field.

Every scenario loader goes through `Node`, so a wrong type anywhere becomes one
`ScenarioError("demo.json", "subscriptions[0].clusters[2].agentPools[0].count: ...")`
instead of a KeyError deep in the estate builder.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from shared.errors import InputError

__all__ = ["Node", "ScenarioError"]


class ScenarioError(InputError):
    """A scenario file that does not describe a valid estate (names the field's path)."""


class Node:
    """A JSON value plus where it sits in the file."""

    __slots__ = ("path", "source", "value")

    def __init__(self, source: builtins.str, path: builtins.str, value: Any) -> None:
        self.source = source
        self.path = path
        self.value = value

    def fail(self, message: builtins.str, key: builtins.str | None = None) -> ScenarioError:
        where = self._join(key) if key is not None else (self.path or "<top>")
        return ScenarioError(self.source, f"{where}: {message}")

    def _join(self, key: builtins.str) -> builtins.str:
        return f"{self.path}.{key}" if self.path else key

    def obj(self, allowed: frozenset[str] | None = None) -> Node:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected an object, got {_kind(self.value)}")
        if allowed is not None:
            unknown = sorted(k for k in self.value if k not in allowed)
            if unknown:
                raise self.fail(
                    f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
                )
        return self

    def has(self, key: builtins.str) -> builtins.bool:
        return isinstance(self.value, dict) and self.value.get(key) is not None

    def child(self, key: builtins.str) -> Node:
        self.obj()
        if key not in self.value or self.value[key] is None:
            raise self.fail("missing required field", key)
        return Node(self.source, self._join(key), self.value[key])

    def opt(self, key: builtins.str) -> Node | None:
        self.obj()
        if self.value.get(key) is None:
            return None
        return Node(self.source, self._join(key), self.value[key])

    def items(self) -> Iterator[Node]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {_kind(self.value)}")
        for i, item in enumerate(self.value):
            yield Node(self.source, f"{self.path}[{i}]", item)

    def list(self, key: builtins.str) -> list[Node]:
        node = self.opt(key)
        return [] if node is None else list(node.items())

    def str(self, key: builtins.str, default: builtins.str | None = None) -> builtins.str:
        node = self.opt(key)
        if node is None:
            if default is None:
                raise self.fail("missing required field", key)
            return default
        if not isinstance(node.value, builtins.str) or not node.value.strip():
            raise node.fail(f"expected a non-empty string, got {_kind(node.value)}")
        return node.value

    def opt_str(self, key: builtins.str) -> builtins.str | None:
        return self.str(key) if self.has(key) else None

    def choice(
        self,
        key: builtins.str,
        choices: tuple[builtins.str, ...],
        default: builtins.str | None = None,
    ) -> builtins.str:
        """A string from a fixed set, matched case-insensitively, returned in canonical case."""
        raw = self.str(key, default)
        for c in choices:
            if c.lower() == raw.lower():
                return c
        raise self.child(key).fail(f"{raw!r} is not one of {', '.join(choices)}")

    def int(
        self,
        key: builtins.str,
        default: builtins.int | None = None,
        lo: builtins.int = 0,
        hi: builtins.int = 2**31,
    ) -> builtins.int:
        node = self.opt(key)
        if node is None:
            if default is None:
                raise self.fail("missing required field", key)
            return default
        v = node.value
        if isinstance(v, builtins.bool) or not isinstance(v, builtins.int):
            raise node.fail(f"expected an integer, got {_kind(v)}")
        if not lo <= v <= hi:
            raise node.fail(f"{v} is out of range {lo}..{hi}")
        return v

    def opt_int(
        self, key: builtins.str, lo: builtins.int = 0, hi: builtins.int = 2**31
    ) -> builtins.int | None:
        return self.int(key, 0, lo, hi) if self.has(key) else None

    def bool(self, key: builtins.str, default: builtins.bool = False) -> builtins.bool:
        node = self.opt(key)
        if node is None:
            return default
        if not isinstance(node.value, builtins.bool):
            raise node.fail(f"expected true or false, got {_kind(node.value)}")
        return node.value

    def strs(self, key: builtins.str) -> tuple[builtins.str, ...]:
        out = []
        for item in self.list(key):
            if not isinstance(item.value, builtins.str) or not item.value.strip():
                raise item.fail(f"expected a non-empty string, got {_kind(item.value)}")
            out.append(item.value)
        return tuple(out)

    def str_map(self, key: builtins.str) -> dict[builtins.str, builtins.str]:
        node = self.opt(key)
        if node is None:
            return {}
        node.obj()
        for k, v in node.value.items():
            if not isinstance(v, builtins.str):
                raise node.fail(f"expected a string, got {_kind(v)}", k)
        return dict(node.value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
