"""Match modules (-m NAME ...) and targets (-j NAME ...) turned into conditions and effects.

Each module handler gets the module's options as written and returns the conditions they
mean for a NEW inbound packet. A module or option we do not evaluate becomes an undecided
condition naming it: never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

from shared.analysis.iptables.conds import (
    AddrCond,
    AddrTypeCond,
    ConstCond,
    MarkCond,
    Net,
    PortCond,
    ProtoCond,
    RangeCond,
    StateCond,
    TcpFlagsCond,
    parse_addr,
    parse_net,
    port_value,
)
from shared.analysis.iptables.model import PROTOCOLS, Cond, Ctx, Target, TargetKind
from shared.errors import excerpt

__all__ = ["Opt", "RuleError", "match_conds", "parse_target"]


class RuleError(ValueError):
    """A rule that iptables itself would refuse (bad port, missing argument ...)."""


@dataclass(frozen=True, slots=True)
class Opt:
    name: str  # as written: "--dport"
    neg: bool
    args: tuple[str, ...]

    def arg(self) -> str:
        if len(self.args) != 1:
            raise RuleError(f"{self.name} takes one argument, got {len(self.args)}")
        return self.args[0]

    def text(self) -> str:
        return " ".join((*(("!",) if self.neg else ()), self.name, *self.args))


def _undecided(reason: str) -> Cond:
    return ConstCond(None, reason)


def _ports(text: str, sep: str = ",") -> tuple[tuple[tuple[int, int], ...], str]:
    """Ports "80,443,1000:2000" (or one range "a:b", ":b", "a:"); a reason if a name is unknown."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(sep):
        lo_text, colon, hi_text = part.partition(":")
        try:
            lo = 0 if colon and not lo_text else port_value(lo_text)
            hi = (65535 if not hi_text else port_value(hi_text)) if colon else lo
        except ValueError as exc:
            raise RuleError(str(exc)) from None
        if lo is None or hi is None:
            return (), f"unknown service name in port {excerpt(part)}"
        if lo > hi:
            lo, hi = hi, lo  # iptables swaps an inverted range too
        ranges.append((lo, hi))
    if not ranges:
        raise RuleError("empty port list")
    return tuple(ranges), ""


def _port_cond(proto: int | None, field: str, opt: Opt, sep: str) -> Cond:
    ranges, reason = _ports(opt.arg(), sep)
    if reason:
        if proto is not None:
            return _ProtoOnly(proto, reason)
        return _undecided(reason)
    return PortCond(proto, field, ranges, opt.neg)


class _ProtoOnly(Cond):
    """False for another protocol, undecided for this one (e.g. --icmp-type on an ICMP packet)."""

    __slots__ = ("proto",)

    def __init__(self, proto: int, reason: str) -> None:
        super().__init__(reason)
        self.proto = proto

    def test(self, ctx: Ctx) -> bool | None:
        return None if ctx.proto == self.proto else False


_PORT_MODULES = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "dccp": 33}
_DPORT = ("--dport", "--destination-port")
_SPORT = ("--sport", "--source-port")


def _proto_module(name: str, opts: list[Opt]) -> list[Cond]:
    proto = _PORT_MODULES[name]
    conds: list[Cond] = []
    for o in opts:
        if o.name in _DPORT:
            conds.append(_port_cond(proto, "dport", o, "\x00"))
        elif o.name in _SPORT:
            conds.append(_port_cond(proto, "sport", o, "\x00"))
        elif name == "tcp" and o.name == "--syn":
            conds.append(TcpFlagsCond(0x17, 0x02, o.neg))
        elif name == "tcp" and o.name == "--tcp-flags":
            if len(o.args) != 2:
                raise RuleError("--tcp-flags takes a mask and the flags that must be set")
            mask, comp = (TcpFlagsCond.flags(a) for a in o.args)
            if mask is None or comp is None:
                raise RuleError(f"bad TCP flags {excerpt(' '.join(o.args))}")
            conds.append(TcpFlagsCond(mask, comp, o.neg))
        else:
            conds.append(_ProtoOnly(proto, f"-m {name} {o.text()} is not evaluated"))
    if not conds:
        conds.append(_ProtoMod(proto))
    return conds


class _ProtoMod(Cond):
    """A bare `-m tcp`: true for that protocol only."""

    __slots__ = ("proto",)

    def __init__(self, proto: int) -> None:
        super().__init__()
        self.proto = proto

    def test(self, ctx: Ctx) -> bool | None:
        return ctx.proto == self.proto


