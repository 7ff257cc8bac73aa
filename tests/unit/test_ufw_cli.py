"""`tunnelwatch analyze ufw`: exit codes, the JSON document, and errors on stderr."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from shared.cli.main import main
from tests.unit.test_ufw_evaluate import verbose
from tests.unit.test_ufw_parse import NUMBERED

KEYS = {"active", "verdict", "rule", "default_incoming", "undecided", "source", "findings"}


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    return tmp_path / "ufw.txt"


def test_deny_exit_1_with_json(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture.write_text(NUMBERED)
    code = main(["analyze", "ufw", str(capture), "--src", "10.99.0.1", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert set(doc) >= KEYS
    assert doc["verdict"] == "deny" and doc["active"] is True
    assert doc["source"] == str(capture)
    rule = doc["rule"]
    assert set(rule) >= {"number", "to", "action", "from", "text", "line"}
    assert (rule["number"], rule["line"], rule["action"]) == (1, 5, "deny")
    [finding] = doc["findings"]
    assert finding["cause"] == 2 and finding["severity"] == "critical"
    assert finding["remediation"]["commands"] == [
        "ufw insert 1 allow from 10.99.0.1 to any port 10250 proto tcp"
    ]


def test_allow_exit_0_human_text(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture.write_text(verbose("10250/tcp ALLOW IN 10.224.0.0/16\n"))
    code = main(["analyze", "ufw", str(capture), "--src", "10.224.3.4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "TCP 10250 from 10.224.3.4: ALLOW" in out and "line 8" in out


def test_limit_exit_1_and_the_fix_agrees(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10, defect 7: LIMIT refuses the tunnel's bursts (every kubectl logs/exec is a new
    connection from the same agent address), so it is a problem: exit 1, a fix that allows
    the source ahead of the limiting rule, and words that say rate-limit, not block."""
    capture.write_text(verbose("10250/tcp LIMIT IN Anywhere\n"))
    assert main(["analyze", "ufw", str(capture), "--src", "10.0.0.1", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "limit" and doc["findings"][0]["severity"] == "warning"
    assert main(["analyze", "ufw", str(capture), "--src", "10.0.0.1"]) == 1
    out = capsys.readouterr().out
    assert "TCP 10250 from 10.0.0.1: LIMIT" in out and "6th new connection" in out
    assert "ahead of the rule that rate-limits it" in out and "blocks" not in out
    assert "ufw insert 1 allow from 10.0.0.1 to any port 10250 proto tcp" in out


def test_src_port_range_option(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10, defect 7: a rule on a source port is decided by the assumed range."""
    capture.write_text(verbose("Anywhere ALLOW IN 139,445/tcp (Samba)\n"))
    assert main(["analyze", "ufw", str(capture), "--src", "10.0.0.1"]) == 1
    out = capsys.readouterr().out
    assert ": DENY" in out and "note: assumed the client's source port is in 32768-60999" in out
    args = ["analyze", "ufw", str(capture), "--src", "10.0.0.1", "--json"]
    assert main([*args, "--src-port-range", "1-1023"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "unknown" and doc["flow"]["src_ports"] == [1, 1023]
    with pytest.raises(SystemExit):
        main([*args, "--src-port-range", "9-2"])
    assert "need 1 <= LO <= HI" in capsys.readouterr().err


def test_unknown_exit_3_and_default_argument(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture.write_text(
        "Status: active\n\nTo Action From\n-- ------ ----\n22/tcp ALLOW Anywhere\n\n"
    )
    assert main(["analyze", "ufw", str(capture), "--src", "10.0.0.1", "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "unknown" and doc["default_incoming"] is None
    assert doc["undecided"] and doc["findings"][0]["kind"] == "inconclusive"
    args = ["analyze", "ufw", str(capture), "--src", "10.0.0.1", "--default-incoming", "reject"]
    assert main([*args, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "reject" and doc["default_incoming"] == "reject"


def test_fix_source_option(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture.write_text(verbose(""))
    args = ["analyze", "ufw", str(capture), "--dst", "10.224.0.4", "--fix-source", "10.224.0.0/16"]
    assert main([*args, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"][0]["remediation"]["commands"] == [
        "ufw allow from 10.224.0.0/16 to any port 10250 proto tcp"
    ]


def test_other_port_and_iface(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture.write_text(verbose("9000/udp on eth0 ALLOW IN Anywhere\n"))
    args = ["analyze", "ufw", str(capture), "--port", "9000", "--proto", "udp", "--src", "10.0.0.1"]
    assert main([*args, "--in-iface", "eth0"]) == 0
    assert main([*args, "--in-iface", "eth1"]) == 1
    capsys.readouterr()


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Status: inactive\n")))
    assert main(["analyze", "ufw", "-", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == "<stdin>" and doc["active"] is False and doc["verdict"] == "allow"
    assert doc["rule"] is None and doc["findings"] == []


def test_bad_input_exit_2_on_stderr(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture.write_text("Status: active\n22/tcp ALLOWED Anywhere\n")
    assert main(["analyze", "ufw", str(capture)]) == 2
    err = capsys.readouterr().err
    assert f"{capture}:2:" in err and "not a ufw rule" in err


def test_missing_file_and_mixed_families(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "ufw", str(capture)]) == 2
    assert "no such file" in capsys.readouterr().err
    capture.write_text("Status: inactive\n")
    assert main(["analyze", "ufw", str(capture), "--src", "10.0.0.1", "--dst", "::1"]) == 2
    assert "families" in capsys.readouterr().err


def test_not_root_is_inconclusive(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture.write_text("ERROR: You need to be root to run this script\n")
    assert main(["analyze", "ufw", str(capture)]) == 3
    assert "root" in capsys.readouterr().out
