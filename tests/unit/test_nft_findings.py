"""Findings and fix commands from nftables verdicts, and `tunnelwatch analyze nft`."""

from __future__ import annotations

import json
import shlex
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from shared.analysis.findings import Cause, Kind, Subject
from shared.analysis.nftables import (
    Packet,
    evaluate_input,
    findings_for,
    fix_commands,
    parse_ruleset,
)
from shared.cli import main as cli
from tests.unit.test_nft_build import DPORT, DROP, KUBE_PROXY, SADDR, chain, doc, m, rule, table

PKT = Packet(src=IPv4Address("10.224.0.99"), dst=IPv4Address("10.224.0.4"), in_iface="eth0")
SUBJECT = Subject(cluster="c1", node="aks-nodepool1-0")


def _v(*items: Any, tbl: str = "fw") -> Any:
    return evaluate_input(parse_ruleset(doc(table("inet", tbl), *items), "cap.json"), PKT)


def test_drop_rule_finding_and_delete_by_handle() -> None:
    v = _v(chain("input", "input"), rule("input", 7, m(DPORT, 10250), DROP))
    (f,) = findings_for(v, SUBJECT)
    assert (f.check, f.cause, f.kind) == ("node.nftables", Cause.IPTABLES, Kind.PROBLEM)
    assert "rule: tcp dport 10250 drop  [handle 7]" in f.evidence
    assert any(e.startswith("trace: [syn] inet fw input handle 7: drop") for e in f.evidence)
    assert f.remediation is not None
    assert f.remediation.commands == ("nft delete rule inet fw input handle 7",)
    assert any("rollout restart" in n for n in f.remediation.notes)


def test_policy_drop_inserts_an_accept_for_the_source() -> None:
    v = _v(chain("input", "input", 0, "drop"))
    assert fix_commands(v) == (
        "nft insert rule inet fw input ip saddr 10.224.0.99 tcp dport 10250 accept",
    )
    (f,) = findings_for(v, SUBJECT)
    assert "policy drop" in f.title and f.key == "inet:fw:input:policy:drop"


def test_kube_proxy_map_element_fix() -> None:
    rs = parse_ruleset(KUBE_PROXY, "kp")
    v = evaluate_input(rs, Packet(src=PKT.src, dst=PKT.dst, dport=31001, in_iface="eth0"))
    assert fix_commands(v) == (
        "nft delete element ip kube-proxy no-endpoint-nodeports '{ tcp . 31001 }'",
    )
    (f,) = findings_for(v, SUBJECT)
    assert f.remediation is not None
    assert any("managed by kube-proxy" in n for n in f.remediation.notes)


def test_hostile_names_are_quoted() -> None:
    evil_table, evil_chain = "x$(reboot)", "in; rm -rf /"
    items = [
        chain(evil_chain, "input", tbl=evil_table),
        rule(evil_chain, 3, m(SADDR, "10.224.0.99"), DROP, tbl=evil_table),
    ]
    v = _v(*items, tbl=evil_table)
    (cmd,) = fix_commands(v)
    # nft's command line cannot spell these names: the fix is JSON on nft's stdin, one word.
    words = shlex.split(cmd)
    assert words[:2] == ["printf", "%s\\n"] and words[3:] == ["|", "nft", "-j", "-f", "-"]
    rule_id = {"family": "inet", "table": evil_table, "chain": evil_chain, "handle": 3}
    assert json.loads(words[2]) == {"nftables": [{"delete": {"rule": rule_id}}]}


def test_unknown_is_inconclusive_and_accept_is_silent() -> None:
    v = _v(chain("input", "input"), rule("input", 2, {"queue": {"num": 0}}))
    (f,) = findings_for(v, SUBJECT)
    assert f.kind is Kind.INCONCLUSIVE and f.remediation is None
    assert any("queue" in e for e in f.evidence)
    assert findings_for(_v(chain("input", "input")), SUBJECT) == []


# ---- the command line ---------------------------------------------------------------------


@pytest.fixture
def nft_cli() -> None:
    assert cli.ANALYZERS["nft"] == "shared.cli.analyze_nft"  # registered in shared/cli/main.py


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["analyze", "nft", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_blocked_json(
    nft_cli: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "nft.json"
    f.write_text(doc(table(), chain("input", "input"), rule("input", 9, m(DPORT, 10250), DROP)))
    code, out, _ = _run([str(f), "--src", "10.224.0.99", "--dst", "10.224.0.4", "--json"], capsys)
    assert code == 1
    d = json.loads(out)
    assert d["verdict"] == "drop" and d["decided_by"]["handle"] == 9
    assert d["findings"][0]["remediation"]["commands"] == ["nft delete rule inet fw input handle 9"]
    assert {"trace", "skipped_tables", "base_chains", "packet"} <= d.keys()


def test_cli_kube_proxy_passes(
    nft_cli: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "kp.json"
    f.write_text(KUBE_PROXY)
    code, out, _ = _run(
        [str(f), "--src", "10.224.0.99", "--dst", "10.224.0.4", "--in-iface", "eth0"], capsys
    )
    assert code == 0
    assert out.startswith("nftables verdict: ACCEPT")


def test_cli_unknown_and_bad_input(
    nft_cli: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "q.json"
    f.write_text(doc(table(), chain("input", "input"), rule("input", 2, {"queue": {"num": 0}})))
    code, _, _ = _run([str(f), "--src", "10.224.0.99"], capsys)
    assert code == 3
    f.write_text("iptables-save output, not JSON")
    code, _, err = _run([str(f), "--src", "10.224.0.99"], capsys)
    assert code == 2 and "not JSON" in err and str(f) in err
    code, _, err = _run([str(f), "--src", "10.224.0.99", "--dst", "fd00::1"], capsys)
    assert code == 2 and "--dst" in err
