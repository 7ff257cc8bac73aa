"""Teams cards for finding flips: the Workflows webhook payload, grouped to fit the size limit.

Pure: no HTTP, no clock, no settings. `build_payloads` turns the flips of one scan for one
destination into as few Workflows payloads as fit under `MAX_PAYLOAD_BYTES` each, measured
on the exact bytes `encode` produces (the sender must post those bytes, not re-serialize).

Each payload is the envelope a "When a Teams webhook request is received" flow accepts:
`{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"contentUrl": null, "content": <Adaptive Card 1.4>}]}`. Cards carry only Action.OpenUrl (no
Action.Submit: a Workflows card cannot post back).

Text that comes from nodes, captures or the estate (rule comments, node, pool and rule names,
evidence lines, commands) is never placed where card markdown applies: it goes into TextRuns
of RichTextBlocks, which the Adaptive Cards spec renders without markdown. TextBlocks
(markdown on) hold only our own fixed words and numbers. Line breaks and control characters
(and lone surrogates from undecodable bytes) become `LINE_BREAK` and U+FFFD, so a value cannot
start a new line of its own nor fail to encode, and "{{" gets a zero-width space so it is not
read as a DATE()/TIME() call. `escape_markdown` is there for any caller that must put outside
text into a markdown field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from shared.analysis.findings import Finding, Remediation
from shared.core.lifecycle import Event, StoredFinding

__all__ = [
    "CARD_CONTENT_TYPE",
    "CARD_VERSION",
    "LINE_BREAK",
    "MAX_PAYLOAD_BYTES",
    "SHORTENED",
    "CardFlip",
    "build_payloads",
    "encode",
    "escape_markdown",
    "portal_url",
]

CARD_VERSION = "1.4"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Teams refuses posts over 28 KB ("request entity too large"). Read as 28,000 bytes (the lower
# of 28,000 and 28,672), measured on the whole serialized UTF-8 payload, envelope included.
MAX_PAYLOAD_BYTES = 28_000
SHORTENED = "[shortened to fit the Teams card size limit]"
LINE_BREAK = " \u2424 "  # SYMBOL FOR NEWLINE: a line break inside one value, shown, not obeyed

_EVENT_LABELS = {Event.NEW: "Opened", Event.REOPENED: "Reopened", Event.RESOLVED: "Resolved"}
_EVENT_COLORS = {Event.NEW: "Attention", Event.REOPENED: "Attention", Event.RESOLVED: "Good"}
_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all
# covers emphasis, links, code, headings, quotes, list starts ("-", "+", "1." and "1)"),
# tables, HTML-ish "<" and entities ("&").
_MARKDOWN_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_MORE = "\u2026 "  # starts the line that replaces list entries cut for size
_CUT_MARK = " \u2026 " + SHORTENED  # ends a value cut for size
_MIN_CUT = 64  # a value is never cut below this many characters; lists are halved instead


@dataclass(frozen=True, slots=True)
class CardFlip:
    """One flip to show: what happened to which finding, on which cluster."""

    event: Event
    cluster_id: str
    finding: Finding
    opened_at: datetime | None = None  # when it was last opened (first seen, or reopened)
    reopen_count: int = 0

    def __post_init__(self) -> None:
        if self.event not in _EVENT_LABELS:
            raise ValueError(
                f"CardFlip event: {self.event.value!r} is not a flip "
                f"(one of {', '.join(e.value for e in _EVENT_LABELS)})"
            )
        if self.reopen_count < 0:
            raise ValueError(f"CardFlip reopen_count: {self.reopen_count} is negative")

    @classmethod
    def from_stored(cls, event: Event, stored: StoredFinding) -> CardFlip:
        return cls(
            event=event,
            cluster_id=stored.cluster_id,
            finding=stored.finding,
            opened_at=stored.opened_at,
            reopen_count=stored.reopen_count,
        )

    @property
    def first_seen(self) -> datetime | None:
        return self.finding.first_seen or self.opened_at


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes to post (and the bytes the size limit is measured on)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def escape_markdown(text: str) -> str:
    """`text` as literal card markdown: one line, every ASCII punctuation backslash-escaped."""
    out: list[str] = []
    for ch in _one_line(text):
        if ch in _MARKDOWN_PUNCTUATION:
            out.append("\\")
        out.append(ch)
    return "".join(out)


def portal_url(cluster_id: str) -> str:
    """The cluster's overview blade in the Azure portal."""
    if not cluster_id.lower().startswith("/subscriptions/") or any(
        ch.isspace() or ord(ch) < 0x20 for ch in cluster_id
    ):
        raise ValueError(f"cluster id: {cluster_id[:200]!r} is not an ARM resource id")
    return "https://portal.azure.com/#@/resource" + quote(cluster_id, safe="/-_.~") + "/overview"


