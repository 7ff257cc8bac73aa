"""What a field of a rule means and how its constants read: the one table of nft field names.

`field_for(expr)` turns a JSON left-hand side (`{"payload": {"protocol": "ip", "field":
"saddr"}}`, `{"meta": {"key": "iifname"}}`, ...) into a model.Field; `scalar(kind, value)`
turns a JSON constant into the int or str the walk compares (addresses as integers, names
of protocols, services, ct states and tcp flags as their numbers). Values a field of that
kind cannot hold raise ValueError; parse.py reports them as InputError with the item.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from shared.analysis.iptables.conds import SERVICES
from shared.analysis.nftables.model import Field, Interval, Part, Wild
from shared.analysis.walk import PROTOCOLS

__all__ = [
    "CT_STATES",
    "FLAG_KINDS",
    "TCP_FLAGS",
    "TRANSPORT",
    "field_for",
    "interval",
    "part",
    "scalar",
]

# include/uapi/linux/netfilter/nf_conntrack_common.h: NF_CT_STATE_BIT(ctinfo) and friends.
CT_STATES = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
TCP_FLAGS = {
    "fin": 0x01,
    "syn": 0x02,
    "rst": 0x04,
    "psh": 0x08,
    "ack": 0x10,
    "urg": 0x20,
    "ecn": 0x40,
    "cwr": 0x80,
}
FLAG_KINDS = frozenset({"ctstate", "tcpflags"})
_NFPROTO = {"ipv4": 2, "ipv6": 10}
_ETHERTYPE = {"ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806, "vlan": 0x8100}
# Transport headers that carry ports (`th dport` reads any of them).
TRANSPORT = {"tcp": 6, "udp": 17, "dccp": 33, "sctp": 132, "udplite": 136}

_MAX = {"port": 0xFFFF, "proto": 0xFF, "tcpflags": 0xFF, "int": 0xFFFFFFFF, "ctstate": 0xFFFF}


def field_for(expr: Any) -> Field | None:
    """The Field a JSON expression reads, or None when it is not a field expression at all."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return None
    (name, body), *_ = expr.items()
    if not isinstance(body, dict):
        return None
    if name == "payload":
        proto, fld = body.get("protocol"), body.get("field")
        if not isinstance(proto, str) or not isinstance(fld, str):
            return Field("payload.raw", "unknown", "a raw payload offset")
        return _payload(proto, fld)
    if name == "meta":
        key = body.get("key")
        return _META.get(str(key), Field(f"meta.{key}", "unknown", f"meta {key}"))
    if name == "ct":
        key = body.get("key")
        if "dir" in body:
            return Field(f"ct.{key}", "unknown", f"ct {body.get('dir')} {key}")
        if key == "state":
            return Field("ct.state", "ctstate")
        if key == "mark":
            return Field("ct.mark", "int")
        return Field(f"ct.{key}", "unknown", f"ct {key}")
    if name == "fib":
        flags = body.get("flags")
        flags = [flags] if isinstance(flags, str) else flags
        result = body.get("result")
        if (
            result == "type"
            and isinstance(flags, list)
            and "daddr" in flags
            and "saddr" not in flags
            and "oif" not in flags
        ):
            # The packet is on its way to a local socket: its destination is an address
            # of this node, so the route type of daddr is "local".
            return Field("fib.daddr.type", "str")
        return Field("fib", "unknown", f"fib {flags} {result} (needs the node's routes)")
    if name in ("numgen", "jhash", "symhash"):
        # A number the packet or chance picks: compared as an int, never known.
        return Field(name, "int", f"{name} (a {'random' if name == 'numgen' else 'hash'} number)")
    known = {"rt", "socket", "osf", "exthdr", "tcp option", "ipsec"}
    if name in known:
        return Field(name, "unknown", f"{name} expression")
    return None


def _payload(proto: str, fld: str) -> Field:
    if proto == "ip" and fld in ("saddr", "daddr"):
        return Field(f"ip.{fld}", "addr4")
    if proto == "ip6" and fld in ("saddr", "daddr"):
        return Field(f"ip6.{fld}", "addr6")
    if (proto, fld) in (("ip", "protocol"), ("ip6", "nexthdr")):
        return Field(f"{proto}.{fld}", "proto")
    if (proto in TRANSPORT or proto == "th") and fld in ("sport", "dport"):
        return Field(f"{proto}.{fld}", "port")
    if proto == "tcp" and fld == "flags":
        return Field("tcp.flags", "tcpflags")
    return Field(f"{proto}.{fld}", "unknown", f"{proto} {fld}")


