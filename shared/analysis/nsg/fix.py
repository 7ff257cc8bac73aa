"""The concrete fix for a denied flow: one allow rule per denying NSG, and its az command.

For each layer that denies, the allow rule goes at the free priority closest *below* the
first rule of that layer that denies (or may deny) the flow: lower numbers win, and the
closest slot disturbs the fewest other rules. Priorities are unique per NSG and direction
and custom rules live in 100-4096. When no slot is free below the deny (a deny at 100, or a
packed range), we say so and propose moving the deny up to the nearest free number and
putting the allow rule where the deny was, naming any rules that would then be evaluated
before the deny. tunnelwatch never runs these commands.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from shared.analysis.nsg.evaluate import Layer, LayerResult, NsgFlowVerdict, NsgVerdict, RuleRef
from shared.analysis.nsg.model import Access, Direction, IpNetwork, Nsg, Protocol, Rule
from shared.analysis.shell import Command, command, placeholder
from shared.errors import InputError

__all__ = [
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "Fix",
    "FixRule",
    "az_rule_create",
    "choose_priority",
    "propose_fix",
    "rule_name",
]

MIN_PRIORITY, MAX_PRIORITY = 100, 4096
_NAME_MAX = 80  # network-security-groups-overview.md: names up to 80 characters
_RG_PLACEHOLDER = placeholder("resource-group")
_NSG_PLACEHOLDER = placeholder("nsg-name")


@dataclass(frozen=True, slots=True)
class FixRule:
    """The allow rule for one denying layer (priority None: no free slot, see `commands`)."""

    layer: Layer
    nsg: str
    nsg_id: str
    resource_group: str
    nsg_name: str
    denying_rule: RuleRef
    name: str
    priority: int | None
    direction: Direction
    protocol: Protocol
    source_prefixes: tuple[str, ...]
    destination_prefixes: tuple[str, ...]
    destination_port: int
    commands: tuple[str, ...]
    notes: tuple[str, ...]
    # Set when no priority below the deny was free: the deny moves here first and the allow
    # takes the deny's old priority (commands hold both steps, in order).
    moves_deny_to: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer.value,
            "nsg": self.nsg,
            "nsg_id": self.nsg_id,
            "resource_group": self.resource_group or None,
            "denying_rule": self.denying_rule.to_json(),
            "rule": {
                "name": self.name,
                "priority": self.priority,
                "direction": self.direction.value,
                "access": Access.ALLOW.value,
                "protocol": self.protocol.value,
                "source_address_prefixes": list(self.source_prefixes),
                "source_port_ranges": ["*"],
                "destination_address_prefixes": list(self.destination_prefixes),
                "destination_port_ranges": [str(self.destination_port)],
            },
            "moves_deny_to": self.moves_deny_to,
            "commands": list(self.commands),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class Fix:
    rules: tuple[FixRule, ...]

    @property
    def commands(self) -> tuple[str, ...]:
        return tuple(c for r in self.rules for c in r.commands)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(n for r in self.rules for n in r.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [r.to_json() for r in self.rules],
            "commands": list(self.commands),
            "notes": list(self.notes),
        }


def choose_priority(used: Collection[int], deny_priority: int) -> int | None:
    """The free priority closest below `deny_priority` within 100-4096, or None."""
    for p in range(min(deny_priority - 1, MAX_PRIORITY), MIN_PRIORITY - 1, -1):
        if p not in used:
            return p
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def rule_name(
    protocol: Protocol, port: int, direction: Direction, peer: str, taken: Collection[str] = ()
) -> str:
    """`allow-tunnel-tcp-10250-from-10-224-0-0-16` (outbound: `...-to-<destination>`),
    cut to Azure's 80 characters and made unique among `taken` (lower-case names)."""
    word = "from" if direction is Direction.INBOUND else "to"
    base = f"allow-tunnel-{protocol.value.lower()}-{port}-{word}-{_slug(peer)}"
    name = base[:_NAME_MAX].rstrip("-")
    n = 2
    while name.lower() in taken:
        suffix = f"-{n}"
        name = base[: _NAME_MAX - len(suffix)].rstrip("-") + suffix
        n += 1
    return name


def az_rule_create(
    *,
    resource_group: str,
    nsg_name: str,
    name: str,
    priority: int,
    direction: Direction,
    protocol: Protocol,
    sources: tuple[str, ...],
    destinations: tuple[str, ...],
    port: int,
) -> Command:
    return command(
        *("az", "network", "nsg", "rule", "create"),
        *("--resource-group", resource_group or _RG_PLACEHOLDER),
        *("--nsg-name", nsg_name or _NSG_PLACEHOLDER),
        *("--name", name, "--priority", priority, "--direction", direction.value),
        *("--access", "Allow", "--protocol", protocol.value),
        *("--source-address-prefixes", *sources, "--source-port-ranges", "*"),
        *("--destination-address-prefixes", *destinations),
        *("--destination-port-ranges", port),
    )


def _az_rule_move(resource_group: str, nsg_name: str, name: str, priority: int) -> Command:
    return command(
        *("az", "network", "nsg", "rule", "update"),
        *("--resource-group", resource_group or _RG_PLACEHOLDER),
        *("--nsg-name", nsg_name or _NSG_PLACEHOLDER),
        *("--name", name, "--priority", priority),
    )


