"""Cut `nft -j` captures never answer "allowed", and say they are cut (exit 3, not 2).

Real nft loads three native rulesets into a namespace (healthy; a drop of TCP 10250 at the end
of the input chain; the same drop in a regular chain the input chain jumps to, listed last) and
`nft -j list ruleset` reads each back: one line of JSON. Each capture is cut at every character
(every cut is inside that line, or after its newline). A cut must be "unknown" with a reason
saying the JSON ends early: `tunnelwatch analyze nft` exits 3 (inconclusive), never 0, and
never 2 (unreadable input: for text that is not nft JSON at all).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from ipaddress import ip_address
from pathlib import Path

import pytest

from shared.analysis.iptables import Packet
from shared.analysis.nftables import evaluate_input, parse_ruleset
from shared.cli.main import main
from shared.errors import InputError
from tests.conftest import require_tools
from tests.lab.netns import netns_unavailable_reason
from tests.skips import cannot_run

pytestmark = pytest.mark.netns

BASE = """table inet tw {
    chain guard {
%s    }
    chain input {
        type filter hook input priority 0; policy accept;
        ct state established,related accept
        iifname "lo" accept
        tcp dport 22 accept
        ip saddr 192.168.0.0/16 counter drop
        jump guard
%s    }
}
"""
DROP = "        tcp dport 10250 drop\n"
STATES = {
    "healthy": BASE % ("", ""),
    "drop-in-input": BASE % ("", DROP),
    "drop-in-jumped-chain": BASE % (DROP, ""),
}
PACKET = Packet(
    src=ip_address("10.224.0.5"), dst=ip_address("10.224.0.4"), dport=10250, in_iface="eth0"
)


@pytest.fixture(scope="module")
def captures() -> dict[str, str]:
    if reason := netns_unavailable_reason():
        cannot_run(reason)
    require_tools("nft")
    out: dict[str, str] = {}
    for state, ruleset in STATES.items():
        name = f"twnftcut{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            run = ["ip", "netns", "exec", name, "nft"]
            loaded = subprocess.run([*run, "-f", "-"], input=ruleset, capture_output=True,
                                    text=True, timeout=60)  # fmt: skip
            assert loaded.returncode == 0, loaded.stderr
            listed = subprocess.run([*run, "-j", "list", "ruleset"], capture_output=True,
                                    text=True, timeout=60, check=True)  # fmt: skip
            out[state] = listed.stdout
        finally:
            subprocess.run(["ip", "netns", "del", name], check=False)
    return out


def _verdict(text: str) -> tuple[str, str]:
    """(verdict, reason) as `tunnelwatch analyze nft` decides: "error" is exit 2."""
    try:
        v = evaluate_input(parse_ruleset(text, "cut"), PACKET)
    except InputError as exc:
        if exc.message.startswith("capture incomplete: "):
            return "unknown", exc.message  # the CLI answers unknown, exit 3
        return "error", exc.message
    return v.verdict.value, v.reason


@pytest.mark.parametrize("state", list(STATES))
def test_cut_nft_json_is_inconclusive_never_allowed(captures: dict[str, str], state: str) -> None:
    whole = captures[state]
    expected, _ = _verdict(whole)
    assert expected == ("accept" if state == "healthy" else "drop"), (state, expected)
    assert whole.count("\n") <= 1  # nft -j prints one line
    counts = {"unknown": 0, "error": 0, "accept": 0, "other": 0}
    wrong: list[str] = []
    body = whole.rstrip("\n")
    for size in range(1, len(body)):
        got, reason = _verdict(body[:size])
        if got == "unknown" and reason.startswith("capture incomplete: the JSON ends before"):
            counts["unknown"] += 1
            continue
        counts[got if got in counts else "other"] += 1
        wrong.append(f"cut at {size} of {len(body)} ({body[max(0, size - 20) : size]!r}): "
                     f"{got}: {reason}")  # fmt: skip
    print(
        f"\nnft -j {state}: {len(body) - 1} cuts tested, {counts['unknown']} inconclusive "
        f"(capture incomplete), {counts['error']} refused as unreadable, {counts['accept']} "
        f"false allowed, {counts['other']} other"
    )
    assert not wrong, "\n".join(wrong[:10])
    assert _verdict(body)[0] == expected  # only the newline cut: still the whole document


def test_text_that_is_not_nft_json_stays_unreadable() -> None:
    for text in ('{"other": [', "[1, 2", '{"nftables": [}', "hello", '{"nftables": [1, 2]] x'):
        with pytest.raises(InputError) as caught:
            parse_ruleset(text, "t")
        assert not caught.value.message.startswith("capture incomplete"), text


def test_cli_exit_3_for_a_cut_capture(
    captures: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = captures["drop-in-input"]
    path = tmp_path / "cut.json"
    path.write_text(whole[: whole.index('"drop"')])  # cut just before the deciding verdict
    assert main(["analyze", "nft", str(path), "--src", "10.224.0.5", "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "unknown" and doc["decided_by"] is None
    assert doc["reason"].startswith("capture incomplete: the JSON ends before")
    assert doc["findings"][0]["kind"] == "inconclusive"
    path.write_text('{"nftables": [}')
    assert main(["analyze", "nft", str(path), "--src", "10.224.0.5"]) == 2
