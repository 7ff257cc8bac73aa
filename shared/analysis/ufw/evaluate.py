"""Decides whether UFW lets one new inbound connection (TCP 10250 by default) through.

ufw's user rules are first-match in listed order, per family: IPv4 rules for an IPv4
source, `(v6)` rules (and rules with IPv6 addresses) for IPv6. Only IN rules apply to
traffic to the node (plain `ufw status` prints them without the IN); OUT and routed (FWD)
rules never match it. LIMIT accepts a new connection unless the same source opened six in
30 seconds. When no user rule matches, the default incoming policy decides; plain
`ufw status` does not print it, so then the caller must pass it or the answer is unknown.

ufw's own before.rules (and before6.rules) run before the user rules but are not shown by
`ufw status`; as shipped they accept loopback, RELATED/ESTABLISHED, some ICMP, DHCP replies,
mDNS and UPnP, and drop INVALID packets: nothing that lets a NEW TCP SYN from another host
to 10250 through, so they do not change the answer for the tunnel. after.rules only skip
NetBIOS/DHCP/broadcast noise to the default policy. Edited before/after.rules are not
visible in a status capture; the iptables analyzer sees them in the raw ruleset.

A rule on the client's source port (`ufw allow from any app Samba` prints `Anywhere ALLOW
IN 139,445/tcp (Samba)`; `ufw deny proto tcp from any port 139`) is decided with the range
the client's source port comes from, `src_ports`: by default Linux's ephemeral range
32768-60999 (net.ipv4.ip_local_port_range, per network namespace). The tunnel's connections
to the kubelet are opened by the tunnel agent (konnectivity-agent, in a pod on a node)
with connect() and no bind, so their source port is one of these; a rule whose source ports
miss the range never matches, one that covers it always does, and one that overlaps it is
undecided. The verdict says so in a note whenever such a rule was decided this way.

A rule the capture cannot decide (an interface, destination or source we were not told,
an application profile we do not know, source ports that overlap the range) is followed
both ways: it makes the verdict unknown only if the two branches disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.analysis.ufw.apps import app_ports
from shared.analysis.ufw.model import (
    Action,
    Direction,
    Policy,
    State,
    UfwRule,
    UfwStatus,
)
from shared.errors import InputError

__all__ = [
    "EPHEMERAL_PORTS",
    "INCOMPLETE",
    "IPAddress",
    "UfwFlowVerdict",
    "UfwUndecided",
    "UfwVerdict",
    "evaluate",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
INCOMPLETE = "capture incomplete"
# Linux's default net.ipv4.ip_local_port_range (it also bounds IPv6 ephemeral ports).
EPHEMERAL_PORTS = (32768, 60999)


class UfwFlowVerdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REJECT = "reject"
    LIMIT = "limit"  # allowed, rate-limited per source address
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class UfwUndecided:
    """A rule (or the default policy, rule None) the capture cannot decide, and why."""

    rule: UfwRule | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        r = self.rule
        return {
            "rule": None if r is None else r.number,
            "line": None if r is None else r.line,
            "text": None if r is None else r.text,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class UfwVerdict:
    """The answer for one flow. `rule` is the rule that decides (None: default or unknown);
    `shadowing` lists the rules that may drop, reject or limit the flow: an appended
    `ufw allow` would come after them, so a fix must be inserted first."""

    status: UfwStatus
    verdict: UfwFlowVerdict
    rule: UfwRule | None
    default_incoming: Policy | None
    reason: str
    port: int
    proto: str
    src: IPAddress | None = None
    dst: IPAddress | None = None
    in_iface: str | None = None
    family: int | None = None  # 4 or 6 when known from --src/--dst
    undecided: tuple[UfwUndecided, ...] = ()
    shadowing: tuple[UfwRule, ...] = ()
    notes: tuple[str, ...] = ()
    src_ports: tuple[int, int] = EPHEMERAL_PORTS  # the client source ports assumed

    def flow_text(self) -> str:
        parts = [f"{self.proto.upper()} {self.port}"]
        if self.src is not None:
            parts.append(f"from {self.src}")
        if self.dst is not None:
            parts.append(f"to {self.dst}")
        if self.in_iface is not None:
            parts.append(f"on {self.in_iface}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.status.source,
            "active": self.status.active,
            "state": self.status.state.value,
            "format": None if self.status.format is None else self.status.format.value,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "rule": None if self.rule is None else self.rule.to_json(),
            "default_incoming": None
            if self.default_incoming is None
            else self.default_incoming.value,
            "undecided": [u.to_json() for u in self.undecided],
            "flow": {
                "port": self.port,
                "proto": self.proto,
                "src": None if self.src is None else str(self.src),
                "dst": None if self.dst is None else str(self.dst),
                "in_iface": self.in_iface,
                "src_ports": list(self.src_ports),
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class _Flow:
    port: int
    proto: str
    src: IPAddress | None
    dst: IPAddress | None
    in_iface: str | None
    src_ports: tuple[int, int] = EPHEMERAL_PORTS


@dataclass(frozen=True, slots=True)
class _Outcome:
    verdict: UfwFlowVerdict
    rule: UfwRule | None
    undecided: tuple[UfwUndecided, ...]


_PROTOCOLS = ("tcp", "udp")


def evaluate(
    status: UfwStatus,
    port: int = 10250,
    proto: str = "tcp",
    src: IPAddress | None = None,
    dst: IPAddress | None = None,
    in_iface: str | None = None,
    default_incoming: Policy | None = None,
    src_ports: tuple[int, int] = EPHEMERAL_PORTS,
) -> UfwVerdict:
    """Decide one new inbound connection. Raises InputError for contradictory arguments.

    `src_ports` is the range the client's source port is taken from (see the module doc)."""
    if proto not in _PROTOCOLS:
        raise InputError("arguments", f"protocol {proto!r} is not tcp or udp")
    if not 0 <= port <= 65535:
        raise InputError("arguments", f"port {port} is outside 0-65535")
    if src is not None and dst is not None and src.version != dst.version:
        raise InputError("arguments", f"source {src} and destination {dst} are different families")
    if not 0 < src_ports[0] <= src_ports[1] <= 65535:
        raise InputError("arguments", f"source port range {src_ports} is not LO-HI within 1-65535")
    flow = _Flow(port, proto, src, dst, in_iface, src_ports)
    family = src.version if src is not None else dst.version if dst is not None else None

    def answer(verdict: UfwFlowVerdict, reason: str, **more: Any) -> UfwVerdict:
        return UfwVerdict(
            status, verdict, reason=reason, port=port, proto=proto, src=src, dst=dst,
            in_iface=in_iface, family=family, notes=status.warnings, src_ports=src_ports, **more,
        )  # fmt: skip

    if status.state is State.INACTIVE:
        return answer(UfwFlowVerdict.ALLOW, "ufw is inactive: it filters nothing", rule=None,
                      default_incoming=None)  # fmt: skip
    if status.state is State.NOT_INSTALLED:
        return answer(
            UfwFlowVerdict.ALLOW,
            f"ufw is not installed ({status.reason}): it cannot block the tunnel; rules left "
            "behind in iptables are the iptables check's business",
            rule=None, default_incoming=None,
        )  # fmt: skip
    if status.state is State.UNREADABLE:
        why = f"the capture holds no status: {status.reason}"
        return answer(UfwFlowVerdict.UNKNOWN, why, rule=None, default_incoming=None,
                      undecided=(UfwUndecided(None, why),))  # fmt: skip

    policy = status.default_incoming or default_incoming
    notes = list(status.warnings)
    if (
        status.default_incoming is not None
        and default_incoming is not None
        and default_incoming is not status.default_incoming
    ):
        notes.append(
            f"the capture says default incoming {status.default_incoming.value} (line "
            f"{status.default_line}); the given {default_incoming.value} was ignored"
        )
    families = [family] if family is not None else [4, 6]
    results: list[tuple[int, _Outcome, tuple[UfwRule, ...]]] = []
    assumed: list[UfwRule] = []
    for fam in families:
        rules = [r for r in status.rules if r.direction is Direction.IN and r.v6 == (fam == 6)]
        cut = status.cut(fam == 6)
        results.append((fam, _walk(rules, flow, policy, cut), _shadowing(rules, flow)))
        assumed += [r for r in rules if _decided_by_sport_range(r, flow)]
    if assumed:
        notes.append(_assumption_note(assumed, src_ports))

    outcome = results[0][1]
    if len(results) == 2:
        (_, o4, _), (_, o6, _) = results
        if o4.verdict is not UfwFlowVerdict.UNKNOWN and o4.verdict == o6.verdict:
            outcome = _Outcome(o4.verdict, o4.rule or o6.rule, o4.undecided + o6.undecided)
        else:
            reason = (
                "without --src or --dst the family is unknown, and the IPv4 rules say "
                f"{o4.verdict.value} while the IPv6 rules say {o6.verdict.value}"
            )
            outcome = _Outcome(
                UfwFlowVerdict.UNKNOWN,
                None,
                (UfwUndecided(None, reason), *o4.undecided, *o6.undecided),
            )
    shadowing = tuple(r for _, _, shadow in results for r in shadow)
    return UfwVerdict(
        status,
        outcome.verdict,
        outcome.rule,
        policy,
        _reason(outcome, policy, status, default_incoming),
        port,
        proto,
        src,
        dst,
        in_iface,
        family,
        outcome.undecided,
        shadowing,
        tuple(notes),
        src_ports,
    )


