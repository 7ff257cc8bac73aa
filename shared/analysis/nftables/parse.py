"""Reading `nft -j list ruleset` (libnftables-json(5)) into the frozen model.

The input is `{"nftables": [ITEM, ...]}` where each item is one object: metainfo, table,
chain, rule, set, map, element, or a named object (counter, quota, ...). The probe joins
the items of several `nft -j list table` outputs into one such list, so metainfo may repeat.

Malformed input (not JSON, an item of the wrong shape, a rule of an unknown chain, an
address that is not one) raises InputError naming the item. Expressions that are well
formed but unknown to the engine are not errors: they compile to model.Cond/Unknown and the
walk says "unknown" if a packet's fate depends on them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from shared.analysis.nftables.cut import CaptureIncomplete, json_cut, looks_like_nft
from shared.analysis.nftables.model import (
    Cond,
    Const,
    Effect,
    Elem,
    Field,
    Flags,
    Key,
    Masked,
    Match,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    NftTable,
    NoOp,
    Right,
    SetRef,
    Stmt,
    Unknown,
    VerdictStmt,
    VKind,
    Vmap,
)
from shared.analysis.nftables.render import render_rule, render_stmt
from shared.analysis.nftables.values import FLAG_KINDS, field_for, part, scalar
from shared.errors import InputError, excerpt

__all__ = ["COMPAT_TABLES", "parse_ruleset"]

# Tables iptables-nft creates; with xt expressions or iptables' chain names they are its own.
COMPAT_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
_IPT_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
# Standard priority names (nft(8), "CHAIN PRIORITIES"; ip/ip6/inet values).
_PRIO_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50}
_PRIO_NAMES["srcnat"] = 100
_SET_KINDS = {
    "ipv4_addr": "addr4",
    "ipv6_addr": "addr6",
    "inet_proto": "proto",
    "inet_service": "port",
    "ifname": "ifname",
    "mark": "int",
    "ct_state": "ctstate",
    "nf_proto": "nfproto",
    "ether_type": "ethertype",
    "tcp_flag": "tcpflags",
}
_OPS = frozenset({"==", "!=", "<", ">", "<=", ">=", "in"})
_IGNORED_OBJECTS = frozenset(
    {
        "counter",
        "quota",
        "limit",
        "ct helper",
        "ct timeout",
        "ct expectation",
        "secmark",
        "synproxy",
        "flowtable",
        "element",
    }
)
_NOOPS = frozenset(
    {"counter", "log", "dup", "flow", "ct helper", "ct timeout", "ct expectation"}
    | {"secmark", "last"}
)
_CONDS = {
    "limit": "a rate limit (depends on traffic)",
    "quota": "a quota (depends on traffic)",
    "ct count": "a connection count (depends on traffic)",
    "meter": "a meter (depends on traffic)",
}


class _Bad(Exception):
    """Malformed item; parse_ruleset turns it into InputError with the item's place."""