def _multiport(opts: list[Opt]) -> list[Cond]:
    conds: list[Cond] = []
    for o in opts:
        field = {
            "--dports": "dport",
            "--destination-ports": "dport",
            "--sports": "sport",
            "--source-ports": "sport",
            "--ports": "any",
        }.get(o.name)
        if field is None:
            conds.append(_undecided(f"-m multiport {o.text()} is not evaluated"))
        else:
            conds.append(_port_cond(None, field, o, ","))
    return conds


_CT_STATES = frozenset(("INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT"))
_CT_STATUS = frozenset(("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"))


class _CtStatus(Cond):
    """--ctstatus: a connection seen for the first time has none of the bits set; later
    packets' status (SEEN_REPLY, ASSURED ...) depends on timing: undecided."""

    __slots__ = ("neg",)

    def __init__(self, neg: bool) -> None:
        super().__init__("the connection's status bits after the first packet are not known")
        self.neg = neg

    def test(self, ctx: Ctx) -> bool | None:
        return None if ctx.established else self.neg


def _states(o: Opt) -> frozenset[str]:
    states = frozenset(o.arg().upper().split(","))
    if not states <= _CT_STATES:
        raise RuleError(f"unknown connection state in {excerpt(o.arg())}")
    return states


def _addr_list(text: str, family: int | None, dst: bool, neg: bool) -> Cond:
    nets: list[Net] = []
    for part in text.split(","):
        net = parse_net(part)
        if net is None:
            return _undecided(f"{part!r} is a hostname: its address is not known")
        nets.append(net)
    return AddrCond(dst, tuple(nets), neg)


def _conntrack(opts: list[Opt], family: int | None) -> list[Cond]:
    conds: list[Cond] = []
    for o in opts:
        n = o.name
        if n == "--ctstate":
            conds.append(StateCond(_states(o), o.neg))
        elif n == "--ctstatus":
            values = frozenset(o.arg().upper().split(","))
            if not values <= _CT_STATUS:
                raise RuleError(f"unknown connection status in {excerpt(o.arg())}")
            conds.append(_CtStatus(o.neg))
        elif n == "--ctproto":
            p = o.arg().lower()
            num = int(p) if p.isdigit() else PROTOCOLS.get(p)
            if num is None:
                conds.append(_undecided(f"unknown protocol {p!r}"))
            else:
                conds.append(ProtoCond(num, o.neg))
        elif n in ("--ctorigsrc", "--ctrepldst"):
            conds.append(_addr_list(o.arg(), family, False, o.neg))
        elif n in ("--ctorigdst", "--ctreplsrc"):
            conds.append(_addr_list(o.arg(), family, True, o.neg))
        elif n in ("--ctorigdstport", "--ctreplsrcport"):
            conds.append(_port_cond(None, "dport", o, "\x00"))
        elif n in ("--ctorigsrcport", "--ctrepldstport"):
            conds.append(_port_cond(None, "sport", o, "\x00"))
        elif n == "--ctdir":
            conds.append(ConstCond((o.arg().upper() == "ORIGINAL") != o.neg))
        else:
            conds.append(_undecided(f"-m conntrack {o.text()} is not evaluated"))
    return conds


def _mark_value(text: str) -> tuple[int, int]:
    value, slash, mask = text.partition("/")
    try:
        v = int(value, 0)
        m = int(mask, 0) if slash else 0xFFFFFFFF
    except ValueError:
        raise RuleError(f"bad mark {excerpt(text)}") from None
    if not (0 <= v <= 0xFFFFFFFF and 0 <= m <= 0xFFFFFFFF):
        raise RuleError(f"mark {excerpt(text)} is outside 32 bits")
    return v, m


def _mark(opts: list[Opt], ct: bool) -> list[Cond]:
    conds: list[Cond] = []
    for o in opts:
        if o.name == "--mark":
            v, m = _mark_value(o.arg())
            conds.append(MarkCond(v & m, m, o.neg, ct))
        else:
            conds.append(_undecided(f"{o.text()} is not evaluated"))
    return conds


def _addrtype(opts: list[Opt]) -> list[Cond]:
    conds: list[Cond] = []
    for o in opts:
        if o.name in ("--src-type", "--dst-type"):
            types = frozenset(o.arg().upper().split(","))
            if not AddrTypeCond.valid(types):
                raise RuleError(f"unknown address type in {excerpt(o.arg())}")
            conds.append(AddrTypeCond(o.name == "--dst-type", types, o.neg))
        else:
            conds.append(_undecided(f"-m addrtype {o.text()} is not evaluated"))
    return conds


