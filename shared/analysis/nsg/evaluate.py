"""Whether the NSGs on a subnet and a NIC allow one flow, and which rules decide it.

Semantics (network-security-group-how-it-works.md, network-security-groups-overview.md):
rules are processed in priority order and the first match wins; inbound traffic meets the
subnet NSG first and then the NIC NSG, outbound the NIC NSG first and then the subnet NSG;
both must allow; a layer without an NSG allows; traffic between two NICs of one subnet is
filtered like any other.

A rule that cannot be decided (a tag we cannot resolve, unknown ASG membership, an unknown
source port) is followed both ways: the verdict is "unknown" only if some combination of
undecided rules changes it, and each undecided rule says whether it matters.

Not visible here: Azure Virtual Network Manager security admin rules, which Azure evaluates
*before* NSGs ("Deny" and "Always allow" end the evaluation there). An NSG verdict of
"allow" therefore does not rule out a security admin rule denying the flow. Evaluation never
raises on a parsed Nsg and a valid Flow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.analysis.nsg.model import (
    Access,
    AddressSpec,
    Direction,
    IpAddress,
    Nsg,
    PortRange,
    Protocol,
    Rule,
)
from shared.analysis.nsg.tags import TagContext
from shared.errors import InputError

__all__ = [
    "Flow",
    "Layer",
    "LayerResult",
    "NsgFlowVerdict",
    "NsgUndecided",
    "NsgVerdict",
    "RuleRef",
    "evaluate_flow",
]


class NsgFlowVerdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    UNKNOWN = "unknown"


class Layer(StrEnum):
    SUBNET = "subnet"
    NIC = "nic"


_FLOW_PROTOCOLS = {p.value.lower(): p for p in Protocol if p is not Protocol.ANY}


def _direction(value: object) -> Direction:
    if isinstance(value, Direction):
        return value
    try:
        return Direction(str(value).strip().capitalize())
    except ValueError:
        raise InputError("flow", f"direction {value!r} is not inbound or outbound") from None


def _address(value: object, side: str) -> IpAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise InputError("flow", f"{side} {value!r} is not an IP address") from None


def _protocol(value: object) -> Protocol:
    text = value.value if isinstance(value, Protocol) else str(value)
    proto = _FLOW_PROTOCOLS.get(text.lower())
    if proto is None:
        raise InputError("flow", f"protocol {text!r} is not one of tcp, udp, icmp, esp, ah")
    return proto


def _port(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise InputError("flow", f"{name} {value!r} is not a port number 0-65535")
    return value


def _asg_set(value: object, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InputError("flow", f"{what} must be a collection of ASG ids")
    ids: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise InputError("flow", f"{what}: {item!r} is not an ASG id")
        if item.strip():
            ids.add(item.strip().lower())
    return frozenset(ids)


@dataclass(frozen=True, slots=True)
class Flow:
    """One connection attempt. `src_asgs`/`dst_asgs`: the ASGs each side's NIC belongs to
    (empty = none); None = membership unknown, so ASG rules become undecided."""

    direction: Direction
    src: IpAddress
    dst: IpAddress
    dport: int
    proto: Protocol = Protocol.TCP
    sport: int | None = None  # None = any/unknown source port
    src_asgs: frozenset[str] | None = frozenset()
    dst_asgs: frozenset[str] | None = frozenset()

    def __post_init__(self) -> None:
        # Callers may pass plain strings; store the normalised forms.
        setattr_ = object.__setattr__
        setattr_(self, "direction", _direction(self.direction))
        setattr_(self, "src", _address(self.src, "src"))
        setattr_(self, "dst", _address(self.dst, "dst"))
        setattr_(self, "proto", _protocol(self.proto))
        setattr_(self, "dport", _port(self.dport, "dport"))
        setattr_(self, "sport", None if self.sport is None else _port(self.sport, "sport"))
        setattr_(self, "src_asgs", _asg_set(self.src_asgs, "src_asgs"))
        setattr_(self, "dst_asgs", _asg_set(self.dst_asgs, "dst_asgs"))

    def label(self) -> str:
        sport = "" if self.sport is None else f":{self.sport}"
        return (
            f"{self.direction.value.lower()} {self.proto.value.lower()} "
            f"{self.src}{sport} -> {self.dst}:{self.dport}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction.value.lower(),
            "protocol": self.proto.value.lower(),
            "src": str(self.src),
            "dst": str(self.dst),
            "sport": self.sport,
            "dport": self.dport,
            "src_asgs": None if self.src_asgs is None else sorted(self.src_asgs),
            "dst_asgs": None if self.dst_asgs is None else sorted(self.dst_asgs),
        }


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule as reported: which NSG, which layer, which rule."""

    nsg: str
    nsg_id: str
    rule: str
    priority: int
    access: Access
    direction: Direction
    layer: Layer
    default: bool

    @classmethod
    def of(cls, nsg: Nsg, rule: Rule, layer: Layer) -> RuleRef:
        return cls(
            nsg.label, nsg.id, rule.name, rule.priority, rule.access, rule.direction, layer,
            rule.default,
        )  # fmt: skip

    def label(self) -> str:
        return (
            f"{self.layer.value} NSG {self.nsg}: rule {self.rule} "
            f"(priority {self.priority}, {self.access.value})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nsg": self.nsg,
            "nsg_id": self.nsg_id,
            "rule": self.rule,
            "priority": self.priority,
            "access": self.access.value,
            "direction": self.direction.value,
            "layer": self.layer.value,
            "default_rule": self.default,
        }


