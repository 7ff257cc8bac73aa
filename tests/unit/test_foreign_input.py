"""Every analyzer answers exit 2 on every other analyzer's input, naming what the input looks
like and which analyzer reads it (issue 10, item 8); each analyzer's own inputs still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
FLOW = ["--src", "10.224.0.4", "--dst", "10.224.0.5"]

# input -> (the analyzer that reads it, what the refusal says it looks like)
INPUTS: dict[str, tuple[str, str]] = {
    "examples/inputs/aks-node-blocked.iptables-save": ("iptables", "`iptables-save` output"),
    "examples/inputs/aks-node-healthy.iptables-save": ("iptables", "`iptables-save` output"),
    "examples/inputs/node-ufw-status-verbose.txt": ("ufw", "`ufw status` output"),
    "examples/inputs/probe-nc.txt": ("nc", "connection test output"),
    "tests/fixtures/nc/openbsd-real.txt": ("nc", "connection test output"),
    "tests/fixtures/nc/bash-real.txt": ("nc", "connection test output"),
    "tests/fixtures/nc/mixed-tools.txt": ("nc", "connection test output"),
    "examples/inputs/runcommand-result.json": ("runcommand", "a run command result"),
    "tests/fixtures/runcommand/windows.json": ("runcommand", "a run command result"),
    "tests/fixtures/runcommand/managed-instance-view.json": ("runcommand", "a run command result"),
    "tests/fixtures/runcommand/message-only.txt": ("runcommand", "a run command message"),
    "tests/fixtures/runcommand/conflict-error.json": ("runcommand", "an Azure error response"),
    "examples/inputs/subnet-nsg.json": ("nsg", "network security group JSON"),
    "examples/inputs/nic-nsg.json": ("nsg", "network security group JSON"),
    "tests/fixtures/nsg/effective-nic.json": ("nsg", "network security group JSON"),
    "tests/fixtures/nsg/rule-list-az.json": ("nsg", "network security group JSON"),
    "examples/inputs/lb-snat-metrics.json": ("snat", "Azure Monitor metrics JSON (SNAT)"),
    "tests/fixtures/snat/natgw-ok.json": ("snat", "Azure Monitor metrics JSON (SNAT)"),
}
# Inputs written here: what people paste into the wrong analyzer.
TEXTS: dict[str, tuple[str, str, str]] = {
    "iptables -S": ("iptables", "`iptables -S` output", "-P INPUT ACCEPT\n-A INPUT -j DROP\n"),
    "iptables -L": (
        "iptables",
        "`iptables -L` output",
        "Chain INPUT (policy ACCEPT)\ntarget     prot opt source               destination\n\n",
    ),
    "nft list ruleset": (
        "nft-text",
        "`nft list ruleset` output (text)",
        "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\t}\n}\n",
    ),
    "nft -j": ("nft", "`nft -j list ruleset` output", '{"nftables": [{"metainfo": {}}]}\n'),
    "az CLI error": (
        "runcommand",
        "an az CLI / Azure PowerShell error",
        "ERROR: (Conflict) Run command extension execution is in progress.\n"
        "Code: Conflict\nMessage: Run command extension execution is in progress.\n",
    ),
}
ANALYZERS = ("iptables", "nft", "ufw", "nc", "runcommand", "nsg", "snat")


def _argv(analyzer: str, path: str) -> list[str]:
    if analyzer in ("iptables", "nft"):
        return ["analyze", analyzer, path, *FLOW]
    if analyzer == "nsg":
        return ["analyze", "nsg", "--direction", "inbound", "--dport", "10250",
                "--subnet-nsg", path, *FLOW]  # fmt: skip
    return ["analyze", analyzer, path]


def _cases() -> list[tuple[str, str, str, str]]:
    """(analyzer, input id, path or text, ...) for every analyzer x every input."""
    out = []
    for rel, (owner, looks) in INPUTS.items():
        out += [(a, rel, owner, looks) for a in ANALYZERS]
    for name, (owner, looks, _) in TEXTS.items():
        out += [(a, name, owner, looks) for a in ANALYZERS]
    return out


@pytest.mark.parametrize(("analyzer", "source", "owner", "looks"), _cases())
def test_foreign_input_is_exit_2_and_says_what_it_looks_like(
    analyzer: str,
    source: str,
    owner: str,
    looks: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if source in TEXTS:
        path = tmp_path / "pasted.txt"
        path.write_text(TEXTS[source][2])
        name = str(path)
    else:
        name = str(ROOT / source)
    code = main(_argv(analyzer, name))
    out, err = capsys.readouterr()
    if analyzer == owner:
        assert code in (0, 1, 3), err  # its own input: a verdict, never refused
        assert "this looks like" not in err
        return
    assert code == 2, (out, err)
    assert f"{name}: this looks like {looks}" in err, err
    if owner == "nft-text":
        assert "`nft -j list ruleset`" in err
    elif owner == "runcommand" and "error" in looks:
        assert "use `tunnelwatch analyze runcommand`" in err
    else:
        assert f"; use `tunnelwatch analyze {owner}`" in err, err


def test_ufw_does_not_take_a_run_command_error_for_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `ERROR: (Conflict) ...` read as ufw's own error (exit 3, inconclusive)."""
    path = tmp_path / "out.txt"
    path.write_text(TEXTS["az CLI error"][2])
    assert main(["analyze", "ufw", str(path)]) == 2
    err = capsys.readouterr().err
    assert "this looks like an az CLI / Azure PowerShell error, not `ufw status` output" in err
    path.write_text("ERROR: You need to be root to run this script\n")  # ufw's own: still 3
    assert main(["analyze", "ufw", str(path)]) == 3


def test_nc_refuses_an_iptables_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 3 "no connection test output recognised"."""
    assert (
        main(["analyze", "nc", str(ROOT / "examples/inputs/aks-node-blocked.iptables-save")]) == 2
    )
    assert "use `tunnelwatch analyze iptables`" in capsys.readouterr().err
