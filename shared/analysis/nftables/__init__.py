"""The nftables engine: read `nft -j list ruleset`, decide what the native tables do to the
tunnel's TCP connection on its way into the node, say why and how to fix it.

    rs = parse_ruleset(text, source)        # InputError if the JSON is malformed
    v = evaluate_input(rs, Packet(...))     # accept / drop / reject / unknown, with a trace
    findings = findings_for(v, subject)     # cause 3, check "node.nftables", the narrowest fix

iptables-nft's own tables (ip/ip6 filter, nat, mangle, raw, security holding xt expressions
or iptables' chain names) are skipped and listed in the verdict: the iptables engine reads
them from iptables-save. A packet must pass both.

Modules: model (data), values (field names and constants), render (nft syntax for evidence),
parse (JSON to model), match (one match or map lookup), evaluate (the walk), remediation
(findings and fix commands).
"""

from __future__ import annotations

from shared.analysis.nftables.evaluate import Limits, evaluate_input
from shared.analysis.nftables.model import (
    NftDecidedBy,
    NftRuleset,
    NftTraceStep,
    NftUndecided,
    NftVerdict,
)
from shared.analysis.nftables.parse import parse_ruleset
from shared.analysis.nftables.remediation import CHECK, findings_for, fix_commands
from shared.analysis.walk import Packet, PacketVerdict

__all__ = [
    "CHECK",
    "Limits",
    "NftDecidedBy",
    "NftRuleset",
    "NftTraceStep",
    "NftUndecided",
    "NftVerdict",
    "Packet",
    "PacketVerdict",
    "evaluate_input",
    "findings_for",
    "fix_commands",
    "parse_ruleset",
]