def _iprange(opts: list[Opt]) -> list[Cond]:
    conds: list[Cond] = []
    for o in opts:
        if o.name not in ("--src-range", "--dst-range"):
            conds.append(_undecided(f"-m iprange {o.text()} is not evaluated"))
            continue
        lo_t, dash, hi_t = o.arg().partition("-")
        lo = parse_addr(lo_t)
        hi = parse_addr(hi_t) if dash else lo
        if lo is None or hi is None or lo[0] != hi[0]:
            raise RuleError(f"bad address range {excerpt(o.arg())}")
        conds.append(RangeCond(o.name == "--dst-range", lo[0], lo[1], hi[1], o.neg))
    return conds


def _pkttype(opts: list[Opt]) -> list[Cond]:
    conds: list[Cond] = []
    for o in opts:
        if o.name == "--pkt-type":
            kind = o.arg().lower()
            if kind not in ("unicast", "broadcast", "multicast", "host"):
                raise RuleError(f"unknown packet type {excerpt(kind)}")
            conds.append(ConstCond((kind in ("unicast", "host")) != o.neg))
        else:
            conds.append(_undecided(f"-m pkttype {o.text()} is not evaluated"))
    return conds


_ICMP = {"icmp": (1, "--icmp-type"), "icmp6": (58, "--icmpv6-type")}

# Modules whose answer depends on state outside the dump (rates, sets, sockets, time ...).
_UNDECIDABLE = {
    "set": "ipset contents are not in the dump",
    "limit": "rate limits depend on traffic",
    "hashlimit": "rate limits depend on traffic",
    "recent": "the recent list depends on traffic",
    "connlimit": "connection counts depend on traffic",
    "connbytes": "byte counts depend on traffic",
    "quota": "quotas depend on traffic",
    "statistic": "random or counted sampling",
    "physdev": "bridge ports are not known",
    "owner": "socket owners are not known",
    "socket": "sockets are not known",
    "cgroup": "cgroups are not known",
    "time": "depends on the time of day",
    "string": "depends on the packet payload",
    "u32": "depends on the packet bytes",
    "bpf": "a BPF program decides",
    "ipvs": "IPVS state is not known",
    "helper": "conntrack helpers are not known",
    "rpfilter": "routes are not known",
    "policy": "IPsec policy is not known",
    "mac": "the source MAC address is not known",
    "listed": "iptables --list text we cannot translate",
}

_NO_OP_MATCHES = frozenset(("comment", "nfacct"))


def match_conds(name: str, opts: list[Opt], family: int | None) -> list[Cond]:
    """The conditions of `-m name opts...`."""
    if name in _NO_OP_MATCHES:
        return []
    if name in _PORT_MODULES:
        return _proto_module(name, opts)
    if name == "multiport":
        return _multiport(opts)
    if name == "conntrack":
        return _conntrack(opts, family)
    if name == "state":
        conds: list[Cond] = []
        for o in opts:
            if o.name != "--state":
                raise RuleError(f"unknown option {o.name} of -m state")
            conds.append(StateCond(_states(o), o.neg))
        return conds
    if name in ("mark", "connmark"):
        return _mark(opts, name == "connmark")
    if name == "addrtype":
        return _addrtype(opts)
    if name == "iprange":
        return _iprange(opts)
    if name == "pkttype":
        return _pkttype(opts)
    if name in _ICMP:
        proto, _ = _ICMP[name]
        return [_ProtoOnly(proto, f"-m {name}: the packet's ICMP type is not known")]
    words = " ".join(o.text() for o in opts)
    reason = _UNDECIDABLE.get(name, "this match is not evaluated")
    return [_undecided(f"-m {name} {words}".rstrip() + f": {reason}")]


# ---- targets ---------------------------------------------------------------------------

_CONTINUE_TARGETS = frozenset(
    (
        "LOG",
        "NFLOG",
        "ULOG",
        "AUDIT",
        "TRACE",
        "TCPMSS",
        "DSCP",
        "TOS",
        "CLASSIFY",
        "TTL",
        "HL",
        "ECN",
        "IDLETIMER",
        "LED",
        "SET",
        "CHECKSUM",
        "TEE",
        "RATEEST",
        "CONNSECMARK",
        "SECMARK",
        "TCPOPTSTRIP",
    )
)
_REDIRECT_TARGETS = frozenset(("DNAT", "REDIRECT", "NETMAP", "TPROXY"))
_NAT_ACCEPT_TARGETS = frozenset(("SNAT", "MASQUERADE"))