def build_payloads(
    flips: Iterable[CardFlip],
    *,
    status_page_url: str = "",
    limit: int = MAX_PAYLOAD_BYTES,
) -> list[dict[str, Any]]:
    """The Workflows payloads for `flips` (one scan, one destination), in order, each <= `limit`.

    Flips are packed in their order into as few cards as fit; a flip too large for a card of
    its own is shortened (marked with SHORTENED), never dropped.
    """
    if status_page_url:
        _check_url("STATUS_PAGE_URL", status_page_url)
    items = list(flips)
    payloads: list[dict[str, Any]] = []
    current: list[CardFlip] = []
    for flip in items:
        if current and _size([*current, flip], status_page_url) <= limit:
            current.append(flip)
            continue
        if current:
            payloads.append(_payload(current, status_page_url))
        current = [_fit(flip, status_page_url, limit)]
    if current:
        payloads.append(_payload(current, status_page_url))
    for payload in payloads:  # the promise the sender relies on, checked on the real bytes
        if len(encode(payload)) > limit:
            raise AssertionError(f"Teams payload of {len(encode(payload))} bytes over {limit}")
    return payloads


# -- building ------------------------------------------------------------------------------


def _size(flips: Sequence[CardFlip], status_page_url: str) -> int:
    return len(encode(_payload(flips, status_page_url)))


def _payload(flips: Sequence[CardFlip], status_page_url: str) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": CARD_CONTENT_TYPE,
                "contentUrl": None,
                "content": _card(flips, status_page_url),
            }
        ],
    }


def _card(flips: Sequence[CardFlip], status_page_url: str) -> dict[str, Any]:
    counts = [
        f"{sum(1 for f in flips if f.event is event)} {label.lower()}"
        for event, label in _EVENT_LABELS.items()
        if any(f.event is event for f in flips)
    ]
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": "tunnelwatch: " + ", ".join(counts),
            "size": "Medium",
            "weight": "Bolder",
            "wrap": True,
        }
    ]
    body.extend(_flip_container(flip) for flip in flips)
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if status_page_url:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Status page", "url": status_page_url}
        ]
    return card


def _flip_container(flip: CardFlip) -> dict[str, Any]:
    f = flip.finding
    cause = f.cause.title if f.cause is not None else f"{f.kind.value}: {f.check}"
    label, color = _EVENT_LABELS[flip.event], _EVENT_COLORS[flip.event]
    items: list[dict[str, Any]] = [
        _rich(
            _run(f"{label}: ", weight="Bolder", color=color),
            _run(cause, weight="Bolder"),
            _run(f" ({f.severity.value})"),
        ),
        _rich(_run(f.title)),
    ]
    where = [
        ("Cluster", _cluster_name(flip.cluster_id, f.subject.cluster)),
        ("Pool", f.subject.node_pool),
        ("Node", f.subject.node),
        ("Resource", f.subject.resource),
    ]
    items.extend(_labelled(label, value) for label, value in where if value)
    seen = flip.first_seen
    items.append(
        _labelled(
            "First seen",
            seen.isoformat(timespec="seconds") if seen is not None else "unknown",
            spacing="Small",
        )
    )
    items.append(_labelled("Reopen count", str(flip.reopen_count)))
    if f.evidence:
        items.append(_heading("Evidence"))
        items.extend(_rich(_run(line)) for line in f.evidence)
    if f.remediation is not None and flip.event is not Event.RESOLVED:
        items.extend(_fix(f.remediation))
    items.append(
        {
            "type": "ActionSet",
            "actions": [
                {
                    "type": "Action.OpenUrl",
                    "title": "Cluster in the Azure portal",
                    "url": portal_url(flip.cluster_id),
                }
            ],
        }
    )
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": items}


