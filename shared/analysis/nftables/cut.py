"""Telling a cut `nft -j` capture from text that is not nft JSON at all.

`nft -j list ruleset` prints one JSON document. A capture that ends early (a paste cut short,
a run-command output past its 4,096 bytes) is a strict prefix of it: every character read so
far fits the JSON grammar, and the text ends before the document does. That is inconclusive
(exit 3, "capture incomplete"), not unreadable (exit 2): the rules after the cut are unknown.

`json_cut` (shared.analysis.jsoncut) tells the two apart. Pure.
"""

from __future__ import annotations

from shared.analysis.jsoncut import json_cut
from shared.errors import InputError

__all__ = ["CaptureIncomplete", "json_cut", "looks_like_nft"]

_NFT_START = '{"nftables":['


class CaptureIncomplete(InputError):
    """The input is the start of a document whose end is missing: inconclusive, not bad."""


def looks_like_nft(text: str) -> bool:
    """Whether the text starts as `nft -j` output does (`{"nftables": [`, spaces aside), or is
    a cut of that start."""
    head = "".join(text[:64].split())[: len(_NFT_START)]
    return bool(head) and _NFT_START.startswith(head)
