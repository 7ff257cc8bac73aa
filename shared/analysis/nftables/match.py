"""Deciding one match or one verdict-map lookup against the packet's state.

A field reads as a value, as NO_MATCH (the packet has no such header: `tcp dport` of a UDP
packet, `ip saddr` of an IPv6 one, `ct mark` before conntrack; nft then ends the rule, as
the implicit protocol dependency fails, whatever the operator) or as an _Unsure with the
reason (the source port or interface was not given, the mark was never set here ...).
A match answers True, False, or None with a reason.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from shared.analysis.nftables.model import (
    Const,
    Elem,
    Field,
    Flags,
    Interval,
    Key,
    Masked,
    Match,
    NftSet,
    Part,
    SetRef,
    VerdictStmt,
    Vmap,
    Wild,
)
from shared.analysis.nftables.values import TRANSPORT

__all__ = ["NO_MATCH", "Ctx", "Unsure", "decide", "lookup", "read", "show_elem"]


@dataclass(slots=True)
class Ctx:
    """The packet as the walk sees it; None fields are unknown."""

    family: int  # 4 or 6
    src: int
    dst: int | None
    proto: int
    dport: int
    sport: int | None
    iif: str | None
    flags: int  # tcp flags of this packet
    ct: int | None  # ct state bit, None when not decidable here
    mark: int | None = None  # unknown until a rule here sets it
    ctmark: int | None = None
    conntrack: bool = True  # False before conntrack ran (ingress, prerouting below -200)
    untracked: bool = False  # notrack ran

    def copy(self) -> Ctx:
        return Ctx(
            self.family,
            self.src,
            self.dst,
            self.proto,
            self.dport,
            self.sport,
            self.iif,
            self.flags,
            self.ct,
            self.mark,
            self.ctmark,
            self.conntrack,
            self.untracked,
        )


class _NoMatch:
    __slots__ = ()


NO_MATCH = _NoMatch()


@dataclass(frozen=True, slots=True)
class Unsure:
    why: str


Value = int | str | _NoMatch | Unsure

_PORTS = frozenset(TRANSPORT.values())


def _field(f: Field, c: Ctx) -> Value:
    k = f.key
    if k in ("ip.saddr", "ip.daddr", "ip6.saddr", "ip6.daddr"):
        if c.family != (4 if k.startswith("ip.") else 6):
            return NO_MATCH
        if k.endswith("saddr"):
            return c.src
        return c.dst if c.dst is not None else Unsure("the node address is not known (--dst)")
    if k in ("ip.protocol", "ip6.nexthdr"):
        return c.proto if c.family == (4 if k == "ip.protocol" else 6) else NO_MATCH
    if k == "meta.l4proto":
        return c.proto
    if k == "meta.nfproto":
        return 2 if c.family == 4 else 10
    if k == "meta.protocol":
        return 0x0800 if c.family == 4 else 0x86DD
    if k == "tcp.flags":
        return c.flags if c.proto == 6 else NO_MATCH
    if k.endswith((".dport", ".sport")):
        proto = k.split(".")[0]
        if (proto == "th" and c.proto not in _PORTS) or (
            proto != "th" and TRANSPORT.get(proto) != c.proto
        ):
            return NO_MATCH
        if k.endswith("dport"):
            return c.dport
        return c.sport if c.sport is not None else Unsure("the source port is not known")
    if k == "meta.iifname":
        return c.iif if c.iif is not None else Unsure("the input interface is not known")
    if k == "meta.mark":
        if c.mark is None:
            return Unsure("the packet mark is unknown (no rule here set it; other software may)")
        return c.mark
    if k == "ct.state":
        if c.untracked:
            return 64
        if not c.conntrack:
            return 1  # no conntrack entry yet: nft reads the state as "invalid"
        return c.ct if c.ct is not None else Unsure("the conntrack state is not known here")
    if k == "ct.mark":
        if not c.conntrack or c.untracked:
            return NO_MATCH  # no conntrack entry: the expression ends the rule
        return c.ctmark if c.ctmark is not None else Unsure("the conntrack mark is unknown")
    if k == "fib.daddr.type":
        return "local"  # the packet is addressed to this node
    return Unsure(f.why or f"{k} is not known")


def read(key: Key, c: Ctx) -> list[Value]:
    out: list[Value] = []
    for item in key:
        if isinstance(item, Masked):
            v = _field(item.field, c)
            out.append(v & item.mask if isinstance(v, int) else v)
        else:
            out.append(_field(item, c))
    return out


def _part(p: Part, v: int | str) -> bool:
    if isinstance(p, Interval):
        return isinstance(v, int) and p.lo <= v <= p.hi
    if isinstance(p, Wild):
        return isinstance(v, str) and v.startswith(p.prefix)
    return p == v


def _elem(e: Elem, vals: list[int | str]) -> bool:
    return len(e) == len(vals) and all(_part(p, v) for p, v in zip(e, vals, strict=True))


def _set_problem(s: NftSet | None, name: str, kinds: tuple[str, ...]) -> str:
    if s is None:
        return f"set @{name} is not in the capture"
    if s.why_opaque:
        return f"set @{name} holds values of type {s.why_opaque}"
    if s.dynamic:
        return f"set @{name} changes at run time (timeouts or updates from rules)"
    if s.kinds != kinds:
        return f"set @{name} holds {'.'.join(s.kinds)}, the rule compares {'.'.join(kinds)}"
    return ""


def _kinds(key: Key) -> tuple[str, ...]:
    return tuple(k.field.kind if isinstance(k, Masked) else k.kind for k in key)


def decide(m: Match, c: Ctx, sets: dict[str, NftSet]) -> tuple[bool | None, str]:
    """(True/False, "") or (None, why) for one match."""
    vals = read(m.key, c)
    if any(isinstance(v, _NoMatch) for v in vals):
        return False, ""
    unsure = [v.why for v in vals if isinstance(v, Unsure)]
    if unsure:
        return None, "; ".join(unsure)
    known = [v for v in vals if isinstance(v, (int, str))]
    r = m.right
    if isinstance(r, Flags):
        v = known[0]
        return (isinstance(v, int) and v & r.mask != 0), ""
    if m.op in ("<", ">", "<=", ">="):
        if not isinstance(r, Const) or len(r.value) != 1 or not isinstance(r.value[0], int):
            return None, f"{m.op} against a set or range"
        a, b = known[0], r.value[0]
        if not isinstance(a, int):
            return None, f"{m.op} on a name"
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[m.op], ""
    if isinstance(r, Const):
        hit = _elem(r.value, known)
    elif isinstance(r, SetRef):
        s = sets.get(r.name)
        problem = _set_problem(s, r.name, _kinds(m.key))
        if problem or s is None:
            return None, problem
        hit = any(_elem(e, known) for e in s.elements)
    else:
        hit = any(_elem(e, known) for e in r)
    return (not hit if m.op == "!=" else hit), ""


def lookup(
    v: Vmap, c: Ctx, sets: dict[str, NftSet]
) -> tuple[list[tuple[VerdictStmt | None, str]], str]:
    """The possible outcomes of a verdict map lookup: (verdict or None for "no element",
    the element in nft syntax). One outcome when decided; several (and the reason) when a
    part of the key is unknown."""
    vals = read(v.key, c)
    if any(isinstance(x, _NoMatch) for x in vals):
        return [(None, "")], ""
    if v.elements is not None:
        pairs = list(v.elements)
    else:
        s = sets.get(v.map_name)
        problem = _set_problem(s, v.map_name, _kinds(v.key))
        if not problem and s is not None and not s.verdicts and s.elements:
            problem = f"map @{v.map_name} is not a verdict map"
        if problem or s is None:
            return [], problem
        pairs = list(zip(s.elements, s.verdicts, strict=True))
    unsure = [x.why for x in vals if isinstance(x, Unsure)]
    if not unsure:
        known = [x for x in vals if isinstance(x, (int, str))]
        for e, verdict in pairs:
            if _elem(e, known):
                return [(verdict, show_elem(e, _kinds(v.key)))], ""
        return [(None, "")], ""
    # Part of the key is unknown: every element that matches on the known parts may apply,
    # and so may "no element".
    out: list[tuple[VerdictStmt | None, str]] = [(None, "")]
    for e, verdict in pairs:
        if (
            len(e) == len(vals)
            and all(
                isinstance(x, Unsure) or (not isinstance(x, _NoMatch) and _part(p, x))
                for p, x in zip(e, vals, strict=True)
            )
            and all(verdict != o for o, _ in out)
        ):
            out.append((verdict, show_elem(e, _kinds(v.key))))
    return out, "; ".join(unsure)


_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp"}


def show_elem(e: Elem, kinds: tuple[str, ...]) -> str:
    """An element in nft syntax (`10.0.0.1 . tcp . 10250`, `10.0.0.0/8`, `1000-2000`)."""

    def scalar(kind: str, v: int | str) -> str:
        if kind in ("addr4", "addr6") and isinstance(v, int):
            return str(ipaddress.ip_address(v) if kind == "addr4" else ipaddress.IPv6Address(v))
        if kind == "proto" and isinstance(v, int) and v in _PROTO_NAMES:
            return _PROTO_NAMES[v]
        if kind == "int" and isinstance(v, int):
            return hex(v)
        return json.dumps(v) if isinstance(v, str) else str(v)

    def one(kind: str, p: Part) -> str:
        if isinstance(p, Interval):
            if kind in ("addr4", "addr6"):
                size = p.hi - p.lo + 1
                if size & (size - 1) == 0 and p.lo % size == 0:
                    bits = (32 if kind == "addr4" else 128) - (size.bit_length() - 1)
                    return f"{scalar(kind, p.lo)}/{bits}"
            return f"{scalar(kind, p.lo)}-{scalar(kind, p.hi)}"
        if isinstance(p, Wild):
            return json.dumps(p.prefix + "*")
        return scalar(kind, p)

    return " . ".join(one(k, p) for k, p in zip(kinds, e, strict=False))
