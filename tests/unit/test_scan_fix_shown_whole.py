"""`tunnelwatch scan` shows every command of a fix, in order, with its notes.

The demo estate has an NSG whose deny of TCP 443 sits at priority 100: no allow rule fits
below it, so the fix takes two steps (move the deny to 101, then add the allow at 100). The
move alone fixes nothing, so both must be printed, numbered, in that order, in the table and
in the JSON, and the notes that explain them too.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from examples.demo_scan import SCENARIO, _resolve_args
from shared.cli.main import main
from tests.armsim import ArmSimulator, load_estate

NSG = "aks-agentpool-80233557-nsg"


def _scan(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    estate = load_estate(SCENARIO)
    subscription = next(iter(estate.subscriptions.values()))
    token = tmp_path / "token"
    token.write_text("test-token-not-a-secret\n")
    with ArmSimulator(estate) as sim:
        argv = [
            "scan", "--subscription", subscription, "--arm-endpoint", sim.endpoint,
            "--ca-bundle", sim.ca_path, "--metrics-endpoint", sim.endpoint,
            "--access-token-file", str(token), "--no-dns", *_resolve_args(estate), "--quiet",
            *extra,
        ]  # fmt: skip
        assert main(argv) == 1  # problems found
    return capsys.readouterr().out


def _two_steps(commands: list[str]) -> None:
    move, create = (shlex.split(c) for c in commands)
    assert move[:5] == ["az", "network", "nsg", "rule", "update"]
    assert move[move.index("--name") + 1] == "deny-https-out"
    assert move[move.index("--priority") + 1] == "101"
    assert create[:5] == ["az", "network", "nsg", "rule", "create"]
    assert create[create.index("--priority") + 1] == "100"
    assert create[create.index("--access") + 1] == "Allow"


def test_the_scan_table_prints_both_steps_of_a_two_step_nsg_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _scan(tmp_path, capsys).splitlines()
    at = next(i for i, line in enumerate(lines) if f"{NSG}/deny-https-out (100)" in line)
    block = lines[at + 1 : at + 6]
    assert block[0].strip().startswith("fix: Add an allow rule")
    assert block[1].strip().startswith("1. $ az network nsg rule update")
    assert block[2].strip().startswith("2. $ az network nsg rule create")
    _two_steps([b.strip().split("$ ", 1)[1] for b in block[1:3]])
    notes = [b.strip() for b in block[3:]]
    assert notes[0].startswith("note: no free priority below deny rule deny-https-out (100)")


def test_the_scan_json_holds_both_steps_in_order_with_the_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc: dict[str, Any] = json.loads(_scan(tmp_path, capsys, "--json"))
    (f,) = [f for f in doc["findings"] if f"{NSG}/deny-https-out (100)" in f["title"]]
    _two_steps(f["remediation"]["commands"])
    assert any("move it to 101" in n for n in f["remediation"]["notes"])