def _decided_by_sport_range(rule: UfwRule, flow: _Flow) -> bool:
    """A rule on source ports, of the flow's protocol, that the assumed range decided."""
    if rule.from_.ports is None and rule.from_.app is None:
        return False
    if _protocol_and_port(rule, flow) is False:
        return False
    if rule.from_.ports is None and rule.from_.app is not None:
        known = app_ports(rule.from_.app) or ()
        if not any(_proto_ok(p, flow.proto) for p, _ in known):
            return False
    return isinstance(_source_port(rule, flow), bool)


def _assumption_note(rules: list[UfwRule], src_ports: tuple[int, int]) -> str:
    lo, hi = src_ports
    where = "; ".join(f"line {r.line}: {r.text}" for r in rules)
    what = (
        "Linux's default ephemeral range (net.ipv4.ip_local_port_range), which the tunnel "
        "agent's connections to the kubelet come from"
        if src_ports == EPHEMERAL_PORTS
        else "the range given with --src-port-range"
    )
    return (
        f"assumed the client's source port is in {lo}-{hi}, {what}; it decides the rule(s) "
        f"on source ports ({where}); pass --src-port-range LO-HI if the client differs"
    )


def _walk(rules: list[UfwRule], flow: _Flow, policy: Policy | None, cut: str) -> _Outcome:
    """First match over rules, computed from the end so each rule sees what follows it.

    When the capture may lack rules after the last one shown (`cut`), what follows it is
    unknown, not the default policy: only a rule shown that matches decides (first match)."""
    missing = [UfwUndecided(None, f"{INCOMPLETE}: {cut}")] if cut else []
    if policy is None:
        missing.append(
            UfwUndecided(
                None,
                "the default incoming policy is not in this capture (plain `ufw status` "
                "omits it): capture `ufw status verbose` or pass --default-incoming",
            )
        )
    if policy is not None and not missing:
        out = _Outcome(UfwFlowVerdict(policy.value), None, ())
    else:
        out = _Outcome(UfwFlowVerdict.UNKNOWN, None, tuple(missing))
    for rule in reversed(rules):
        match = _match(rule, flow)
        if match is False:
            continue
        hit = _Outcome(UfwFlowVerdict(rule.action.value), rule, ())
        if match is True:
            out = hit
        elif out.verdict is not UfwFlowVerdict.UNKNOWN and out.verdict is hit.verdict:
            out = _Outcome(out.verdict, out.rule, (UfwUndecided(rule, match), *out.undecided))
        else:
            out = _Outcome(
                UfwFlowVerdict.UNKNOWN, None, (UfwUndecided(rule, match), *out.undecided)
            )
    return out


