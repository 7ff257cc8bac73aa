"""nft syntax rebuilt from the JSON of a rule, for evidence a person reads.

`nft -j` gives expressions as JSON; findings should show `ip saddr 10.0.0.0/8 tcp dport 10250
drop` as `nft list ruleset` would. This covers the expressions rules commonly hold; anything
else is shown as compact JSON, so nothing is ever hidden. The text is for reading only: fix
commands address a rule by its handle, never by this text.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_expr", "render_rule", "render_stmt"]

_OPS_SHOWN = {"!=", "<", ">", "<=", ">="}
_VERDICTS = ("accept", "drop", "continue", "return", "queue")


def _json(x: Any) -> str:
    try:
        return json.dumps(x, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):  # pragma: no cover - parsed JSON always dumps
        return repr(x)


def render_expr(x: Any, depth: int = 0) -> str:
    """An expression or value in nft syntax (compact JSON for what is not covered)."""
    if depth > 20:
        return "..."
    d = depth + 1
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "exists" if x else "missing"
    if isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, str):
        return x if x.startswith("@") or _plain(x) else str(json.dumps(x))
    if isinstance(x, list):
        return ",".join(render_expr(i, d) for i in x)
    if not isinstance(x, dict) or len(x) != 1:
        return _json(x)
    (name, body), *_ = x.items()
    name = str(name)
    if name == "payload" and isinstance(body, dict) and "protocol" in body:
        return f"{body.get('protocol')} {body.get('field')}"
    if name == "meta" and isinstance(body, dict):
        key = body.get("key")
        return str(key) if key in ("iifname", "oifname", "iif", "oif") else f"meta {key}"
    if name == "ct" and isinstance(body, dict):
        return f"ct {body['dir'] + ' ' if 'dir' in body else ''}{body.get('key')}"
    if name == "fib" and isinstance(body, dict):
        flags = body.get("flags")
        flags = [flags] if isinstance(flags, str) else flags
        fl = " . ".join(str(f) for f in flags) if isinstance(flags, list) else str(flags)
        return f"fib {fl} {body.get('result')}"
    if name == "concat" and isinstance(body, list):
        return " . ".join(render_expr(i, d) for i in body)
    if name == "set" and isinstance(body, list):
        return "{ " + ", ".join(_set_item(i, d) for i in body) + " }"
    if name == "prefix" and isinstance(body, dict):
        return f"{body.get('addr')}/{body.get('len')}"
    if name == "range" and isinstance(body, list) and len(body) == 2:
        return f"{render_expr(body[0], d)}-{render_expr(body[1], d)}"
    if name in ("&", "|", "^", "<<", ">>") and isinstance(body, list) and len(body) == 2:
        right = render_expr(body[1], d)
        if isinstance(body[1], list):
            right = f"({'|'.join(render_expr(i, d) for i in body[1])})"
        return f"{render_expr(body[0], d)} {name} {right}"
    if name == "|" and isinstance(body, list):
        return ",".join(render_expr(i, d) for i in body)
    if name == "elem" and isinstance(body, dict):
        return render_expr(body.get("val"), d)
    if name == "numgen" and isinstance(body, dict):
        return f"numgen {body.get('mode')} mod {body.get('mod')}"
    if name in _VERDICTS and body is None:
        return name
    if name in ("jump", "goto") and isinstance(body, dict):
        return f"{name} {render_expr(body.get('target'), d)}"
    return _json(x)


def _set_item(i: Any, d: int) -> str:
    if isinstance(i, list) and len(i) == 2:
        return f"{render_expr(i[0], d)} : {render_expr(i[1], d)}"
    return render_expr(i, d)


def _plain(s: str) -> bool:
    return bool(s) and all(c.isalnum() or c in "._-/:*\\" for c in s)


def render_stmt(x: Any) -> str:
    """One statement of a rule in nft syntax."""
    if not isinstance(x, dict) or len(x) != 1:
        return _json(x)
    (name, body), *_ = x.items()
    name = str(name)
    if name == "match" and isinstance(body, dict):
        op = str(body.get("op", "=="))
        left, right = render_expr(body.get("left")), render_expr(body.get("right"))
        return f"{left} {op} {right}" if op in _OPS_SHOWN else f"{left} {right}"
    if name == "counter":
        return "counter" if isinstance(body, dict) or body is None else f"counter name {body}"
    if name == "log":
        if isinstance(body, dict) and "prefix" in body:
            return f"log prefix {json.dumps(str(body['prefix']))}"
        return "log"
    if name == "reject":
        if isinstance(body, dict) and body.get("type") == "tcp reset":
            return "reject with tcp reset"
        if isinstance(body, dict) and "expr" in body:
            return f"reject with {body.get('type', 'icmp')} {body['expr']}"
        return "reject"
    if name == "vmap" and isinstance(body, dict):
        return f"{render_expr(body.get('key'))} vmap {render_expr(body.get('data'))}"
    if name == "mangle" and isinstance(body, dict):
        return f"{render_expr(body.get('key'))} set {render_expr(body.get('value'))}"
    if name == "limit" and isinstance(body, dict):
        return f"limit rate {body.get('rate')}/{body.get('per')}"
    if name == "notrack":
        return "notrack"
    if name == "xt" and isinstance(body, dict):
        return f"xt {body.get('type')} {body.get('name')}"
    if name in ("set", "map") and isinstance(body, dict):
        ref = body.get("set") or body.get("map")
        return f"{body.get('op')} {ref} {{ {render_expr(body.get('elem'))} }}"
    if name in ("snat", "dnat") and isinstance(body, dict):
        port = f":{body['port']}" if "port" in body else ""
        return f"{name} to {render_expr(body.get('addr'))}{port}"
    if name in ("masquerade", "redirect"):
        return name
    return render_expr(x)


def render_rule(exprs: Any, comment: str | None = None) -> str:
    """A rule's statements in nft syntax, with its comment."""
    parts = [render_stmt(s) for s in exprs] if isinstance(exprs, list) else [_json(exprs)]
    if comment:
        parts.append(f"comment {json.dumps(comment)}")
    return " ".join(parts)
