"""The matches a rule can make, each decided against a NEW inbound packet (see model.Ctx).

Every condition answers True, False or None; None means "cannot be decided from a dump"
(ipsets, rate limits, hostnames ...) and carries the reason. Addresses are kept as integers
(family, network, mask) because a kube-proxy dump compares thousands of /32s per packet.
"""

from __future__ import annotations

import ipaddress
import socket

from shared.analysis.iptables.model import Cond, Ctx
from shared.analysis.iptables.services import NETBASE

__all__ = [
    "SERVICES",
    "TCP_FLAGS",
    "AddrCond",
    "AddrTypeCond",
    "ConstCond",
    "IfaceCond",
    "MarkCond",
    "Net",
    "PortCond",
    "ProtoCond",
    "RangeCond",
    "StateCond",
    "TcpFlagsCond",
    "parse_addr",
    "parse_net",
    "port_value",
]

Net = tuple[int, int, int]  # (family, network, mask)

# Service names `iptables --list` prints instead of port numbers (from /etc/services).
SERVICES: dict[str, int] = {
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "bootps": 67,
    "bootpc": 68,
    "tftp": 69,
    "http": 80,
    "www": 80,
    "kerberos": 88,
    "pop3": 110,
    "sunrpc": 111,
    "ntp": 123,
    "netbios-ns": 137,
    "imap2": 143,
    "snmp": 161,
    "ldap": 389,
    "https": 443,
    "microsoft-ds": 445,
    "isakmp": 500,
    "syslog": 514,
    "submission": 587,
    "ldaps": 636,
    "domain-s": 853,
    "openvpn": 1194,
    "cisco-sccp": 2000,
    "nfs": 2049,
    "etcd-client": 2379,
    "etcd-server": 2380,
    "mysql": 3306,
    "ms-wbt-server": 3389,
    "vxlan": 4789,
    "postgresql": 5432,
    "x11": 6000,
    "http-alt": 8080,
    "webcache": 8080,
    "tproxy": 8081,
    "cslistener": 9000,
    "websm": 9090,
    "jetdirect": 9100,
    "zabbix-agent": 10050,
    "zabbix-trapper": 10051,
    **NETBASE,
}

_V4_ALL = 0xFFFFFFFF
_V6_ALL = (1 << 128) - 1

# Names `iptables --list` (without -n) prints for well-known networks (/etc/networks).
_NETWORK_NAMES = {
    "default": "0.0.0.0",  # noqa: S104 - `default/1` is the network 0.0.0.0/1, not a bind
    "loopback": "127.0.0.0",
    "link-local": "169.254.0.0",
    "localhost": "127.0.0.1",
}


def _v4(text: str) -> int | None:
    # inet_pton is strict dotted-quad and runs in C; kube-proxy dumps hold thousands of these.
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


def _is_loopback_net(net: Net) -> bool:
    family, value, mask = net
    if family == 4:
        return mask >= 0xFF000000 and value >> 24 == 127
    return mask == _V6_ALL and value == 1