def _shadowing(rules: list[UfwRule], flow: _Flow) -> tuple[UfwRule, ...]:
    return tuple(r for r in rules if r.action is not Action.ALLOW and _match(r, flow) is not False)


def _match(rule: UfwRule, flow: _Flow) -> bool | str:
    """True, False, or the reason the capture cannot decide (a string)."""
    doubts: list[str] = []
    for check in (_protocol_and_port(rule, flow), _source_port(rule, flow)):
        if check is False:
            return False
        if isinstance(check, str):
            doubts.append(check)
    for side, address, flag in ((rule.to, flow.dst, "--dst"), (rule.from_, flow.src, "--src")):
        if side.network is None:
            continue
        if address is None:
            doubts.append(f"it applies only to {side.network}, which {flag} would decide")
        elif address not in side.network:
            return False
    iface = rule.to.iface
    if iface is not None:
        if flow.in_iface is None:
            doubts.append(f"it applies only on interface {iface}: pass --in-iface")
        elif not _iface_matches(iface, flow.in_iface):
            return False
    return "; ".join(doubts) if doubts else True


def _protocol_and_port(rule: UfwRule, flow: _Flow) -> bool | str:
    side = rule.to
    if side.app is not None and side.ports is None:
        known = app_ports(side.app)
        if known is None:
            return (
                f"application profile {side.app!r} is not one we know and a plain status does "
                "not show its ports: capture `ufw status verbose`"
            )
        return any(_proto_ok(p, flow.proto) and flow.port in ports for p, ports in known)
    if rule.protocol == "app":
        # Only the From side names an app, so its profile holds the protocol (plain listings
        # print no protocol at all then): _source_port decides that part.
        return side.ports is None or flow.port in side.ports
    if not _proto_ok(rule.protocol, flow.proto):
        return False
    return side.ports is None or flow.port in side.ports


