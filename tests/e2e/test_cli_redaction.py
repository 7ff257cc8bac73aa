"""`tunnelwatch scan` as a user runs it (a separate process, over HTTPS to the ARM simulator)
while ARM answers errors whose text carries every secret format of tests/redaction_samples:
neither stderr (log lines, error messages) nor stdout (the text report, --json run.errors and
findings) may show one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.cli.main import main
from shared.redaction import MASK
from tests.armsim import SCENARIOS, ArmSimulator, Faults, load_estate
from tests.armsim.faults import Failure
from tests.redaction_samples import SECRETS, Sample, secrets_in

ROOT = Path(__file__).resolve().parents[2]
SUB = "11111111-1111-1111-1111-111111111111"
MESSAGE = "Denied. " + " | ".join(s.text for s in SECRETS)


@pytest.fixture(scope="module")
def scan_argv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    estate = load_estate(SCENARIOS / "demo.json")
    subscription = next(iter(estate.subscriptions.values()))
    # 403: answered at once (no retries), and the scan goes on with the other reads.
    faults = Faults(
        failures=[
            Failure("loadBalancers.listAll", 403, "AuthorizationFailed", MESSAGE),
            Failure("networkSecurityGroups.listAll", 403, "AuthorizationFailed", MESSAGE),
        ]
    )
    token = tmp_path_factory.mktemp("token") / "token"
    token.write_text("armsim-token-not-a-secret\n")
    with ArmSimulator(estate, faults=faults) as sim:
        yield [
            sys.executable, "-m", "shared.cli.main", "scan", "--subscription", subscription,
            "--arm-endpoint", sim.endpoint, "--ca-bundle", sim.ca_path,
            "--metrics-endpoint", sim.endpoint, "--access-token-file", str(token), "--no-dns",
        ]  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_json_output_and_stderr_carry_no_secret(scan_argv: list[str]) -> None:
    proc = _run([*scan_argv, "--json"])
    assert proc.returncode in (1, 3), proc.stderr
    doc = json.loads(proc.stdout)
    errors = doc["run"]["errors"]
    # The failures were seen and reported, with the secrets masked.
    assert any("loadBalancers" in e and MASK in e for e in errors), errors
    assert secrets_in(proc.stdout) == []
    assert "loadBalancers list failed" in proc.stderr  # the log line is there...
    assert secrets_in(proc.stderr) == []  # ...without the secrets


def test_text_report_and_progress_carry_no_secret(scan_argv: list[str]) -> None:
    proc = _run(scan_argv)
    assert proc.returncode in (1, 3), proc.stderr
    assert "errors:" in proc.stdout and MASK in proc.stdout
    assert secrets_in(proc.stdout) == []
    assert "scanning" in proc.stderr and "list failed" in proc.stderr
    assert secrets_in(proc.stderr) == []


@pytest.mark.parametrize("sample", [s for s in SECRETS if "=" not in s.text], ids=repr)
def test_usage_errors_on_stderr_carry_no_secret(
    sample: Sample, capsys: pytest.CaptureFixture[str]
) -> None:
    # An InputError quotes what it refused (here a --resolve without NAME=IP): a secret pasted
    # by mistake must not come back on stderr.
    argv = ["scan", "--subscription", SUB, "--resolve", sample.text]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--resolve" in err and MASK in err
    assert secrets_in(err) == []