@dataclass(frozen=True, slots=True)
class NsgUndecided:
    """A rule that might match the flow; `matters` = some outcome depends on it."""

    rule: RuleRef | None  # None: no rule matched for certain (the input lacked a catch-all)
    reasons: tuple[str, ...]
    matters: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": None if self.rule is None else self.rule.to_json(),
            "reasons": list(self.reasons),
            "matters": self.matters,
        }


@dataclass(frozen=True, slots=True)
class LayerResult:
    layer: Layer
    nsg: Nsg | None  # None: no NSG on this layer, which allows everything
    outcome: NsgFlowVerdict
    decided_by: RuleRef | None  # the first rule that matches for certain
    undecided: tuple[NsgUndecided, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer.value,
            "nsg": None if self.nsg is None else self.nsg.label,
            "nsg_id": None if self.nsg is None else self.nsg.id,
            "outcome": self.outcome.value,
            "decided_by": None if self.decided_by is None else self.decided_by.to_json(),
        }


@dataclass(frozen=True, slots=True)
class NsgVerdict:
    verdict: NsgFlowVerdict
    flow: Flow
    layers: tuple[LayerResult, ...]  # in evaluation order for the flow's direction

    @property
    def decided_by(self) -> tuple[RuleRef, ...]:
        """Allow: each layer's allowing rule. Deny: each denying rule. Unknown: decided layers."""
        deny = self.verdict is NsgFlowVerdict.DENY
        wanted = {NsgFlowVerdict.DENY} if deny else {NsgFlowVerdict.ALLOW, NsgFlowVerdict.DENY}
        return tuple(
            lr.decided_by
            for lr in self.layers
            if lr.decided_by is not None and lr.outcome in wanted
        )

    @property
    def undecided(self) -> tuple[NsgUndecided, ...]:
        return tuple(u for lr in self.layers for u in lr.undecided)

    @property
    def denying_layers(self) -> tuple[LayerResult, ...]:
        return tuple(lr for lr in self.layers if lr.outcome is NsgFlowVerdict.DENY)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "decided_by": [r.to_json() for r in self.decided_by],
            "undecided": [u.to_json() for u in self.undecided],
            "layers": [lr.to_json() for lr in self.layers],
            "flow": self.flow.to_json(),
        }


def _ports_match(ports: tuple[PortRange, ...], port: int | None) -> bool | None:
    if port is None:  # only "all ports" is certain for an unknown source port
        return True if any(p.low == 0 and p.high == 65535 for p in ports) else None
    return any(p.low <= port <= p.high for p in ports)


def _address_match(
    spec: AddressSpec,
    addr: IpAddress,
    asgs: frozenset[str] | None,
    ctx: TagContext,
    side: str,
    reasons: list[str],
) -> bool | None:
    if spec.any or addr in spec.range_set:
        return True
    state: bool | None = False
    for tag in spec.tags:
        hit, why = ctx.contains(tag, addr)
        if hit:
            return True
        if hit is None:
            state = None
            reasons.append(f"{side}: {why}")
    if spec.asgs:
        if asgs is None:
            state = None
            reasons.append(f"{side}: application security group membership not given")
        elif spec.asgs & asgs:
            return True
    return state


def match_rule(rule: Rule, flow: Flow, ctx: TagContext) -> tuple[bool | None, tuple[str, ...]]:
    """True / False / None (undecided, with the reasons) for one rule and one flow."""
    reasons: list[str] = []
    state: bool | None = True
    if rule.protocol is Protocol.ANY:
        if flow.proto in (Protocol.ESP, Protocol.AH):
            # The overview says "Any encompasses TCP, UDP, and ICMP"; it says nothing of ESP/AH.
            state = None
            reasons.append(f"protocol: whether Any covers {flow.proto.value} is not documented")
    elif rule.protocol is not flow.proto:
        return False, ()
    for part in (
        _ports_match(rule.destination_ports, flow.dport),
        _ports_match(rule.source_ports, flow.sport),
    ):
        if part is False:
            return False, ()
        if part is None:
            state = None
            reasons.append("source port: not given, and the rule names specific source ports")
    for part in (
        _address_match(rule.source, flow.src, flow.src_asgs, ctx, "source", reasons),
        _address_match(rule.destination, flow.dst, flow.dst_asgs, ctx, "destination", reasons),
    ):
        if part is False:
            return False, ()
        if part is None:
            state = None
    return state, tuple(reasons)


