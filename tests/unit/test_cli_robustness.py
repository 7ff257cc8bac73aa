"""Every `tunnelwatch analyze` subcommand survives arbitrary input: an exit code, never a traceback.

Each analyzer has its own property tests for its parser; this one goes through the command line
(argument handling, reading, JSON output) with random and mangled text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "inputs"

# subcommand -> (argv builder around the input file, an example input to mangle)
COMMANDS = {
    "iptables": (
        lambda f: ["analyze", "iptables", f, "--src", "10.224.0.4", "--dst", "10.224.0.5"],
        "aks-node-blocked.iptables-save",
    ),
    "ufw": (lambda f: ["analyze", "ufw", f, "--src", "10.224.0.4"], "node-ufw-status-verbose.txt"),
    "nc": (lambda f: ["analyze", "nc", f], "probe-nc.txt"),
    "nsg": (
        lambda f: [
            "analyze", "nsg", "--direction", "inbound", "--src", "10.224.0.4",
            "--dst", "10.224.0.5", "--dport", "10250", "--subnet-nsg", f,
            "--vnet-prefix", "10.224.0.0/12",
        ],
        "subnet-nsg.json",
    ),
    "runcommand": (lambda f: ["analyze", "runcommand", f], "runcommand-result.json"),
    "snat": (lambda f: ["analyze", "snat", f], "lb-snat-metrics.json"),
}  # fmt: skip


def _mangle(text: str, cuts: list[tuple[int, int]], junk: str) -> str:
    for start, length in cuts:
        i = start % (len(text) + 1)
        text = text[:i] + junk + text[i + length :]
    return text


@pytest.mark.parametrize("kind", sorted(COMMANDS))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cuts=st.lists(st.tuples(st.integers(0, 20000), st.integers(0, 400)), max_size=4),
    junk=st.text(max_size=30),
    raw=st.booleans(),
)
def test_any_input_gives_an_exit_code(
    kind: str,
    cuts: list[tuple[int, int]],
    junk: str,
    raw: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build, example = COMMANDS[kind]
    text = junk if raw else _mangle((EXAMPLES / example).read_text(), cuts, junk)
    path = tmp_path / "input"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code = main([*build(str(path)), "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2, 3)
    if code == 2:
        assert str(path) in err  # the message names the input
        assert out == ""
    else:
        doc = json.loads(out)
        assert isinstance(doc, dict)
        assert "findings" in doc


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_missing_file_is_exit_2_naming_it(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    build, _ = COMMANDS[kind]
    code = main(build("/nonexistent/capture.txt"))
    _, err = capsys.readouterr()
    assert code == 2
    assert "/nonexistent/capture.txt" in err
    assert "no such file" in err
