"""Teams cards (shared/notify/teams.py): envelope, contents, grouping under the size limit,
shortening, and hostile text kept out of card markdown."""

from __future__ import annotations

from typing import Any

import pytest

from shared.core.lifecycle import Event
from shared.notify.teams import (
    CARD_CONTENT_TYPE,
    LINE_BREAK,
    MAX_PAYLOAD_BYTES,
    SHORTENED,
    build_payloads,
    encode,
    escape_markdown,
    portal_url,
)
from tests.teams_card_samples import (
    CLUSTER_ID,
    HOSTILE,
    STATUS_PAGE,
    flip,
    hostile,
    oversized,
    several,
)


def _walk(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            out.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_walk(value))
    return out


def _card(payload: dict[str, Any]) -> dict[str, Any]:
    card: dict[str, Any] = payload["attachments"][0]["content"]
    return card


def _runs(payload: dict[str, Any]) -> list[str]:
    return [e["text"] for e in _walk(_card(payload)) if e.get("type") == "TextRun"]


def _markdown_texts(payload: dict[str, Any]) -> list[str]:
    """Every string a Teams client reads as markdown: TextBlock text, facts, fallbackText."""
    out = []
    for e in _walk(_card(payload)):
        if e.get("type") == "TextBlock":
            out.append(e["text"])
        if "fallbackText" in e:
            out.append(e["fallbackText"])
        if e.get("type") == "FactSet":
            out.extend(f"{f['title']} {f['value']}" for f in e["facts"])
    return out


def test_envelope_is_the_workflows_message_with_one_adaptive_card_1_4() -> None:
    (payload,) = build_payloads(several(), status_page_url=STATUS_PAGE)
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert (
        attachment["contentType"] == CARD_CONTENT_TYPE == "application/vnd.microsoft.card.adaptive"
    )
    assert attachment["contentUrl"] is None
    assert attachment["content"]["type"] == "AdaptiveCard"
    assert attachment["content"]["version"] == "1.4"
    actions = [e for e in _walk(attachment["content"]) if str(e.get("type")).startswith("Action.")]
    assert actions and {a["type"] for a in actions} == {"Action.OpenUrl"}


def test_each_flip_shows_cause_place_evidence_every_command_first_seen_reopens_and_links() -> None:
    f = flip(Event.REOPENED, reopen_count=3, node="aks-nodepool1-7", pool="pool7")
    (payload,) = build_payloads([f], status_page_url=STATUS_PAGE)
    runs = _runs(payload)
    fix = f.finding.remediation
    assert fix is not None
    assert "iptables blocks the tunnel port" in runs  # Cause.title, the article's words
    assert runs[runs.index("Cluster: ") + 1] == "aks-prod"
    assert runs[runs.index("Pool: ") + 1] == "pool7"
    assert runs[runs.index("Node: ") + 1] == "aks-nodepool1-7"
    assert runs[runs.index("First seen: ") + 1] == "2026-12-01T08:30:00+00:00"
    assert runs[runs.index("Reopen count: ") + 1] == "3"
    assert f.finding.evidence[0] in runs  # the deciding rule
    monospace = [
        e["text"]
        for e in _walk(_card(payload))
        if e.get("type") == "TextRun" and e.get("fontType") == "Monospace"
    ]
    assert monospace == list(fix.commands)  # every command, in order, in the monospace block
    assert all(note in runs for note in fix.notes)
    urls = [e["url"] for e in _walk(_card(payload)) if e.get("type") == "Action.OpenUrl"]
    assert f"https://portal.azure.com/#@/resource{CLUSTER_ID}/overview" in urls
    assert STATUS_PAGE in urls


def test_resolved_flip_has_no_fix_and_status_link_is_optional() -> None:
    (payload,) = build_payloads([flip(Event.RESOLVED)])
    assert not any(e.get("fontType") == "Monospace" for e in _walk(_card(payload)))
    assert "actions" not in _card(payload)
    assert "Resolved: " in _runs(payload)


def test_bad_inputs_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="STATUS_PAGE_URL"):
        build_payloads([flip()], status_page_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="cluster id"):
        portal_url("aks-prod")
    with pytest.raises(ValueError, match="not a flip"):
        flip(Event.CLOSE_HELD)