def _host_prefix(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"{addr}/{addr.max_prefixlen}"


def _as_network(value: IpNetwork | str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise InputError(what, f"{value!r} is not a CIDR prefix") from None


def _blocking_rule(lr: LayerResult, nsg: Nsg) -> Rule | None:
    """The first rule of the layer that denies or may deny the flow: the one to beat."""
    candidates = [u.rule for u in lr.undecided if u.rule is not None]
    if lr.decided_by is not None:
        candidates.append(lr.decided_by)
    denies = [r for r in candidates if r.access is Access.DENY]
    if not denies:
        return None
    first = min(denies, key=lambda r: r.priority)
    return next((r for r in nsg.rules(first.direction) if r.priority == first.priority), None)


def _fix_layer(
    lr: LayerResult, nsg: Nsg, blocking: Rule, verdict: NsgVerdict, src: str, dst: str
) -> FixRule:
    flow = verdict.flow
    ref = RuleRef.of(nsg, blocking, lr.layer)
    used = nsg.priorities(flow.direction)
    peer = src if flow.direction is Direction.INBOUND else dst
    name = rule_name(flow.proto, flow.dport, flow.direction, peer, nsg.rule_names())
    notes: list[str] = []
    if lr.decided_by is not None and lr.decided_by.priority != blocking.priority:
        notes.append(
            f"rule {blocking.name} (priority {blocking.priority}) may also deny this flow, "
            "so the allow rule goes before it"
        )

    def create(priority: int) -> Command:
        return az_rule_create(
            resource_group=nsg.resource_group,
            nsg_name=nsg.name,
            name=name,
            priority=priority,
            direction=flow.direction,
            protocol=flow.proto,
            sources=(src,),
            destinations=(dst,),
            port=flow.dport,
        )

    priority = choose_priority(used, blocking.priority)
    moved_to: int | None = None
    commands: list[str] = []
    if priority is not None:
        commands.append(create(priority))
    else:
        above = next(
            (p for p in range(blocking.priority + 1, MAX_PRIORITY + 1) if p not in used), None
        )
        if blocking.default or above is None:
            notes.append(
                f"no free priority below {blocking.name} ({blocking.priority}) in NSG "
                f"{nsg.label}: remove or merge rules to free one, or change {blocking.name} "
                f"so it no longer matches {flow.proto.value} {flow.dport} from {src}"
            )
        else:
            between = [
                r.name for r in nsg.rules(flow.direction) if blocking.priority < r.priority < above
            ]
            notes.append(
                f"no free priority below deny rule {blocking.name} ({blocking.priority}) in NSG "
                f"{nsg.label}: change the deny instead: move it to {above} and put the allow "
                f"rule at {blocking.priority} (or narrow the deny so it no longer matches "
                f"{flow.proto.value} {flow.dport} from {src})"
            )
            if between:
                notes.append(
                    "moving the deny lets these rules be evaluated before it: " + ", ".join(between)
                )
            commands.append(_az_rule_move(nsg.resource_group, nsg.name, blocking.name, above))
            commands.append(create(blocking.priority))
            priority = blocking.priority
            moved_to = above
    if not nsg.resource_group or not nsg.name:
        notes.append(
            f"the input for NSG {nsg.label} had no resource id: replace "
            f"{_RG_PLACEHOLDER} / {_NSG_PLACEHOLDER} in the command"
        )
    return FixRule(
        layer=lr.layer,
        nsg=nsg.label,
        nsg_id=nsg.id,
        resource_group=nsg.resource_group,
        nsg_name=nsg.name,
        denying_rule=ref,
        name=name,
        priority=priority,
        direction=flow.direction,
        protocol=flow.proto,
        source_prefixes=(src,),
        destination_prefixes=(dst,),
        destination_port=flow.dport,
        commands=tuple(commands),
        notes=tuple(notes),
        moves_deny_to=moved_to,
    )


def propose_fix(
    verdict: NsgVerdict,
    *,
    fix_source: IpNetwork | str | None = None,
    fix_destination: IpNetwork | str | None = None,
) -> Fix | None:
    """An allow rule for each denying layer; None unless the verdict is deny.

    The rule's source is `fix_source` (the scan passes the node subnet) or the flow's source
    as a host prefix; its destination is `fix_destination` or the flow's destination.
    """
    if verdict.verdict is not NsgFlowVerdict.DENY:
        return None
    flow = verdict.flow
    src = _as_network(fix_source, "fix source") or _host_prefix(flow.src)
    dst = _as_network(fix_destination, "fix destination") or _host_prefix(flow.dst)
    rules: list[FixRule] = []
    for lr in verdict.denying_layers:
        # A denying layer always has an NSG and a deny rule; the checks keep mypy honest.
        blocking = None if lr.nsg is None else _blocking_rule(lr, lr.nsg)
        if lr.nsg is not None and blocking is not None:
            rules.append(_fix_layer(lr, lr.nsg, blocking, verdict, src, dst))
    return Fix(tuple(rules))