def _source_port(rule: UfwRule, flow: _Flow) -> bool | str:
    """Whether the client's source port, somewhere in `flow.src_ports`, matches the From side."""
    side = rule.from_
    if side.ports is not None:
        ranges = side.ports.ranges
        what = "source port(s) " + ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in ranges)
    elif side.app is None:
        return True
    else:
        known = app_ports(side.app)
        if known is None:
            return (
                f"it matches only the source ports of application profile {side.app!r}, which "
                "is not one we know and a plain status does not show: capture "
                "`ufw status verbose`"
            )
        ranges = tuple(r for p, ports in known if _proto_ok(p, flow.proto) for r in ports.ranges)
        what = f"the source ports of application {side.app!r}"
    lo, hi = flow.src_ports
    inside = sum(max(0, min(b, hi) - max(a, lo) + 1) for a, b in _merged(ranges))
    if inside == 0:
        return False
    if inside == hi - lo + 1:
        return True
    return (
        f"it matches only {what}, which cover part of the client's source-port range "
        f"{lo}-{hi}: the source port decides (--src-port-range narrows the range)"
    )


def _merged(ranges: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _proto_ok(rule_proto: str, flow_proto: str) -> bool:
    return rule_proto in {"any", flow_proto}


def _iface_matches(rule_iface: str, iface: str) -> bool:
    if rule_iface.endswith("+"):  # iptables wildcard: eth+ is every eth*
        return iface.startswith(rule_iface[:-1])
    return rule_iface == iface


def _reason(
    outcome: _Outcome, policy: Policy | None, status: UfwStatus, given: Policy | None
) -> str:
    verdict, rule = outcome.verdict, outcome.rule
    if verdict is UfwFlowVerdict.UNKNOWN:
        parts = list(
            dict.fromkeys(
                (f"rule at line {u.rule.line} ({u.rule.text}): " if u.rule else "") + u.reason
                for u in outcome.undecided
            )
        )
        cut = [p for p in parts if p.startswith(INCOMPLETE)]
        if cut:  # what the capture lacks first: it is what to fix
            return "; ".join(cut + [p for p in parts if p not in cut])
        return "undecided: " + "; ".join(parts)
    doing = {
        UfwFlowVerdict.ALLOW: "allows",
        UfwFlowVerdict.DENY: "drops",
        UfwFlowVerdict.REJECT: "rejects",
        UfwFlowVerdict.LIMIT: "rate-limits (accepts, but refuses the 6th new connection "
        "within 30 s from one address)",
    }[verdict]
    if rule is not None:
        number = f"rule {rule.number}" if rule.number is not None else "the rule"
        text = f"{number} at line {rule.line} {doing} it: {rule.text}"
    else:
        where = (
            f"line {status.default_line}"
            if status.default_incoming is not None
            else "given with --default-incoming"
            if given is not None
            else "unknown"
        )
        name = "?" if policy is None else policy.value  # never None here: it decided
        text = f"no rule matches; the default incoming policy {name} ({where}) {doing} it"
    if outcome.undecided:
        text += f" (either way for {len(outcome.undecided)} undecided rule(s))"
    return text