def test_a_scan_goes_into_as_few_cards_as_fit_each_under_the_limit_in_order() -> None:
    flips = [flip(node=f"aks-nodepool1-{i:04d}") for i in range(200)]
    payloads = build_payloads(flips, status_page_url=STATUS_PAGE)
    sizes = [len(encode(p)) for p in payloads]
    assert all(size <= MAX_PAYLOAD_BYTES for size in sizes)
    assert len(payloads) > 1
    per_card = [sum(1 for r in _runs(p) if r == "Node: ") for p in payloads]
    assert sum(per_card) == 200
    nodes = [r for p in payloads for i, r in enumerate(_runs(p)) if _runs(p)[i - 1] == "Node: "]
    assert nodes == [f"aks-nodepool1-{i:04d}" for i in range(200)]
    # as few as fit: each card's flips plus the next one's first do not fit one card
    for i in range(len(payloads) - 1):
        upto = sum(per_card[: i + 1])
        start = upto - per_card[i]
        assert len(build_payloads(flips[start : upto + 1], status_page_url=STATUS_PAGE)) == 2


def test_size_boundary_is_measured_on_the_whole_utf8_payload() -> None:
    flips = [flip(node="nœud-é" * 10), flip(node="ノード" * 10)]
    together = len(encode(build_payloads(flips)[0]))
    assert len(build_payloads(flips, limit=together)) == 1
    assert len(build_payloads(flips, limit=together - 1)) == 2


def test_an_oversized_flip_is_shortened_visibly_never_dropped_never_over() -> None:
    (payload,) = build_payloads([oversized(), flip(node="small")])[:1]
    assert len(encode(payload)) <= MAX_PAYLOAD_BYTES
    runs = _runs(payload)
    assert any(SHORTENED in r for r in runs)
    assert any(r.startswith("\u2026 ") and "more evidence not shown" in r for r in runs)
    assert any(r.startswith("iptables -D INPUT 0") for r in runs)  # the first commands stay
    assert len(build_payloads([oversized()], limit=6_000)) == 1
    assert len(encode(build_payloads([oversized()], limit=6_000)[0])) <= 6_000


def test_hostile_text_stays_out_of_markdown_and_comes_out_literal() -> None:
    payloads = build_payloads(hostile())
    runs = [r for p in payloads for r in _runs(p)]
    markdown = [t for p in payloads for t in _markdown_texts(p)]
    for text in HOSTILE:
        visible = (
            text.replace("\r\n", LINE_BREAK)
            .replace("\n", LINE_BREAK)
            .replace("\r", LINE_BREAK)
            .replace("\u2028", LINE_BREAK)
            .replace("\t", " ")
            .replace("\x00", "\ufffd")
            .replace("\x1b", "\ufffd")
            .replace("\x7f", "\ufffd")
            .replace("\udcff", "\ufffd")
            .replace("{{", "{\u200b{")
        )
        assert visible in runs, text  # node, pool, title, evidence, command and note
        assert sum(1 for r in runs if visible in r) >= 5, text
        assert not any(text in m or visible in m for m in markdown), text
    for r in runs:
        assert not any(ch in r for ch in "\r\n\u2028\x00\x1b") and "{{" not in r


def test_escape_markdown_backslashes_every_markup_character() -> None:
    for text in HOSTILE:
        escaped = escape_markdown(text)
        assert "\n" not in escaped and "\r" not in escaped
        plain = []
        chars = iter(escaped)
        for ch in chars:
            if ch == "\\":
                nxt = next(chars)
                assert not nxt.isalnum() and nxt.isascii()
                plain.append(nxt)
            else:
                assert ch not in "*_[]()`#>-+<&.!|~{}", (text, escaped)
                plain.append(ch)
        assert "".join(plain).replace("\u200b", "") == (
            text.replace("\r\n", "\n")
            .translate({ord(c): LINE_BREAK for c in "\r\n\u2028"})
            .replace("\t", " ")
            .translate({0: "\ufffd", 0x1B: "\ufffd", 0x7F: "\ufffd", 0xDCFF: "\ufffd"})
        )