def _obj(x: Any, what: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise _Bad(f"{what} is not a JSON object")
    return x


def _str(d: dict[str, Any], key: str, what: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise _Bad(f"{what} has no {key!r} string")
    return v


def _handle(d: dict[str, Any], what: str) -> int | None:
    v = d.get("handle")
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise _Bad(f"{what} has a handle that is not a number: {v!r}")
    return v


def _one(x: Any, what: str) -> tuple[str, Any]:
    if not isinstance(x, dict) or len(x) != 1:
        raise _Bad(f"{what} is not an object with one key")
    ((name, body),) = x.items()
    return str(name), body


# ---- expressions --------------------------------------------------------------------------


def _key(expr: Any) -> Key | str:
    """The fields a left-hand side reads, or the reason it cannot be read."""
    if isinstance(expr, dict) and len(expr) == 1 and isinstance(expr.get("concat"), list):
        out: list[Field | Masked] = []
        for item in expr["concat"]:
            k = _key(item)
            if isinstance(k, str):
                return k
            out.extend(k)
        return tuple(out) if out else "an empty concatenation"
    if isinstance(expr, dict) and len(expr) == 1 and "&" in expr:
        args = expr["&"]
        if not isinstance(args, list) or len(args) != 2:
            raise _Bad("'&' needs two operands")
        fld = field_for(args[0])
        if fld is None or fld.kind == "unknown":
            return fld.why if fld is not None else f"{render_stmt(expr)} is not a field"
        mask = part(fld.kind, args[1]) if fld.kind in FLAG_KINDS else scalar(fld.kind, args[1])
        if not isinstance(mask, int):
            raise _Bad(f"mask {args[1]!r} is not a number")
        return (Masked(fld, mask),)
    fld = field_for(expr)
    if fld is None:
        return f"{render_stmt(expr)} is not an expression the engine reads"
    if fld.kind == "unknown":
        return fld.why
    return (fld,)


def _kinds(key: Key) -> tuple[str, ...]:
    return tuple(k.field.kind if isinstance(k, Masked) else k.kind for k in key)


def _elem(kinds: tuple[str, ...], value: Any) -> Elem:
    if isinstance(value, dict) and "elem" in value and isinstance(value["elem"], dict):
        value = value["elem"].get("val")
    if len(kinds) > 1:
        if not isinstance(value, dict) or not isinstance(value.get("concat"), list):
            raise _Bad(f"{value!r} is not a concatenation of {len(kinds)} parts")
        parts = value["concat"]
        if len(parts) != len(kinds):
            raise _Bad(f"{len(parts)} parts where the key has {len(kinds)}")
        return tuple(part(k, p) for k, p in zip(kinds, parts, strict=True))
    return (part(kinds[0], value),)


def _right(kinds: tuple[str, ...], op: str, value: Any) -> Right:
    if isinstance(value, str) and value.startswith("@"):
        return SetRef(value[1:])
    if isinstance(value, dict) and len(value) == 1 and "set" in value:
        items = value["set"]
        if not isinstance(items, list):
            raise _Bad("an anonymous set is not a list")
        return tuple(_elem(kinds, i) for i in items)
    if op == "in" and len(kinds) == 1 and kinds[0] in FLAG_KINDS:
        bits = part(kinds[0], value if isinstance(value, (list, dict)) else [value])
        if not isinstance(bits, int):
            raise _Bad(f"{value!r} is not a set of flags")
        return Flags(bits)
    return Const(_elem(kinds, value))


def _verdict(name: str, body: Any) -> VerdictStmt | None:
    if name in ("accept", "drop", "continue", "return") and body is None:
        return VerdictStmt(VKind(name))
    if name in ("jump", "goto"):
        target = _obj(body, name).get("target")
        if not isinstance(target, str) or not target:
            raise _Bad(f"{name} has no target chain")
        return VerdictStmt(VKind(name), target)
    if name == "reject":
        detail = render_stmt({"reject": body})
        return VerdictStmt(VKind.REJECT, detail=detail)
    if name == "queue":
        return VerdictStmt(VKind.QUEUE, detail="queue")
    if name in ("snat", "masquerade"):
        return VerdictStmt(VKind.NAT, detail=name)
    if name in ("dnat", "redirect", "tproxy"):
        return VerdictStmt(VKind.REDIRECT, detail=render_stmt({name: body}))
    return None


def _mangle(body: Any) -> Stmt:
    b = _obj(body, "mangle")
    fld = field_for(b.get("key"))
    target = fld.key if fld is not None else ""
    if target in ("meta.mark", "ct.mark"):
        value = b.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            return Effect(target, int(scalar("int", value)))
        if isinstance(value, dict) and len(value) == 1:
            ((op, args),) = value.items()
            if (
                op in ("|", "&", "^")
                and isinstance(args, list)
                and len(args) == 2
                and field_for(args[0]) == fld
                and isinstance(args[1], int)
            ):
                return Effect(target, int(scalar("int", args[1])), op)
        return Effect(target, None)
    if target in ("meta.nftrace", "meta.priority") or target.endswith(
        (".dscp", ".ecn", ".ttl", ".hoplimit")
    ):
        return NoOp(f"{target} set")
    return Unknown(f"{render_stmt({'mangle': body})} changes the packet")


def _stmt(x: Any, dynamic: set[str]) -> Stmt:
    name, body = _one(x, "a statement")
    if name == "match":
        m = _obj(body, "match")
        op = m.get("op", "==")
        if not isinstance(op, str) or op not in _OPS:
            return Cond(f"operator {op!r}")
        key = _key(m.get("left"))
        if isinstance(key, str):
            return Cond(key)
        try:
            return Match(key, str(op), _right(_kinds(key), str(op), m.get("right")))
        except ValueError as exc:
            raise _Bad(f"{render_stmt(x)}: {exc}") from None
    v = _verdict(name, body)
    if v is not None:
        return v
    if name == "vmap":
        b = _obj(body, "vmap")
        key = _key(b.get("key"))
        if isinstance(key, str):
            return Unknown(f"verdict map on {key}")
        data = b.get("data")
        if isinstance(data, str) and data.startswith("@"):
            return Vmap(key, None, data[1:])
        items = _obj(data, "vmap data").get("set")
        if not isinstance(items, list):
            raise _Bad("vmap data is not a set")
        elems = []
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise _Bad("a verdict map element is not [key, verdict]")
            elems.append((_elem(_kinds(key), item[0]), _map_verdict(item[1])))
        return Vmap(key, tuple(elems))
    if name == "mangle":
        return _mangle(body)
    if name == "notrack":
        return Effect("notrack")
    if name in ("set", "map"):
        ref = _obj(body, name).get(name)
        if isinstance(ref, str):
            dynamic.add(ref.lstrip("@"))
        return NoOp(f"update {ref}")
    if name in _NOOPS:
        return NoOp(name)
    if name in _CONDS:
        return Cond(_CONDS[name])
    if name == "xt":
        b = _obj(body, "xt")
        if b.get("type") == "match":
            return Cond(f"iptables extension match {b.get('name')}")
        return Unknown(f"iptables extension {b.get('type')} {b.get('name')}")
    return Unknown(f"statement {render_stmt(x)}")


def _map_verdict(x: Any) -> VerdictStmt:
    name, body = _one(x, "a map verdict")
    v = _verdict(name, body)
    if v is None:
        raise _Bad(f"{render_stmt(x)} is not a verdict")
    return v


# ---- items --------------------------------------------------------------------------------


def _set(d: dict[str, Any], is_map: bool, dynamic: set[str]) -> NftSet:
    what = "map" if is_map else "set"
    fam, table, name = (_str(d, k, what) for k in ("family", "table", "name"))
    typ = d.get("type")
    types = [typ] if isinstance(typ, str) else typ
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise _Bad(f"{what} {name} has no type")
    flags = d.get("flags", [])
    flags = [flags] if isinstance(flags, str) else flags
    if not isinstance(flags, list):
        raise _Bad(f"{what} {name} has malformed flags")
    dyn = bool({"dynamic", "timeout"} & set(map(str, flags))) or "timeout" in d
    if name in dynamic:
        dyn = True
    unknown = [t for t in types if t not in _SET_KINDS]
    if unknown:
        return NftSet(fam, table, name, (), (), is_map, dynamic=dyn, why_opaque=str(unknown))
    kinds = tuple(_SET_KINDS[t] for t in types)
    raw = d.get("elem", [])
    if not isinstance(raw, list):
        raise _Bad(f"{what} {name}: elem is not a list")
    verdict_map = is_map and d.get("map") == "verdict"
    elems: list[Elem] = []
    verdicts: list[VerdictStmt] = []
    try:
        for item in raw:
            if is_map:
                if not isinstance(item, list) or len(item) != 2:
                    raise _Bad(f"map {name}: an element is not [key, value]")
                elems.append(_elem(kinds, item[0]))
                if verdict_map:
                    verdicts.append(_map_verdict(item[1]))
            else:
                elems.append(_elem(kinds, item))
    except ValueError as exc:
        raise _Bad(f"{what} {name}: {exc}") from None
    why = "" if not is_map or verdict_map else f"a map of {d.get('map')}"
    return NftSet(fam, table, name, kinds, tuple(elems), is_map, tuple(verdicts), dyn, why)


def _chain(d: dict[str, Any]) -> NftChain:
    fam, table, name = (_str(d, k, "chain") for k in ("family", "table", "name"))
    hook = d.get("hook")
    if hook is None:
        return NftChain(fam, table, name, _handle(d, f"chain {name}"))
    if not isinstance(hook, str):
        raise _Bad(f"chain {name}: hook is not a string")
    prio = d.get("prio", 0)
    if isinstance(prio, str):
        if prio not in _PRIO_NAMES:
            raise _Bad(f"chain {name}: unknown priority {prio!r}")
        prio = _PRIO_NAMES[prio]
    if not isinstance(prio, int) or isinstance(prio, bool):
        raise _Bad(f"chain {name}: priority {prio!r} is not a number")
    policy = d.get("policy", "accept")
    if policy not in ("accept", "drop"):
        raise _Bad(f"chain {name}: policy {policy!r} is neither accept nor drop")
    typ = d.get("type", "filter")
    dev = d.get("dev")
    return NftChain(
        fam,
        table,
        name,
        _handle(d, f"chain {name}"),
        str(typ),
        hook,
        prio,
        str(policy),
        dev if isinstance(dev, str) else None,
    )


def _rule(
    d: dict[str, Any], index: int, dynamic: set[str], conntrack_users: set[tuple[str, str]]
) -> NftRule:
    fam, table, chain = (_str(d, k, "rule") for k in ("family", "table", "chain"))
    exprs = d.get("expr", [])
    if not isinstance(exprs, list):
        raise _Bad("rule: expr is not a list")
    comment = d.get("comment")
    stmts = tuple(_stmt(x, dynamic) for x in exprs)
    text = render_rule(exprs, comment if isinstance(comment, str) else None)
    if _uses_conntrack(exprs):
        conntrack_users.add((fam, table))
    return NftRule(fam, table, chain, _handle(d, "rule"), text, stmts, index)


# JSON keys (and xt extension names) whose rules make the kernel run conntrack for the family
# (their init calls nf_ct_netns_get).
_CT_KEYS = frozenset(
    {"ct", "snat", "dnat", "masquerade", "redirect", "ct helper", "ct timeout"}
    | {"ct expectation", "ct count", "tproxy"}
)
_CT_XT = frozenset(
    {"conntrack", "state", "connmark", "CONNMARK", "CT", "DNAT", "SNAT", "MASQUERADE"}
    | {"REDIRECT", "NETMAP", "connlimit", "helper", "conntrack"}
)


def _uses_conntrack(x: Any, depth: int = 0) -> bool:
    if depth > 40:
        return False
    if isinstance(x, dict):
        if _CT_KEYS & x.keys():
            return True
        xt = x.get("xt")
        if isinstance(xt, dict) and str(xt.get("name")) in _CT_XT:
            return True
        return any(_uses_conntrack(v, depth + 1) for v in x.values())
    if isinstance(x, list):
        return any(_uses_conntrack(v, depth + 1) for v in x)
    return False


def _compat(fam: str, name: str, chains: list[NftChain], rules: list[NftRule]) -> str:
    if fam not in ("ip", "ip6") or name not in COMPAT_TABLES:
        return ""
    if any(
        isinstance(s, (Cond, Unknown)) and "iptables extension" in s.why
        for r in rules
        for s in r.stmts
    ):
        return "iptables-nft table (xt expressions): the iptables engine reads it"
    base = [c.name for c in chains if c.is_base]
    if base and all(n in _IPT_CHAINS for n in base):
        return "iptables-nft table (iptables chain names): the iptables engine reads it"
    return ""


def parse_ruleset(text: str, source: str = "<input>") -> NftRuleset:
    """The ruleset in `nft -j list ruleset` output; InputError naming the item if malformed."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        lacking = json_cut(text) if looks_like_nft(text) else None
        if lacking is not None:  # a cut capture: inconclusive, not unreadable
            raise CaptureIncomplete(
                source,
                f"capture incomplete: {lacking}; the tables and rules after the cut "
                "are unknown (capture the whole `nft -j list ruleset` output to a file)",
            ) from None
        raise InputError(source, f"not JSON: {exc.msg}", line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(source, f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise InputError(source, 'not `nft -j list ruleset` output: no "nftables" list')
    items = doc["nftables"]
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    chains: list[NftChain] = []
    sets: list[tuple[int, dict[str, Any], bool]] = []
    rules: list[NftRule] = []
    dynamic: set[str] = set()
    ct_users: set[tuple[str, str]] = set()
    version = ""
    for i, item in enumerate(items):
        where = f"item {i + 1}"
        try:
            kind, body = _one(item, where)
            if kind == "metainfo":
                version = str(_obj(body, "metainfo").get("version", ""))
            elif kind == "table":
                b = _obj(body, "table")
                fam, name = _str(b, "family", "table"), _str(b, "name", "table")
                if (fam, name) in tables:
                    raise _Bad(f"table {fam} {name} is listed twice")
                tables[(fam, name)] = {}
            elif kind == "chain":
                chains.append(_chain(_obj(body, "chain")))
            elif kind in ("set", "map"):
                sets.append((i, _obj(body, kind), kind == "map"))
            elif kind == "rule":
                rules.append(_rule(_obj(body, "rule"), i, dynamic, ct_users))
            elif kind not in _IGNORED_OBJECTS:
                raise _Bad(f"unknown object {kind!r}")
        except (_Bad, ValueError) as exc:
            raise InputError(source, f"{where} ({_label(item)}): {exc}") from None
        except RecursionError:
            raise InputError(source, f"{where}: expressions nested too deeply") from None
    return _assemble(source, version, tables, chains, sets, rules, dynamic, ct_users)


def _label(item: Any) -> str:
    if isinstance(item, dict) and len(item) == 1:
        ((kind, body),) = item.items()
        if isinstance(body, dict):
            bits = [str(body[k]) for k in ("family", "table", "chain", "name") if k in body]
            if "handle" in body:
                bits.append(f"handle {body['handle']}")
            return " ".join([str(kind), *bits])[:120]
        return str(kind)[:40]
    return type(item).__name__


def _assemble(
    source: str,
    version: str,
    tables: dict[tuple[str, str], dict[str, Any]],
    chains: list[NftChain],
    sets: list[tuple[int, dict[str, Any], bool]],
    rules: list[NftRule],
    dynamic: set[str],
    ct_users: set[tuple[str, str]],
) -> NftRuleset:
    by_chain: dict[tuple[str, str, str], NftChain] = {}
    for c in chains:
        if (c.family, c.table) not in tables:
            raise InputError(source, f"chain {c.name} of unknown table {c.family} {c.table}")
        if (c.family, c.table, c.name) in by_chain:
            raise InputError(source, f"chain {c.family} {c.table} {c.name} is listed twice")
        by_chain[(c.family, c.table, c.name)] = c
    chain_rules: dict[tuple[str, str, str], list[NftRule]] = {k: [] for k in by_chain}
    for r in rules:
        k = (r.family, r.table, r.chain)
        if k not in chain_rules:
            raise InputError(
                source, f"item {r.index + 1}: rule of unknown chain {r.family} {r.table} {r.chain}"
            )
        chain_rules[k].append(r)
    set_objs: dict[tuple[str, str], dict[str, NftSet]] = {k: {} for k in tables}
    for i, d, is_map in sets:
        try:
            s = _set(d, is_map, dynamic)
        except (_Bad, ValueError) as exc:
            raise InputError(source, f"item {i + 1} ({_label(d)}): {exc}") from None
        if (s.family, s.table) not in tables:
            raise InputError(source, f"set {s.name} of unknown table {s.family} {s.table}")
        set_objs[(s.family, s.table)][s.name] = s
    out = []
    for fam, name in tables:
        cs = [
            replace(c, rules=tuple(chain_rules[(fam, name, c.name)]))
            for c in chains
            if (c.family, c.table) == (fam, name)
        ]
        rs = [r for c in cs for r in c.rules]
        _check_targets(source, cs)
        out.append(
            NftTable(
                fam,
                name,
                {c.name: c for c in cs},
                set_objs[(fam, name)],
                _compat(fam, name, cs, rs),
                (fam, name) in ct_users,
            )
        )
    return NftRuleset(source, tuple(out), version)


def _check_targets(source: str, chains: list[NftChain]) -> None:
    """A jump to a chain the table does not have cannot be loaded: the capture is cut."""
    names = {c.name for c in chains}
    for c in chains:
        for r in c.rules:
            targets = [s.target for s in r.stmts if isinstance(s, VerdictStmt) and s.target]
            for s in r.stmts:
                if isinstance(s, Vmap) and s.elements:
                    targets += [v.target for _, v in s.elements if v.target]
            for t in targets:
                if t not in names:
                    raise InputError(
                        source,
                        f"item {r.index + 1}: rule {r.handle} of {c.family} {c.table} {c.name} "
                        f"jumps to chain {excerpt(t)} the table does not have",
                    )