def parse_addr(text: str) -> tuple[int, int] | None:
    """(family, integer) of an address, or None if the text is not one (a hostname?)."""
    v4 = _v4(text)
    if v4 is not None:
        return 4, v4
    if ":" in text:
        try:
            return 6, int(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    return None


def parse_net(text: str) -> Net | None:
    """An address, address/len or address/dotted-mask; None when it is not one."""
    addr, slash, length = text.partition("/")
    addr = _NETWORK_NAMES.get(addr, addr)
    parsed = parse_addr(addr)
    if parsed is None:
        return None
    family, value = parsed
    bits = 32 if family == 4 else 128
    full = _V4_ALL if family == 4 else _V6_ALL
    if not slash:
        mask = full
    elif length.isascii() and length.isdigit():
        plen = int(length)
        if plen > bits:
            return None
        mask = (full << (bits - plen)) & full
    else:
        m = parse_addr(length)
        if m is None or m[0] != family:
            return None
        mask = m[1]
    return family, value & mask, mask


def port_value(text: str) -> int | None:
    """A port number or service name; None if unknown; ValueError if out of range."""
    if text.isascii() and text.isdigit():
        n = int(text)
        if n > 65535:
            raise ValueError(f"port {n} is outside 0-65535")
        return n
    return SERVICES.get(text)


class ConstCond(Cond):
    """A match whose answer does not depend on the packet (True/False), or undecided (None)."""

    __slots__ = ("value",)

    def __init__(self, value: bool | None, reason: str = "") -> None:
        super().__init__(reason)
        self.value = value

    def test(self, ctx: Ctx) -> bool | None:
        return self.value


class ProtoCond(Cond):
    __slots__ = ("neg", "proto")

    def __init__(self, proto: int, neg: bool) -> None:
        super().__init__()
        self.proto = proto
        self.neg = neg

    def test(self, ctx: Ctx) -> bool | None:
        return (self.proto in (0, ctx.proto)) != self.neg


class AddrCond(Cond):
    """-s/-d (and conntrack --ctorigsrc/--ctorigdst): any of the networks, or none with `!`."""

    __slots__ = ("dst", "loopback_only", "neg", "nets")

    def __init__(self, dst: bool, nets: tuple[Net, ...], neg: bool) -> None:
        super().__init__("destination address unknown (give --dst)" if dst else "")
        self.dst = dst
        self.nets = nets
        self.neg = neg
        # An unknown destination is still one of the node's own, non-loopback addresses.
        self.loopback_only = all(_is_loopback_net(n) for n in nets)

    def test(self, ctx: Ctx) -> bool | None:
        addr = ctx.dst if self.dst else ctx.src
        if addr is None:
            return self.neg if self.loopback_only else None
        fam = ctx.family
        hit = any(f == fam and (addr & m) == n for f, n, m in self.nets)
        return hit != self.neg


class RangeCond(Cond):
    """-m iprange --src-range/--dst-range a-b."""

    __slots__ = ("dst", "family", "hi", "lo", "neg")

    def __init__(self, dst: bool, family: int, lo: int, hi: int, neg: bool) -> None:
        super().__init__("destination address unknown (give --dst)" if dst else "")
        self.dst = dst
        self.family = family
        self.lo = lo
        self.hi = hi
        self.neg = neg

    def test(self, ctx: Ctx) -> bool | None:
        addr = ctx.dst if self.dst else ctx.src
        if addr is None:
            return None
        return (ctx.family == self.family and self.lo <= addr <= self.hi) != self.neg


class IfaceCond(Cond):
    """-i/-o NAME, NAME+ a prefix. There is no output interface on the INPUT path."""

    __slots__ = ("name", "neg", "out")

    def __init__(self, out: bool, name: str, neg: bool) -> None:
        super().__init__("" if out else "input interface unknown (give --in-iface)")
        self.out = out
        self.name = name
        self.neg = neg

    def test(self, ctx: Ctx) -> bool | None:
        if self.out:
            return self.neg  # an empty output interface never equals a name
        iface = ctx.in_iface
        if iface is None:
            if self.name == "lo" and not (ctx.src_obj.is_loopback or ctx.src == ctx.dst):
                # A packet from another host never arrives on the loopback interface.
                return self.neg
            return None
        hit = iface.startswith(self.name[:-1]) if self.name.endswith("+") else iface == self.name
        return hit != self.neg


class PortCond(Cond):
    """Port matches of tcp/udp/sctp/multiport: field is "dport", "sport" or "any" (--ports)."""

    __slots__ = ("field", "neg", "proto", "ranges")

    def __init__(
        self, proto: int | None, field: str, ranges: tuple[tuple[int, int], ...], neg: bool
    ) -> None:
        super().__init__("source port unknown (give --sport)")
        self.proto = proto  # None: any protocol with ports (multiport after -p)
        self.field = field
        self.ranges = ranges
        self.neg = neg

    def _hit(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges)

    def test(self, ctx: Ctx) -> bool | None:
        if self.proto is not None and ctx.proto != self.proto:
            return False  # the protocol match itself fails; `!` only inverts the ports
        if self.field == "dport":
            return self._hit(ctx.dport) != self.neg
        if self.field == "sport":
            return None if ctx.sport is None else self._hit(ctx.sport) != self.neg
        # --ports: source or destination port
        if self._hit(ctx.dport):
            return not self.neg
        if ctx.sport is None:
            return None
        return self._hit(ctx.sport) != self.neg


class StateCond(Cond):
    """--ctstate / --state: NEW for the first packet, ESTABLISHED for the next ones, UNTRACKED
    after NOTRACK, INVALID in the raw table (conntrack has not looked at the packet yet)."""

    __slots__ = ("neg", "states")

    def __init__(self, states: frozenset[str], neg: bool) -> None:
        super().__init__()
        self.states = states
        self.neg = neg

    def test(self, ctx: Ctx) -> bool | None:
        # In raw PREROUTING conntrack has not run yet: no entry, which the match calls INVALID.
        if ctx.untracked:
            current = "UNTRACKED"
        elif not ctx.tracked:
            current = "INVALID"
        else:
            current = "ESTABLISHED" if ctx.established else "NEW"
        return (current in self.states) != self.neg


class MarkCond(Cond):
    """-m mark --mark v/m (packet mark) or -m connmark --mark v/m (connection mark)."""

    __slots__ = ("ct", "mask", "neg", "value")

    def __init__(self, value: int, mask: int, neg: bool, ct: bool) -> None:
        super().__init__("the mark was changed in a way we cannot compute")
        self.value = value
        self.mask = mask
        self.neg = neg
        self.ct = ct

    def test(self, ctx: Ctx) -> bool | None:
        mark = ctx.ctmark if self.ct else ctx.mark
        if mark is None:
            return None
        return ((mark & self.mask) == self.value) != self.neg


TCP_FLAGS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32, "ECE": 64, "CWR": 128}
_SYN = 2
_ACK = 16