def _fix(remediation: Remediation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [_heading("Fix"), _rich(_run(remediation.summary))]
    if remediation.commands:
        out.append(
            {
                "type": "Container",
                "style": "emphasis",
                "items": [
                    _rich(_run(cmd, fontType="Monospace"), spacing="None")
                    for cmd in remediation.commands
                ],
            }
        )
    out.extend(_rich(_run(note, isSubtle=True), spacing="Small") for note in remediation.notes)
    return out


def _heading(text: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "weight": "Bolder", "spacing": "Small"}


def _labelled(label: str, value: str, spacing: str = "None") -> dict[str, Any]:
    return _rich(_run(label + ": ", weight="Bolder"), _run(value), spacing=spacing)


def _rich(*runs: dict[str, Any], spacing: str = "Small") -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(runs), "spacing": spacing}


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": _one_line(text), **style}


def _cluster_name(cluster_id: str, name: str) -> str:
    return name or cluster_id.rstrip("/").rsplit("/", 1)[-1]


def _one_line(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _LINE_BREAKS:
            if ch == "\r" and text.startswith("\n", i + 1):
                i += 1
            out.append(LINE_BREAK)
        elif ch == "\t":
            out.append(" ")
        elif ch == "{" and text.startswith("{", i + 1):
            out.append("{\u200b")  # "{{DATE(...)}}" would be a card date function, not text
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000:
            out.append("\ufffd")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if (
        parts.scheme not in {"https", "http"}
        or not parts.netloc
        or any(ch.isspace() or ord(ch) < 0x20 for ch in url)
    ):
        raise ValueError(f"{name}: {url[:200]!r} is not an http(s) URL")


# -- shortening one flip that does not fit a card of its own ---------------------------------


def _fit(flip: CardFlip, status_page_url: str, limit: int) -> CardFlip:
    """`flip` shortened (visibly) until a card of its own fits under `limit`."""
    while (size := _size([flip], status_page_url)) > limit:
        shorter = _shorten(flip, size - limit)
        if shorter is None:
            raise ValueError(
                f"Teams card limit {limit} bytes: a flip of {flip.cluster_id[:200]!r} "
                f"cannot be shortened below {size} bytes"
            )
        flip = shorter
    return flip


def _shorten(flip: CardFlip, excess: int) -> CardFlip | None:
    """One step smaller: cut the longest value, or halve the longest list; None if neither."""
    f = flip.finding
    fix = f.remediation
    lists: dict[str, tuple[str, ...]] = {"evidence": f.evidence}
    if fix is not None:
        lists["commands"] = fix.commands
        lists["notes"] = fix.notes
    texts: list[tuple[str, int, str]] = [("title", -1, f.title)]
    texts.extend((name, i, v) for name, values in lists.items() for i, v in enumerate(values))
    if fix is not None:
        texts.append(("summary", -1, fix.summary))
    name, index, longest = max(texts, key=lambda t: len(t[2]))
    keep = max(_MIN_CUT, min(len(longest) // 2, len(longest) - excess - len(_CUT_MARK)))
    cut = longest[:keep] + _CUT_MARK
    if len(cut) < len(longest):
        if index < 0:
            return _with(flip, name, cut)
        edited = list(lists[name])
        edited[index] = cut
        return _with(flip, name, tuple(edited))
    name, values = max(lists.items(), key=lambda kv: len(kv[1]))
    if len(values) <= 2:
        return None
    dropped = 0
    count = values[-1][len(_MORE) :].split(" ", 1)[0]
    if values[-1].startswith(_MORE) and values[-1].endswith(SHORTENED) and count.isdecimal():
        dropped = int(count) - 1  # an earlier marker: it stood for `count` entries
    kept = values[: len(values) // 2]
    marker = f"{_MORE}{dropped + len(values) - len(kept)} more {name} not shown {SHORTENED}"
    return _with(flip, name, (*kept, marker))


def _with(flip: CardFlip, name: str, value: Any) -> CardFlip:
    f = flip.finding
    if name in {"title", "evidence"}:
        return replace(flip, finding=replace(f, **{name: value}))
    if f.remediation is None:  # only reached for remediation fields, which need one
        raise ValueError(f"no remediation to shorten {name} in")
    return replace(flip, finding=replace(f, remediation=replace(f.remediation, **{name: value})))
