"""The NSG evaluator: does Azure's NSG pair (subnet + NIC) allow a flow, and the exact fix.

Parse once, evaluate many:

    subnet = parse_nsg(doc, "subnet-nsg.json")
    ctx = TagContext(vnet_prefixes=(ip_network("10.224.0.0/12"),))
    verdict = evaluate_flow(Flow("inbound", "10.224.0.4", "10.224.0.5", 10250), subnet, None, ctx)
    fix = propose_fix(verdict, fix_source="10.224.0.0/16")
    findings = findings_for(verdict, subject, fix=fix)

Modules: model (the one rule model), parse (input shapes), tags (service tags), index (the
per-NSG precomputation), evaluate (the verdict), fix (the allow rule and az command), report
(Findings). Azure Virtual Network Manager security admin rules, evaluated before NSGs, are not
visible to this package.
"""

from __future__ import annotations

from shared.analysis.nsg.evaluate import (
    Flow,
    Layer,
    LayerResult,
    NsgFlowVerdict,
    NsgUndecided,
    NsgVerdict,
    RuleRef,
    evaluate_flow,
    match_rule,
)
from shared.analysis.nsg.fix import Fix, FixRule, az_rule_create, choose_priority, propose_fix
from shared.analysis.nsg.model import (
    Access,
    AddressSpec,
    Direction,
    Nsg,
    PortRange,
    Protocol,
    Rule,
)
from shared.analysis.nsg.parse import DEFAULT_RULES, parse_nsg, parse_nsg_text
from shared.analysis.nsg.report import findings_for
from shared.analysis.nsg.tags import ServiceTags, TagContext, load_service_tags

__all__ = [
    "DEFAULT_RULES",
    "Access",
    "AddressSpec",
    "Direction",
    "Fix",
    "FixRule",
    "Flow",
    "Layer",
    "LayerResult",
    "Nsg",
    "NsgFlowVerdict",
    "NsgUndecided",
    "NsgVerdict",
    "PortRange",
    "Protocol",
    "Rule",
    "RuleRef",
    "ServiceTags",
    "TagContext",
    "az_rule_create",
    "choose_priority",
    "evaluate_flow",
    "findings_for",
    "load_service_tags",
    "match_rule",
    "parse_nsg",
    "parse_nsg_text",
    "propose_fix",
]
