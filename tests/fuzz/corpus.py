"""Inputs for the parser bounds: per parser, a plain input of any size and adversarial ones.

A parser here is the whole path an input takes in the product: the `tunnelwatch analyze`
command (reading the file, parsing, evaluating, rendering) for the CLI formats, and
`parse_probe_output` + `node_findings` (what the worker runs) for probe output, with the
adversarial text inside the gzip+base64 blobs a node sends. Each run returns an outcome label:
"ok", "problem", "inconclusive" (exit codes 0, 1, 3 / the kinds of the findings) or "error"
(exit code 2: an InputError naming the input). Anything else is a crash and propagates.

Plain inputs look like real captures of the given size; adversarial ones are what a
compromised or broken node (or a careless operator) could hand us: one huge line of a
repeated pattern, runs of separators, a valid prefix followed by a pathological rule,
many lines that nearly match, deep JSON nesting, many series or rules. Shared by
tests/fuzz/test_parser_bounds.py and bench/bench_parser_bounds.py.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.analysis.findings import Kind
from shared.checks.node import node_findings
from shared.cli.main import main
from shared.errors import InputError
from shared.probe.output import parse_probe_output

__all__ = ["CASES", "PARSERS", "Case", "Parser"]

_EXIT_OUTCOMES = {0: "ok", 1: "problem", 2: "error", 3: "inconclusive"}
FLOW = ["--src", "10.224.0.4", "--dst", "10.224.0.5"]


@dataclass(frozen=True, slots=True)
class Parser:
    name: str
    run: Callable[[str], str]  # the input text -> outcome label
    plain: Callable[[int], str]  # a realistic input of about `size` characters
    sample: str  # a small valid input, what the random mutations start from


@dataclass(frozen=True, slots=True)
class Case:
    parser: str
    name: str
    make: Callable[[int], str]  # an adversarial input of about `size` characters
    expect: frozenset[str]  # the outcomes it may give (never a crash)
    fixed_size: int | None = None  # what it amounts to whatever the size asked (a gzip bomb)

    @property
    def id(self) -> str:
        return f"{self.parser}:{self.name}"


def _fill(head: str, unit: Callable[[int], str], size: int, tail: str = "") -> str:
    """head + unit(0) + unit(1) + ... + tail, about `size` characters in all."""
    parts, n, i = [head], len(head) + len(tail), 0
    while n < size:
        u = unit(i)
        parts.append(u)
        n += len(u)
        i += 1
    parts.append(tail)
    return "".join(parts)


def _rep(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


@contextlib.contextmanager
def _file(text: str) -> Iterator[str]:
    fd, name = tempfile.mkstemp(prefix="tw-fuzz-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        yield name
    finally:
        Path(name).unlink()


def _cli(argv: Callable[[str], list[str]]) -> Callable[[str], str]:
    def run(text: str) -> str:
        with _file(text) as path:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv(path))
        return _EXIT_OUTCOMES[code]

    return run


# --- iptables ------------------------------------------------------------------------------
def _rule(i: int) -> str:
    return (
        f"-A INPUT -s 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32 -p tcp -m tcp "
        f'--dport {1024 + i % 60000} -m comment --comment "svc {i}" -j ACCEPT\n'
    )


_SAVE_HEAD = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
_S_HEAD = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
_L_HEAD = "Chain INPUT (policy ACCEPT)\ntarget     prot opt source               destination\n"


def _listed(i: int) -> str:
    return (
        f"ACCEPT     tcp  --  10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}  0.0.0.0/0  "
        f"tcp dpt:{1024 + i % 60000} /* svc {i} */\n"
    )


def _list_tail() -> str:
    return (
        "\nChain FORWARD (policy ACCEPT)\ntarget     prot opt source               destination\n"
        "\nChain OUTPUT (policy ACCEPT)\ntarget     prot opt source               destination\n"
    )


# --- nft -----------------------------------------------------------------------------------
def _nft_doc(rules: list[object]) -> str:
    meta = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
    table = {"table": {"family": "inet", "name": "fw", "handle": 1}}
    chain = {
        "chain": {"family": "inet", "table": "fw", "name": "in", "handle": 2, "type": "filter",
                  "hook": "input", "prio": 0, "policy": "accept"}
    }  # fmt: skip
    return json.dumps({"nftables": [meta, table, chain, *rules]})


def _nft_rule(i: int) -> dict[str, object]:
    src = {"payload": {"protocol": "ip", "field": "saddr"}}
    dport = {"payload": {"protocol": "tcp", "field": "dport"}}
    return {
        "rule": {"family": "inet", "table": "fw", "chain": "in", "handle": 10 + i, "expr": [
            {"match": {"op": "==", "left": src, "right": f"10.{i // 256 % 256}.{i % 256}.1"}},
            {"match": {"op": "==", "left": dport, "right": 1024 + i % 60000}},
            {"accept": None},
        ]}
    }  # fmt: skip


def _nft_plain(size: int) -> str:
    per = len(json.dumps(_nft_rule(1000))) + 2
    return _nft_doc([_nft_rule(i) for i in range(max(1, size // per))])


def _nft_nested(size: int) -> str:
    depth = max(1, size // 2)
    return '{"nftables": ' + "[" * depth + "]" * depth + "}"


def _nft_long_name(size: int) -> str:
    rule = _nft_rule(1)
    rule["rule"]["chain"] = "a:" * (size // 2)  # type: ignore[index]
    return _nft_doc([rule])


# --- ufw -----------------------------------------------------------------------------------
_UFW_HEAD = (
    "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), "
    "disabled (routed)\nNew profiles: skip\n\nTo                         Action      From\n"
    "--                         ------      ----\n"
)


def _ufw_rule(i: int) -> str:
    return (
        f"{1024 + i % 60000}/tcp                   ALLOW IN    10.{i // 256 % 256}.{i % 256}.0/24\n"
    )


# --- nc ------------------------------------------------------------------------------------
def _nc_pair(i: int) -> str:
    host = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
    return f"target={host}:10250\nConnection to {host} 10250 port [tcp/*] succeeded!\n"


# --- runcommand ----------------------------------------------------------------------------
def _message(stdout: str) -> str:
    return json.dumps(
        {"value": [{
            "code": "ProvisioningState/succeeded", "level": "Info",
            "displayStatus": "Provisioning succeeded",
            "message": f"Enable succeeded: \n[stdout]\n{stdout}\n[stderr]\n",
        }]}
    )  # fmt: skip


# --- probe output --------------------------------------------------------------------------
def _blob(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode("utf-8", "surrogatepass"), 6)).decode()


def _probe(records: list[str], mode: str) -> str:
    head = [
        "tool\tnc=openbsd\ttimeout gzip base64 crictl iptables-legacy-save iptables-nft-save ip",
        "host\taks-nodepool1-12345678-vmss000003",
        "addr\teth0\t10.224.0.4/16",
        "os\tubuntu\t22.04\t5.15.0-1064-azure",
    ]
    body = [*head, *records]
    return "\n".join([f"TWPROBE 1 BEGIN {mode}", *body, f"TWPROBE 1 END {len(body)}"]) + "\n"


def _node_run(text: str) -> str:
    from tests.unit.test_checks_node import CLUSTER, INSTANCE, NOW, PEERS, POOL, SUBNET

    try:
        report = parse_probe_output(text, "probe")
        found = node_findings(
            report, cluster=CLUSTER, pool=POOL, instance=INSTANCE, peers=PEERS,
            source_subnet=SUBNET, now=NOW,
        )  # fmt: skip
    except InputError:
        return "error"
    kinds = {f.kind for f in found}
    if kinds & {Kind.INCONCLUSIVE, Kind.COVERAGE}:
        return "inconclusive"
    return "problem" if Kind.PROBLEM in kinds else "ok"


def _triage(nc_text: str) -> str:
    return _probe([f"ncgz\t{_blob(nc_text)}"], "triage")


_ACCEPT_ALL = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def _deep(legacy: str, ufw: str | None = None) -> str:
    return _probe(
        [
            "ufw\tabsent" if ufw is None else f"ufw\t{_blob(ufw)}",
            f"ruleset\tlegacy\t{_blob(legacy)}",
            f"ruleset\tnft\t{_blob(_ACCEPT_ALL)}",
        ],
        "deep",
    )


# --- SNAT metrics --------------------------------------------------------------------------
_LB = "/subscriptions/s1/resourceGroups/mc/providers/Microsoft.Network/loadBalancers/kubernetes"


def _points(n: int, value: float) -> list[dict[str, object]]:
    return [
        {"timeStamp": f"2024-05-01T{m // 60 % 24:02d}:{m % 60:02d}:00Z", "average": value}
        for m in range(n)
    ]


def _metric(name: str, series: list[dict[str, object]]) -> dict[str, object]:
    return {
        "id": f"{_LB}/providers/Microsoft.Insights/metrics/{name}",
        "name": {"value": name},
        "timeseries": series,
    }


def _ts(
    ip: str, points: list[dict[str, object]], dim: str = "BackendIPAddress"
) -> dict[str, object]:
    return {"metadatavalues": [{"name": {"value": dim}, "value": ip}], "data": points}


def _snat_plain(size: int) -> str:
    """Four backends, as many minutes as the size allows (at most a day: minutes repeat)."""
    minutes = max(1, min(1440, size // (8 * 60)))
    ips = [f"10.224.0.{i}" for i in range(4, 8)]
    used = [_ts(ip, _points(minutes, 100.0)) for ip in ips]
    alloc = [_ts(ip, _points(minutes, 1024.0)) for ip in ips]
    body = {"interval": "PT1M", "value": [_metric("UsedSnatPorts", used),
                                          _metric("AllocatedSnatPorts", alloc)]}  # fmt: skip
    text = json.dumps(body)
    reps = max(1, size // len(text))
    return json.dumps([body] * reps) if reps > 1 else text


def _snat_series(size: int, *, pair: bool) -> str:
    """Many one-point series: paired by backend (pair) or none paired at all."""
    n = max(1, size // 400)  # two series (used, allocated) of about 200 characters each
    used = [_ts(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", _points(1, 1.0))
            for i in range(n)]  # fmt: skip
    alloc = [_ts(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", _points(1, 1024.0),
                 "BackendIPAddress" if pair else f"d{i}")
             for i in range(n)]  # fmt: skip
    body = {"interval": "PT1M", "value": [_metric("UsedSnatPorts", used),
                                          _metric("AllocatedSnatPorts", alloc)]}  # fmt: skip
    return json.dumps(body)


def _snat_resources(size: int) -> str:
    """Many metrics, each naming another resource."""
    n = max(1, size // 200)
    return json.dumps(
        {"interval": "PT1M", "value": [
            {"id": f"{_LB}{i}/providers/Microsoft.Insights/metrics/x", "name": {"value": "UsedSnatPorts"},
             "timeseries": []}
            for i in range(n)
        ]}
    )  # fmt: skip


# --- NSG -----------------------------------------------------------------------------------
def _nsg_rule(i: int) -> dict[str, object]:
    return {
        "name": f"allow-{i}", "priority": 100 + i % 4000, "direction": "Inbound",
        "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": f"10.{i // 256 % 256}.{i % 256}.0/24",
        "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": str(1024 + i),
    }  # fmt: skip


def _nsg_plain(size: int) -> str:
    per = len(json.dumps(_nsg_rule(1000))) + 2
    return json.dumps([_nsg_rule(i) for i in range(max(1, min(3900, size // per)))])


def _nsg_wide(size: int) -> str:
    """One rule with a huge list of prefixes and port ranges (valid-looking, Azure caps these)."""
    rule = _nsg_rule(1)
    rule["sourceAddressPrefixes"] = [
        f"10.{i // 256 % 256}.{i % 256}.0/24" for i in range(size // 32)
    ]
    rule["destinationPortRanges"] = [str(1 + i % 65535) for i in range(size // 32)]
    rule["sourceAddressPrefix"] = ""
    return json.dumps([rule])


def _nested(size: int) -> str:
    depth = max(1, size // 2)
    return "[" * depth + "]" * depth


PARSERS: dict[str, Parser] = {
    p.name: p
    for p in (
        Parser(
            "iptables-save",
            _cli(lambda f: ["analyze", "iptables", f, *FLOW]),
            lambda n: _fill(_SAVE_HEAD, _rule, n, "COMMIT\n"),
            _SAVE_HEAD + _rule(1) + "-A INPUT -p tcp --dport 10250 -j DROP\nCOMMIT\n",
        ),
        Parser(
            "iptables-S",
            _cli(lambda f: ["analyze", "iptables", f, *FLOW]),
            lambda n: _fill(_S_HEAD, _rule, n),
            _S_HEAD + _rule(1) + "-A INPUT -p tcp --dport 10250 -j DROP\n",
        ),
        Parser(
            "iptables-L",
            _cli(lambda f: ["analyze", "iptables", f, *FLOW]),
            lambda n: _fill(_L_HEAD, _listed, n, _list_tail()),
            _L_HEAD + _listed(1) + _list_tail(),
        ),
        Parser(
            "nft-json",
            _cli(lambda f: ["analyze", "nft", f, *FLOW]),
            _nft_plain,
            _nft_plain(600),
        ),
        Parser(
            "ufw-status",
            _cli(lambda f: ["analyze", "ufw", f, "--src", "10.224.0.4"]),
            lambda n: _fill(_UFW_HEAD, _ufw_rule, n),
            _UFW_HEAD + _ufw_rule(1) + "10250/tcp                  DENY IN     Anywhere\n",
        ),
        Parser(
            "nc",
            _cli(lambda f: ["analyze", "nc", f]),
            lambda n: _fill("", _nc_pair, n),
            _nc_pair(1) + "nc: connect to 10.0.0.9 port 10250 (tcp) failed: Connection refused\n",
        ),
        Parser(
            "runcommand",
            _cli(lambda f: ["analyze", "runcommand", f]),
            lambda n: _message(_fill("", lambda i: f"line {i}: all good here\n", n)),
            _message("hello\nworld"),
        ),
        Parser(
            "probe-triage",
            _node_run,
            lambda n: _triage(_fill("", _nc_pair, n)),
            _triage(_nc_pair(1)),
        ),
        Parser(
            "probe-deep",
            _node_run,
            lambda n: _deep(_fill(_SAVE_HEAD, _rule, n, "COMMIT\n")),
            _deep(_SAVE_HEAD + _rule(1) + "COMMIT\n"),
        ),
        Parser(
            "snat-metrics",
            _cli(lambda f: ["analyze", "snat", f]),
            _snat_plain,
            _snat_plain(2000),
        ),
        Parser(
            "nsg-json",
            _cli(
                lambda f: [
                    "analyze",
                    "nsg",
                    "--direction",
                    "inbound",
                    "--src",
                    "10.224.0.4",
                    "--dst",
                    "10.224.0.5",
                    "--dport",
                    "10250",
                    "--subnet-nsg",
                    f,
                ]
            ),
            _nsg_plain,
            _nsg_plain(600),
        ),
    )
}

_ANY = frozenset({"ok", "problem", "inconclusive", "error"})
_ERR = frozenset({"error"})
_INC = frozenset({"inconclusive"})
_INC_OR_ERR = frozenset({"inconclusive", "error"})
_NOT_OK = frozenset({"problem", "inconclusive", "error"})


def _cases() -> list[Case]:
    out: list[Case] = []

    def add(
        parser: str,
        name: str,
        make: Callable[[int], str],
        expect: frozenset[str],
        fixed_size: int | None = None,
    ) -> None:
        out.append(Case(parser, name, make, expect, fixed_size))

    # One huge line of a short pattern, in every text format; for the listing formats also
    # after a valid head (so the line reaches the rule reader, not the format detector).
    patterns = {
        "a-colon": "a:",
        "spaces": " ",
        "colons": ":",
        "equals": "=",
        "comment-open": "/* ",
        "paren": "(",
        "bracket": "[",
        "quote": '"',
        "backslash": "\\",
        "tabs": "\t",
    }
    heads = {
        "iptables-save": (_SAVE_HEAD + "-A INPUT ", "\nCOMMIT\n"),
        "iptables-S": (_S_HEAD + "-A INPUT ", "\n"),
        "iptables-L": (_L_HEAD + "ACCEPT     all  --  0.0.0.0/0  0.0.0.0/0  ", "\n"),
        "ufw-status": (_UFW_HEAD, "\n"),
        "nc": ("", "\n"),
    }
    for parser, (head, tail) in heads.items():
        for pname, unit in patterns.items():
            add(
                parser,
                f"line-of-{pname}",
                lambda n, h=head, u=unit, t=tail: h + _rep(u, n) + t,
                _ANY,
            )
    # The reported ones, and their relatives: targets of the regexes that used to backtrack.
    add("nc", "exit-like", lambda n: _rep("a:", n) + " exit", _ANY)
    add("nc", "frame-spaces", lambda n: "target=" + _rep(" ", n) + "x", _ANY)
    add("nc", "ncat-quit", lambda n: _rep("Ncat: ", n) + "x", _ANY)
    add("nc", "bash-resolve", lambda n: _rep(" -bash: h: ", n) + "x", _ANY)
    add("nc", "connect-to", lambda n: "nc: connect to " + _rep("a", n), _ANY)
    add("nc", "dial", lambda n: "dial tcp " + _rep("a:", n), _ANY)
    add("nc", "many-short-lines", lambda n: _rep("a:a:a exit=\n", n), _ANY)
    add("nc", "many-frames", lambda n: _rep("target=10.0.0.1:10250\n", n), _NOT_OK)
    # Issue 10: traditional netcat's anchored line, ncat's next address, prompts and `echo $?`.
    add("nc", "traditional-host", lambda n: _rep("a", n) + " [1.1.1.1] 1 (?) : x", _ANY)
    add("nc", "traditional-brackets", lambda n: "h " + _rep("[", n) + "] 1 (x) open", _ANY)
    add(
        "nc",
        "traditional-many",
        lambda n: _rep("(UNKNOWN) [10.0.0.1] 1 (?) : Connection refused\n", n),
        _NOT_OK,
    )
    add(
        "nc",
        "ncat-next",
        lambda n: _rep("Ncat: Connection to a failed: TIMEOUT.\nNcat: Trying next address...\n", n),
        _NOT_OK,
    )
    add(
        "nc",
        "prompt-echo",
        lambda n: _rep("$ nc -z 10.0.0.1 10250; echo $?\n1\n$ echo $?\n0\n", n),
        _NOT_OK,
    )
    add(
        "nc",
        "prompt-words",
        lambda n: "$ nc -vz " + _rep("10.0.0.1 ", n) + "\nNcat: TIMEOUT.\n",
        _ANY,
    )
    add(
        "nc",
        "families",
        lambda n: _fill(
            "",
            lambda i: (
                f"nc: connect to h (10.0.{i % 250}.1) port 1 (tcp) timed out: x\n"
                f"nc: connect to h (fd00::{i:x}) port 1 (tcp) failed: Network is unreachable\n"
            ),
            n,
        ),
        _NOT_OK,
    )
    add("iptables-L", "comment-unclosed",
        lambda n: _L_HEAD + "ACCEPT     all  --  0.0.0.0/0  0.0.0.0/0  " + _rep("/* a ", n)
        + "\n" + _list_tail()[1:], _ANY)  # fmt: skip
    add("iptables-L", "v6-colons", lambda n: _L_HEAD + " " + _rep(":", n) + "\n", _ANY)
    add("iptables-L", "many-comments", lambda n: _fill(
        _L_HEAD, lambda i: "ACCEPT     all  --  0.0.0.0/0  0.0.0.0/0  " + "/* x */ " * 40 + "\n", n
    ), _ANY)  # fmt: skip
    add("iptables-L", "header-parens", lambda n: "Chain INPUT (" + _rep("policy ACCEPT ", n), _ERR)
    add("iptables-save", "quoted-run",
        lambda n: _SAVE_HEAD + '-A INPUT -m comment --comment "' + _rep('\\"', n) + "\nCOMMIT\n",
        _ANY)  # fmt: skip
    add("iptables-save", "many-chains",
        lambda n: _fill(_SAVE_HEAD, lambda i: f":C{i} - [0:0]\n-A INPUT -j C{i}\n", n, "COMMIT\n"),
        _ANY)  # fmt: skip
    add("iptables-save", "many-tables", lambda n: _rep(_ACCEPT_ALL, n), _ANY)
    add("ufw-status", "app-parens", lambda n: _UFW_HEAD + "x (" + _rep("(", n) + "\n", _ANY)
    add(
        "ufw-status",
        "verbose-app",
        lambda n: _UFW_HEAD + "10250/tcp (" + _rep("a (v6", n) + " ALLOW IN Anywhere\n",
        _ANY,
    )
    add("ufw-status", "long-rule", lambda n: _UFW_HEAD + "10250/tcp " + _rep("ALLOW ", n) + "\n",
        _ANY)  # fmt: skip
    add("nft-json", "nested", _nft_nested, _ERR)
    add("nft-json", "long-chain-name", _nft_long_name, _ANY)
    add("runcommand", "nested", _nested, _ERR)
    add("runcommand", "stderr-markers", lambda n: _message(_rep("\n[stderr]\n", n)), _ANY)
    add("runcommand", "status-words", lambda n: "Enable succeeded: " + _rep("Enable succeeded: ", n),
        _ANY)  # fmt: skip
    add("runcommand", "a-colon-message", lambda n: _message(_rep("a:", n)), _ANY)
    # The pasted text forms (shared/analysis/runcommand_paste.py, issue 10 item 9).
    add("runcommand", "ps-labels", lambda n: "ErrorCode: " + _rep("ErrorCode: Conflict ", n),
        _ANY)  # fmt: skip
    add("runcommand", "ps-frame", lambda n: _rep("   | ErrorCode: Conflict StatusCode:\n", n), _ANY)
    add("runcommand", "debug-contents",
        lambda n: _rep('DEBUG: a.b: Response content:\nDEBUG: a.b: {"a": [', n), _ANY)  # fmt: skip
    add("runcommand", "tsv-heads", lambda n: _rep("ProvisioningState/x\ta\tb\t", n), _ANY)
    add("runcommand", "tsv-rows", lambda n: _rep("ComponentStatus/x\ta\tb\tm\tNone\n", n), _ANY)
    add("runcommand", "nested-codes",
        lambda n: "(A) m\nCode: A\n" + "".join(f"\tCode: B{i}\n" for i in range(n // 12)),
        _ANY)  # fmt: skip
    add("runcommand", "paren-codes", lambda n: "ERROR: " + _rep("(Conflict) ", n), _ANY)
    # Probe output: the adversarial text inside the node's blobs (size = decompressed size).
    add("probe-triage", "a-colon-blob", lambda n: _triage(_rep("a:", n)), _INC)
    add("probe-triage", "exit-like-blob", lambda n: _triage(_rep("a:", n) + " exit"), _INC)
    add(
        "probe-triage",
        "frame-spaces-blob",
        lambda n: _triage("target=" + _rep(" ", n) + "x"),
        _INC_OR_ERR,
    )
    add("probe-triage", "ncat-quit-blob", lambda n: _triage(_rep("Ncat: ", n) + "x"), _INC)
    add("probe-triage", "bash-resolve-blob", lambda n: _triage(_rep(" -bash: h: ", n) + "x"), _INC)
    add(
        "probe-triage",
        "many-nc-records",
        lambda n: _probe([f"nc\t{_rep('a:', 60)}" for _ in range(max(1, n // 130))], "triage"),
        _INC,
    )
    add("probe-deep", "comment-run-ruleset",
        lambda n: _deep(_SAVE_HEAD + '-A INPUT -m comment --comment "' + _rep("/* ", n) + '" -j DROP\nCOMMIT\n'),
        _ANY)  # fmt: skip
    add(
        "probe-deep",
        "a-colon-ruleset",
        lambda n: _deep(_SAVE_HEAD + _rep("a:", n) + "\nCOMMIT\n"),
        _INC,
    )
    add(
        "probe-deep",
        "a-colon-ufw",
        lambda n: _deep(_ACCEPT_ALL, ufw=_UFW_HEAD + _rep("a:", n) + "\n"),
        _NOT_OK,
    )
    add(
        "probe-deep",
        "ufw-parens",
        lambda n: _deep(_ACCEPT_ALL, ufw=_UFW_HEAD + "x (" + _rep("(", n) + "\n"),
        _NOT_OK,
    )
    add("probe-deep", "sections", lambda n: _deep(_rep("*filter\n", n)), _INC)
    # Inflates to the 4 MiB limit of a blob, whatever the size asked.
    bomb = 4 * 1024 * 1024
    add("probe-deep", "bomb", lambda n: _probe([f"ruleset\tlegacy\t{_bomb()}"], "deep"), _INC, bomb)
    add("snat-metrics", "paired-series", lambda n: _snat_series(n, pair=True), _ANY)
    add("snat-metrics", "unpaired-series", lambda n: _snat_series(n, pair=False), _ANY)
    add("snat-metrics", "many-resources", _snat_resources, _ANY)
    add("snat-metrics", "nested", _nested, _ERR)
    add("nsg-json", "nested", _nested, _ERR)
    add("nsg-json", "wide-rule", _nsg_wide, _ANY)
    add(
        "nsg-json",
        "long-name",
        lambda n: json.dumps([{**_nsg_rule(1), "name": _rep("a:", n)}]),
        _ANY,
    )

    # The paste pre-pass (shared/analysis/paste.py) and the recogniser run before every
    # parser: prefixes on every line, and lines that nearly look like prompts (a long
    # user@host without the prompt sign, an unclosed [user@host, runs of # or >).
    def _every_line(prefix: str, text: str) -> str:
        return "".join(prefix + ln for ln in text.splitlines(keepends=True))

    for parser in ("iptables-save", "iptables-L", "ufw-status", "nc"):
        plain = PARSERS[parser].plain
        add(parser, "paste-console", lambda n, p=plain: _every_line("[   14.414142] ", p(n)), _ANY)
        add(parser, "paste-quoted", lambda n, p=plain: _every_line("> ", p(n)), _ANY)
        add(
            parser,
            "paste-near-prompts",
            lambda n: _fill("", lambda i: f"u@{'h' * 300}x\n", n),
            _ANY,
        )
        add(
            parser,
            "paste-open-bracket",
            lambda n: _fill("", lambda i: f"[u@{'h ' * 150}\n", n),
            _ANY,
        )
        add(parser, "paste-hashes", lambda n: _fill("", lambda i: "#" * 40 + "\n", n), _ANY)
        add(parser, "paste-long-prompt", lambda n: "$ iptables " + _rep("-t ", n) + "\n", _ANY)
    return out


_BOMB: list[str] = []


def _bomb() -> str:
    """A blob of 64 MiB of zeros: about 64 KB compressed, far past any decompression limit."""
    if not _BOMB:
        raw = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)
        _BOMB.append(base64.b64encode(raw).decode())
    return _BOMB[0]


CASES: list[Case] = _cases()