def _mark_effect(name: str, opts: list[Opt]) -> Callable[[Ctx], None]:
    """MARK/CONNMARK: the new (ct)mark as (old & ~clear) ^ xor, or a copy between the two."""
    ops: list[tuple[str, int, int]] = []  # (kind, a, b)
    nfmask = ctmask = 0xFFFFFFFF
    copy = ""
    for o in opts:
        n = o.name
        if n in ("--set-xmark", "--set-mark"):
            v, m = _mark_value(o.arg())
            if n == "--set-xmark":
                ops.append(("x", m, v))
            else:
                ops.append(("x", m | v, v))  # zero the mask bits, then set the value
        elif n == "--and-mark":
            ops.append(("x", ~_mark_value(o.arg())[0] & 0xFFFFFFFF, 0))
        elif n == "--or-mark":
            v = _mark_value(o.arg())[0]
            ops.append(("x", v, v))
        elif n == "--xor-mark":
            ops.append(("x", 0, _mark_value(o.arg())[0]))
        elif name == "CONNMARK" and n in ("--save-mark", "--restore-mark"):
            copy = n
        elif name == "CONNMARK" and n in ("--nfmask", "--ctmask", "--mask"):
            v = _mark_value(o.arg())[0]
            if n in ("--nfmask", "--mask"):
                nfmask = v
            if n in ("--ctmask", "--mask"):
                ctmask = v
        else:
            raise RuleError(f"unknown option {n} of -j {name}")
    ct = name == "CONNMARK"

    def effect(ctx: Ctx) -> None:
        if copy == "--save-mark":
            if ctx.ctmark is None or ctx.mark is None:
                ctx.ctmark = None
            else:
                ctx.ctmark = (ctx.ctmark & ~ctmask & 0xFFFFFFFF) ^ (ctx.mark & nfmask)
            return
        if copy == "--restore-mark":
            if ctx.ctmark is None or ctx.mark is None:
                ctx.mark = None
            else:
                ctx.mark = (ctx.mark & ~nfmask & 0xFFFFFFFF) ^ (ctx.ctmark & ctmask)
            return
        value = ctx.ctmark if ct else ctx.mark
        if value is None:
            return
        for _, clear, xor in ops:
            value = (value & ~clear & 0xFFFFFFFF) ^ xor
        if ct:
            ctx.ctmark = value
        else:
            ctx.mark = value

    return effect


def _untrack(ctx: Ctx) -> None:
    ctx.untracked = True


def _mark_unknown(ctx: Ctx) -> None:
    ctx.mark = None


def parse_target(name: str, opts: list[Opt], chains: Container[str]) -> Target:
    """What `-j name opts` does; a name of a chain of this table is a jump."""
    if name in chains:
        if opts:
            raise RuleError(f"a jump to chain {name} takes no options")
        return Target(TargetKind.JUMP, name)
    if name in ("ACCEPT", "DROP", "RETURN"):
        return Target(TargetKind[name], name)
    if name == "REJECT":
        return Target(TargetKind.REJECT, name)
    if name in ("MARK", "CONNMARK"):
        return Target(TargetKind.EFFECT, name, effect=_mark_effect(name, opts))
    if name == "NOTRACK" or (name == "CT" and any(o.name == "--notrack" for o in opts)):
        return Target(TargetKind.EFFECT, name, effect=_untrack)
    if name == "HMARK":
        return Target(TargetKind.EFFECT, name, effect=_mark_unknown)
    if name == "CT" or name in _CONTINUE_TARGETS:
        return Target(TargetKind.CONTINUE, name)
    if name in _NAT_ACCEPT_TARGETS:
        return Target(TargetKind.NAT_ACCEPT, name)
    if name in _REDIRECT_TARGETS:
        to = " ".join(o.text() for o in opts)
        return Target(
            TargetKind.REDIRECT,
            name,
            note=f"-j {name} {to}".rstrip() + " changes where the packet goes",
        )
    if name in ("NFQUEUE", "QUEUE"):
        return Target(TargetKind.UNKNOWN, name, note=f"-j {name}: a userspace program decides")
    return Target(
        TargetKind.UNKNOWN,
        name,
        note=f"-j {name}: a chain the capture does not show, or a target we do not know",
        unseen=True,
    )