_META = {
    "l4proto": Field("meta.l4proto", "proto"),
    "nfproto": Field("meta.nfproto", "nfproto"),
    "protocol": Field("meta.protocol", "ethertype"),
    "iifname": Field("meta.iifname", "ifname"),
    "mark": Field("meta.mark", "int"),
    "iif": Field("meta.iif", "unknown", "meta iif (an interface index)"),
}


def scalar(kind: str, value: Any) -> int | str:
    """One constant of a field of this kind, normalised; ValueError if it cannot be one."""
    if kind in ("addr4", "addr6"):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not an address")
        addr = ipaddress.ip_address(value)
        if addr.version != (4 if kind == "addr4" else 6):
            raise ValueError(f"{value} is not an IPv{4 if kind == 'addr4' else 6} address")
        return int(addr)
    if kind in ("str", "ifname"):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a name")
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a {kind} value")
    names: dict[str, int] = {
        "port": SERVICES,
        "proto": PROTOCOLS,
        "nfproto": _NFPROTO,
        "ethertype": _ETHERTYPE,
        "ctstate": CT_STATES,
        "tcpflags": TCP_FLAGS,
    }.get(kind, {})
    if isinstance(value, str):
        v = value.strip().lower()
        if v in names:
            return names[v]
        try:
            num = int(v, 0)
        except ValueError:
            raise ValueError(f"{value!r} is not a {kind} value") from None
    elif isinstance(value, int):
        num = value
    else:
        raise ValueError(f"{value!r} is not a {kind} value")
    if not 0 <= num <= _MAX.get(kind, 0xFFFFFFFF):
        raise ValueError(f"{num} is out of range for {kind}")
    return num


def interval(kind: str, value: Any) -> Interval | None:
    """A prefix or range constant as an Interval; None if `value` is neither."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    if "prefix" in value:
        p = value["prefix"]
        if not isinstance(p, dict) or kind not in ("addr4", "addr6"):
            raise ValueError(f"a prefix needs an address field, not {kind}")
        length = p.get("len")
        if not isinstance(length, int) or isinstance(length, bool):
            raise ValueError(f"prefix length {length!r} is not a number")
        base = scalar(kind, p.get("addr"))
        bits = 32 if kind == "addr4" else 128
        if not 0 <= length <= bits:
            raise ValueError(f"prefix length {length} is out of range")
        if not isinstance(base, int):  # pragma: no cover - scalar() of an address is an int
            raise ValueError("not an address")
        host = (1 << (bits - length)) - 1
        return Interval(base & ~host, (base & ~host) | host)
    if "range" in value:
        r = value["range"]
        if not isinstance(r, list) or len(r) != 2:
            raise ValueError("a range needs two ends")
        lo, hi = scalar(kind, r[0]), scalar(kind, r[1])
        if not isinstance(lo, int) or not isinstance(hi, int):
            raise ValueError(f"a range of {kind} values")
        return Interval(lo, hi)
    return None


def part(kind: str, value: Any) -> Part:
    """One component of a set element or constant: a scalar, an interval or a wildcard."""
    if isinstance(value, dict) and "elem" in value and isinstance(value["elem"], dict):
        # An element with attributes (timeout, counter, comment): its value is "val".
        value = value["elem"].get("val")
    iv = interval(kind, value)
    if iv is not None:
        return iv
    if kind in FLAG_KINDS and isinstance(value, (list, dict)):
        return _flag_mask(kind, value)
    v = scalar(kind, value)
    if kind == "ifname" and isinstance(v, str):
        if v.endswith("*") and not v.endswith("\\*"):
            return Wild(v[:-1])
        return v.replace("\\*", "*")
    return v


def _flag_mask(kind: str, value: Any) -> int:
    """`["established", "related"]` or `{"|": [...]}`: the bits OR-ed together."""
    items = value.get("|") if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise ValueError(f"{value!r} is not a list of {kind} flags")
    mask = 0
    for item in items:
        bit = part(kind, item) if isinstance(item, (list, dict)) else scalar(kind, item)
        if not isinstance(bit, int):
            raise ValueError(f"{item!r} is not a {kind} flag")
        mask |= bit
    return mask