@dataclass(slots=True)
class _Walk:
    """One layer's walk: the undecided rules met, then the first certain match (if any)."""

    nsg: Nsg
    layer: Layer
    undecided: list[tuple[Rule, tuple[str, ...]]]
    certain: Rule | None

    def possible(self) -> set[Access]:
        out = {rule.access for rule, _ in self.undecided}
        if self.certain is None:
            out |= {Access.ALLOW, Access.DENY}
        else:
            out.add(self.certain.access)
        return out


def _walk(nsg: Nsg, layer: Layer, flow: Flow, ctx: TagContext) -> _Walk:
    rules = nsg.rules(flow.direction)
    cand = nsg.index(flow.direction).candidates(
        flow.proto, flow.sport, flow.dport, flow.src.version, int(flow.src),
        flow.dst.version, int(flow.dst),
    )  # fmt: skip
    walk = _Walk(nsg, layer, [], None)
    while cand:
        low = cand & -cand
        cand ^= low
        rule = rules[low.bit_length() - 1]
        state, reasons = match_rule(rule, flow, ctx)
        if state is True:
            walk.certain = rule
            break
        if state is None:
            walk.undecided.append((rule, reasons))
    return walk


def _outcome(possible: set[Access]) -> NsgFlowVerdict:
    if possible == {Access.ALLOW}:
        return NsgFlowVerdict.ALLOW
    if possible == {Access.DENY}:
        return NsgFlowVerdict.DENY
    return NsgFlowVerdict.UNKNOWN


def _layer_result(walk: _Walk, overall: NsgFlowVerdict) -> LayerResult:
    outcome = _outcome(walk.possible())
    # An undecided rule matters only when the overall verdict is open, its layer is open,
    # and what would happen if it did not match (later rules) differs from its own access.
    open_ = overall is NsgFlowVerdict.UNKNOWN and outcome is NsgFlowVerdict.UNKNOWN
    tail: set[Access] = (
        {Access.ALLOW, Access.DENY} if walk.certain is None else {walk.certain.access}
    )
    items: list[NsgUndecided] = []
    for rule, reasons in reversed(walk.undecided):
        matters = open_ and any(a is not rule.access for a in tail)
        items.append(NsgUndecided(RuleRef.of(walk.nsg, rule, walk.layer), reasons, matters))
        tail.add(rule.access)
    items.reverse()
    if walk.certain is None:
        items.append(
            NsgUndecided(
                None,
                (f"no rule of NSG {walk.nsg.label} matches for certain",),
                open_,
            )
        )
    decided = None if walk.certain is None else RuleRef.of(walk.nsg, walk.certain, walk.layer)
    return LayerResult(walk.layer, walk.nsg, outcome, decided, tuple(items))


def evaluate_flow(
    flow: Flow, subnet_nsg: Nsg | None, nic_nsg: Nsg | None, context: TagContext
) -> NsgVerdict:
    """The verdict of both layers, in Azure's order for the flow's direction."""
    if flow.direction is Direction.INBOUND:
        order = ((Layer.SUBNET, subnet_nsg), (Layer.NIC, nic_nsg))
    else:
        order = ((Layer.NIC, nic_nsg), (Layer.SUBNET, subnet_nsg))
    walks: list[_Walk | Layer] = [
        layer if nsg is None else _walk(nsg, layer, flow, context) for layer, nsg in order
    ]
    # Deny is possible if any layer may deny; allow only if every layer may allow.
    possibles = [{Access.ALLOW} if isinstance(w, Layer) else w.possible() for w in walks]
    may_allow = all(Access.ALLOW in p for p in possibles)
    may_deny = any(Access.DENY in p for p in possibles)
    overall = (
        NsgFlowVerdict.UNKNOWN
        if may_allow and may_deny
        else NsgFlowVerdict.ALLOW
        if may_allow
        else NsgFlowVerdict.DENY
    )
    layers = tuple(
        LayerResult(w, None, NsgFlowVerdict.ALLOW, None, ())
        if isinstance(w, Layer)
        else _layer_result(w, overall)
        for w in walks
    )
    return NsgVerdict(overall, flow, layers)
