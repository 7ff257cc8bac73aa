"""Reading ARM REST documents defensively: typed accessors that never raise on odd shapes.

The inventory maps REST-shaped dicts (what ARM returns and what the SDK models hold: the
typespec-generated models are mappings over the raw JSON, `as_dict()` gives it back with
read-only and unknown fields intact). Reading the REST names keeps the mapping independent of
SDK versions and lets tests feed plain documents. A field of the wrong type reads as absent:
the caller decides whether absent means a documented default or "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Doc", "as_doc", "boolean", "docs", "integer", "obj", "props", "ref_id", "text", "texts"]

Doc = dict[str, Any]


def as_doc(value: object) -> Doc:
    """An SDK model or a mapping as a plain REST dict ({} for anything else)."""
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        result = as_dict()
        if isinstance(result, dict):
            return result
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return {}


def obj(doc: Mapping[str, Any] | None, *path: str) -> Doc:
    """The object at `path` ({} when any step is missing or not an object)."""
    current: object = doc
    for key in path:
        if not isinstance(current, Mapping):
            return {}
        current = current.get(key)
    return as_doc(current) if isinstance(current, Mapping) else {}


def props(doc: Mapping[str, Any] | None) -> Doc:
    return obj(doc, "properties")


def _at(doc: Mapping[str, Any] | None, path: tuple[str, ...]) -> object:
    if not path:
        return None
    parent = obj(doc, *path[:-1]) if len(path) > 1 else doc
    return parent.get(path[-1]) if isinstance(parent, Mapping) else None


def text(doc: Mapping[str, Any] | None, *path: str) -> str | None:
    value = _at(doc, path)
    return value if isinstance(value, str) else None


def integer(doc: Mapping[str, Any] | None, *path: str) -> int | None:
    value = _at(doc, path)
    # bool is an int in Python, and never a count in ARM
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def boolean(doc: Mapping[str, Any] | None, *path: str) -> bool | None:
    value = _at(doc, path)
    return value if isinstance(value, bool) else None


def docs(doc: Mapping[str, Any] | None, *path: str) -> list[Doc]:
    """The objects of the list at `path` (non-objects skipped)."""
    value = _at(doc, path)
    if not isinstance(value, list):
        return []
    return [as_doc(item) for item in value if isinstance(item, Mapping)]


def texts(doc: Mapping[str, Any] | None, *path: str) -> tuple[str, ...]:
    value = _at(doc, path)
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def ref_id(doc: Mapping[str, Any] | None, *path: str) -> str | None:
    """The `id` of a sub-resource reference ({"id": "..."}) at `path`; None when absent/empty."""
    value = text(obj(doc, *path), "id")
    return value if value else None
