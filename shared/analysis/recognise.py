"""What does this text look like? One small recogniser for every input tunnelwatch reads.

`recognise(text)` names the shape of a capture (after the paste pre-pass) from its first
telling line or, for JSON, from the keys near its start: iptables-save, iptables -S,
iptables -L, nft -j, nft list ruleset (text), ufw status, nc output, a run command result
(JSON or its message), an az CLI / PowerShell error, an ARM error body, NSG JSON, Azure
Monitor metrics (SNAT), a service tags file. None when nothing tells.

`foreign(text, analyzer)` is what an analyzer asks before parsing: the message to refuse the
input with (exit 2) when it is clearly another analyzer's input, else None. An analyzer
never refuses on a guess: an input with no telling line is left to its parser as before.

Linear: at most _JSON_HEAD characters are searched for keys, at most _LINES lines of at most
_HEAD_CHARS characters are matched by anchored patterns without nested quantifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["EXPECTS", "Shape", "foreign", "recognise"]

_JSON_HEAD = 64 * 1024
_LINES = 200
_HEAD_CHARS = 512


@dataclass(frozen=True, slots=True)
class _Info:
    label: str  # "`ufw status` output"
    analyzers: frozenset[str]  # the analyzers that read it
    remedy: str  # what to do instead, for an analyzer that does not read it


def _use(kind: str) -> str:
    return f"use `tunnelwatch analyze {kind}`"


class Shape(Enum):
    IPTABLES_SAVE = _Info("`iptables-save` output", frozenset({"iptables"}), _use("iptables"))
    IPTABLES_RULES = _Info("`iptables -S` output", frozenset({"iptables"}), _use("iptables"))
    IPTABLES_LIST = _Info("`iptables -L` output", frozenset({"iptables"}), _use("iptables"))
    NFT_JSON = _Info("`nft -j list ruleset` output", frozenset({"nft"}), _use("nft"))
    NFT_TEXT = _Info(
        "`nft list ruleset` output (text)",
        frozenset(),
        "capture it as JSON with `nft -j list ruleset` and use `tunnelwatch analyze nft`",
    )
    UFW_STATUS = _Info("`ufw status` output", frozenset({"ufw"}), _use("ufw"))
    NC = _Info("connection test output (nc, ncat, bash /dev/tcp)", frozenset({"nc"}), _use("nc"))
    RUNCOMMAND_JSON = _Info(
        "a run command result (JSON)", frozenset({"runcommand"}), _use("runcommand")
    )
    RUNCOMMAND_MESSAGE = _Info(
        "a run command message (`Enable succeeded: [stdout] ...`)",
        frozenset({"runcommand"}),
        _use("runcommand"),
    )
    AZ_ERROR = _Info(
        "an az CLI / Azure PowerShell error",
        frozenset({"runcommand"}),
        "the command that printed it failed; for a run command's error " + _use("runcommand"),
    )
    ARM_ERROR = _Info(
        "an Azure error response (JSON `error` body)",
        frozenset({"runcommand"}),
        "the request that got it failed; for a run command's error " + _use("runcommand"),
    )
    NSG_JSON = _Info("network security group JSON", frozenset({"nsg"}), _use("nsg"))
    SNAT_JSON = _Info("Azure Monitor metrics JSON (SNAT)", frozenset({"snat"}), _use("snat"))
    SERVICE_TAGS = _Info(
        "an Azure service tags file",
        frozenset({"nsg-service-tags"}),
        "pass it to `tunnelwatch analyze nsg --service-tags`",
    )

    @property
    def label(self) -> str:
        return self.value.label


# What each analyzer reads, as its refusals name it.
EXPECTS: dict[str, str] = {
    "iptables": "iptables-save, iptables -S or iptables -L output",
    "nft": "`nft -j list ruleset` output",
    "ufw": "`ufw status` output",
    "nc": "connection test output",
    "runcommand": "a run command result",
    "nsg": "network security group JSON",
    "snat": "Azure Monitor SNAT metrics JSON",
    "nsg-service-tags": "an Azure service tags file",
}

# JSON: (key marker, shape), the first shape with a marker present wins, in this order.
_JSON_MARKERS: tuple[tuple[tuple[str, ...], Shape], ...] = (
    (('"ProvisioningState/', '"ComponentStatus/', '"executionState"', '"instanceView"'),
     Shape.RUNCOMMAND_JSON),
    (('"nftables"',), Shape.NFT_JSON),
    (('"securityRules"', '"defaultSecurityRules"', '"effectiveSecurityRules"',
      '"sourceAddressPrefix"', '"destinationPortRange"'), Shape.NSG_JSON),
    (('"timeseries"',), Shape.SNAT_JSON),
    (('"changeNumber"',), Shape.SERVICE_TAGS),
    (('"error":{', '"error": {', '"error" : {'), Shape.ARM_ERROR),
)  # fmt: skip
_JSON_START = re.compile(r"\s*(?:\{|\[\s*[{\]\"])")

# Text: the first line matching one of these decides.
_LINE_MARKERS: tuple[tuple[re.Pattern[str], Shape], ...] = (
    (re.compile(r"(?:Enable|Install|Uninstall|Update|Disable) (?:succeeded|failed)\b", re.I),
     Shape.RUNCOMMAND_MESSAGE),
    (re.compile(r"\[std(?:out|err)\]\s*$"), Shape.RUNCOMMAND_MESSAGE),
    (re.compile(r"(?:ProvisioningState|ComponentStatus)/"), Shape.RUNCOMMAND_MESSAGE),
    (re.compile(r"ERROR: \([A-Za-z]+\)"), Shape.AZ_ERROR),
    (re.compile(r"\((?!UNKNOWN\))[A-Za-z]+\) \S"), Shape.AZ_ERROR),
    (re.compile(r"(?:ErrorCode|StatusCode) ?: \w"), Shape.AZ_ERROR),
    (re.compile(r"(?:\S+\.)?(?:CloudError|HttpResponseError|ResourceExistsError)\b"),
     Shape.AZ_ERROR),
    (re.compile(r"Invoke-Az\w+ ?:"), Shape.AZ_ERROR),
    (re.compile(r"# Generated by ip6?tables-(?:legacy-|nft-)?save"), Shape.IPTABLES_SAVE),
    (re.compile(r"\*(?:filter|nat|mangle|raw|security)\s*$"), Shape.IPTABLES_SAVE),
    (re.compile(r":\S+ (?:ACCEPT|DROP|-) \[\d+:\d+\]"), Shape.IPTABLES_SAVE),
    (re.compile(r"-P \S+ (?:ACCEPT|DROP)\s*$"), Shape.IPTABLES_RULES),
    (re.compile(r"-[AN] \S"), Shape.IPTABLES_RULES),
    (re.compile(r"Chain \S+ \((?:policy |\d+ references)"), Shape.IPTABLES_LIST),
    (re.compile(r"table (?:ip|ip6|inet|arp|bridge|netdev) \S+ \{"), Shape.NFT_TEXT),
    (re.compile(r"Status: (?:active|inactive)\s*$"), Shape.UFW_STATUS),
    (re.compile(r"To +Action +From\s*$"), Shape.UFW_STATUS),
    (re.compile(r"Connection to \S+ (?:\d+ )?port "), Shape.NC),
    (re.compile(r"(?:nc|Ncat|ncat|netcat): "), Shape.NC),
    (re.compile(r"\(UNKNOWN\) \[|\S+ \(\S+:\d+\) open\b"), Shape.NC),
    (re.compile(r"target=\S+:\d+\s*$"), Shape.NC),
    (re.compile(r"(?:-?bash|sh): (?:line \d+: )?(?:connect:|/dev/tcp/)"), Shape.NC),
)  # fmt: skip


def recognise(text: str) -> Shape | None:
    """The shape of `text` (cleaned by the paste pre-pass), or None when nothing tells."""
    if _JSON_START.match(text[:_HEAD_CHARS]):
        head = text[:_JSON_HEAD]
        for markers, shape in _JSON_MARKERS:
            if any(m in head for m in markers):
                return shape
        return None
    seen = 0
    start = 0
    n = len(text)
    while start < n and seen < _LINES:
        end = text.find("\n", start)
        if end < 0:
            end = n
        line = text[start : min(end, start + _HEAD_CHARS)].strip()
        start = end + 1
        if not line:
            continue
        seen += 1
        for pattern, shape in _LINE_MARKERS:
            if pattern.match(line):
                return shape
    return None


def foreign(text: str, analyzer: str) -> str | None:
    """The refusal of `analyzer` ("iptables", "nc", ...) for `text` when it is clearly the
    input of another analyzer: "this looks like `ufw status` output, not `iptables -L` ...;
    use `tunnelwatch analyze ufw`". None when it may be its own input."""
    shape = recognise(text)
    if shape is None or analyzer in shape.value.analyzers:
        return None
    return f"this looks like {shape.label}, not {EXPECTS[analyzer]}; {shape.value.remedy}"
