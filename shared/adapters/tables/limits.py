"""Fitting text into Table storage's entity limits.

Limits (Azure Table storage): a string property holds up to 64 KiB (counted as UTF-16), an
entity up to 1 MiB and 252 custom properties, a batch under 4 MiB. Text that does not fit
is cut on a character boundary and ends with a marker saying how much was dropped, so a
reader can never mistake a cut value for the whole one. Lists become JSON strings that stay
valid JSON after cutting (whole items are dropped, and a marker item is appended).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# Re-exported for older imports; shared.redaction owns it and every exit uses that one.
from shared.redaction import redact

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_OPERATIONS",
    "MAX_PROPERTIES",
    "MAX_STRING_BYTES",
    "TRUNCATION_MARK",
    "fit_json_list",
    "fit_json_mapping",
    "fit_text",
    "redact",
    "transactions",
    "utf16_size",
    "wire_size",
]

MAX_STRING_BYTES = 64 * 1024
MAX_PROPERTIES = 252
TRUNCATION_MARK = "[truncated by tunnelwatch:"


def utf16_size(text: str) -> int:
    return len(text.encode("utf-16-le", errors="surrogatepass"))


def wire_size(entity: Mapping[str, Any]) -> int:
    """An upper estimate of an entity's size in a batch body (JSON with ASCII escapes)."""
    return len(json.dumps(entity, default=str, ensure_ascii=True)) + 512


def _cut(text: str, budget: int) -> str:
    # Cut on a UTF-16 byte budget; dropping a half surrogate pair keeps the string valid.
    raw = text.encode("utf-16-le", errors="surrogatepass")[: max(budget, 0) & ~1]
    return raw.decode("utf-16-le", errors="ignore")


def fit_text(text: str, limit: int = MAX_STRING_BYTES) -> tuple[str, bool]:
    """`text` cut to `limit` UTF-16 bytes with a marker; True when it was cut."""
    if utf16_size(text) <= limit:
        return text, False

    def marker(dropped: int) -> str:
        return f" {TRUNCATION_MARK} {dropped} of {len(text)} characters dropped]"

    # The marker with the largest possible count bounds the real one.
    head = _cut(text, limit - utf16_size(marker(len(text))))
    return head + marker(len(text) - len(head)), True


def fit_json_list(items: Iterable[str], limit: int = MAX_STRING_BYTES) -> tuple[str, bool]:
    """A JSON array of `items` within `limit`; whole items dropped (and marked) if too long."""
    values = list(items)
    full = json.dumps(values, ensure_ascii=False)
    if utf16_size(full) <= limit:
        return full, False
    budget = limit - 256  # room for the marker item
    kept: list[str] = []
    used = 2  # the brackets
    for value in values:
        item, _ = fit_text(value, budget // 2)
        size = utf16_size(json.dumps(item, ensure_ascii=False)) + 4
        if used + size > budget:
            break
        kept.append(item)
        used += size
    dropped = len(values) - len(kept)
    kept.append(f"{TRUNCATION_MARK} {dropped} of {len(values)} items dropped, long items cut]")
    return json.dumps(kept, ensure_ascii=False), True


def fit_json_mapping(counts: Mapping[str, int], limit: int = MAX_STRING_BYTES) -> tuple[str, bool]:
    """A JSON object of counters within `limit`; the smallest entries go first if too long."""
    full = json.dumps(dict(counts), ensure_ascii=False, sort_keys=True)
    if utf16_size(full) <= limit:
        return full, False
    kept: dict[str, int] = {}
    used = 2
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for name, value in ranked:
        name_fit, _ = fit_text(name, 1024)
        size = utf16_size(json.dumps({name_fit: value}, ensure_ascii=False))
        if used + size > limit - 256:
            break
        kept[name_fit] = value
        used += size
    kept[f"{TRUNCATION_MARK} entries dropped]"] = sum(counts.values()) - sum(kept.values())
    return json.dumps(kept, ensure_ascii=False, sort_keys=True), True


# A batch must stay under 4 MiB; leave room for the multipart envelope.
MAX_BATCH_OPERATIONS = 100
MAX_BATCH_BYTES = 3 * 1024 * 1024 + 512 * 1024


def transactions(
    entities: Iterable[Mapping[str, Any]],
    *,
    max_operations: int = MAX_BATCH_OPERATIONS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[list[Mapping[str, Any]]]:
    """Split entities into batches: one partition each, <= 100 operations, under 4 MiB."""
    by_partition: dict[str, list[Mapping[str, Any]]] = {}
    for entity in entities:
        by_partition.setdefault(str(entity["PartitionKey"]), []).append(entity)
    batches: list[list[Mapping[str, Any]]] = []
    for group in by_partition.values():
        current: list[Mapping[str, Any]] = []
        used = 0
        for entity in group:
            size = wire_size(entity)
            if current and (len(current) >= max_operations or used + size > max_bytes):
                batches.append(current)
                current, used = [], 0
            current.append(entity)
            used += size
        if current:
            batches.append(current)
    return batches