class TcpFlagsCond(Cond):
    """--tcp-flags mask comp / --syn: the first packet is a SYN, the next ones ACKs."""

    __slots__ = ("comp", "mask", "neg")

    def __init__(self, mask: int, comp: int, neg: bool) -> None:
        super().__init__()
        self.mask = mask
        self.comp = comp
        self.neg = neg

    @staticmethod
    def flags(text: str) -> int | None:
        """SYN,ACK / ALL / NONE / 0x12 (as --list -n prints them)."""
        if text.startswith("0x"):
            try:
                return int(text, 16) & 0xFF
            except ValueError:
                return None
        value = 0
        for name in text.upper().split(","):
            if name == "ALL":
                value |= 0xFF
            elif name == "NONE":
                continue
            elif name in TCP_FLAGS:
                value |= TCP_FLAGS[name]
            else:
                return None
        return value

    def test(self, ctx: Ctx) -> bool | None:
        if ctx.proto != 6:
            return False
        flags = _ACK if ctx.established else _SYN
        return ((flags & self.mask) == self.comp) != self.neg


_ADDR_TYPES = frozenset(
    (
        "UNSPEC",
        "UNICAST",
        "LOCAL",
        "BROADCAST",
        "ANYCAST",
        "MULTICAST",
        "BLACKHOLE",
        "UNREACHABLE",
        "PROHIBIT",
        "THROW",
        "NAT",
        "XRESOLVE",
    )
)


class AddrTypeCond(Cond):
    """-m addrtype. On the INPUT path the destination is local; the source is local only when
    it is the destination itself or loopback (the packet comes from another host)."""

    __slots__ = ("dst", "neg", "types")

    def __init__(self, dst: bool, types: frozenset[str], neg: bool) -> None:
        super().__init__(
            "the destination address is a broadcast/multicast address"
            if dst
            else "the source address is a broadcast/multicast address"
        )
        self.dst = dst
        self.types = types
        self.neg = neg

    @staticmethod
    def valid(types: frozenset[str]) -> bool:
        return types <= _ADDR_TYPES

    def _special(self, addr: int, family: int) -> bool:
        if family == 4:
            return addr >> 28 == 0xE or addr == 0xFFFFFFFF  # multicast or broadcast
        return addr >> 120 == 0xFF

    def test(self, ctx: Ctx) -> bool | None:
        if self.dst:
            # Locally delivered: the destination is one of ours, which the kernel types LOCAL
            # (not UNICAST: the route to it is a local route).
            if ctx.dst is not None and self._special(ctx.dst, ctx.family):
                return None
            return ("LOCAL" in self.types) != self.neg
        if self._special(ctx.src, ctx.family):
            return None
        loop = ctx.src_obj.is_loopback
        if (ctx.dst is not None and ctx.src == ctx.dst) or loop:
            return ("LOCAL" in self.types) != self.neg
        # An inbound packet from another host: its source is not one of our addresses.
        return ("UNICAST" in self.types) != self.neg
