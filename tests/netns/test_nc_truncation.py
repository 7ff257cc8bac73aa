"""Cut nc captures never answer "every target open": real OpenBSD nc output, cut at every line
and mid-line.

A node namespace runs the article's check, `nc -v -w 2 <ip> <port>`, against a peer with one
port open (a listener), one refused (nothing listens) and one timing out (an iptables DROP), in
sequences of two and three targets; bare, and framed as the node probe frames its lines
(`target=<ip>:<port>` before, `<ip>:<port> exit=<n>` after). Every capture is cut after each
line and at three points inside each line, and read as `tunnelwatch analyze nc` reads it, with
and without --expect (the number of targets tried). What a cut may answer:

- "every target open" (exit 0) only with --expect, and only when the whole capture says so
  (the cut then holds every target's result line whole): a capture cannot show that no
  target follows the last one it shows;
- a blocked status only for a target whose whole line the cut shows, the same as the whole
  capture's (a line cut mid-way, "Connection to ... failed" before its reason, is not read).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.analysis import netcat
from shared.errors import InputError
from tests.conftest import require_tools
from tests.lab.netns import Host, Lab
from tests.netns.test_iptables_truncation import cuts

pytestmark = pytest.mark.netns

PEERS = ["10.250.0.20", "10.250.0.21"]  # both listen on the open port
OPEN, REFUSED, TIMEOUT = 10250, 10251, 10252
SEQUENCES = {
    "open-open": [OPEN, OPEN],
    "open-refused": [OPEN, REFUSED],
    "open-timeout": [OPEN, TIMEOUT],
    "open-open-refused": [OPEN, OPEN, REFUSED],
}


@pytest.fixture(scope="module")
def node(netns_ok: None) -> Iterator[Host]:
    require_tools("nc", "iptables")
    with Lab() as lab:
        client = lab.add_host(["10.250.0.10"])
        peer = lab.add_host(PEERS)
        peer.listen([OPEN])
        peer.exec(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(TIMEOUT), "-j", "DROP"])
        yield client


def _capture(node: Host, ports: list[int], framed: bool) -> str:
    """The targets in turn, open ones on alternating peer addresses (each its own target)."""
    steps = []
    for i, port in enumerate(ports):
        target = PEERS[i % 2] if port == OPEN else PEERS[0]
        if framed:
            steps.append(
                f"echo target={target}:{port}; nc -v -w 2 {target} {port} </dev/null 2>&1; "
                f'echo "{target}:{port} exit=$?"'
            )
        else:
            steps.append(f"nc -v -w 2 {target} {port} </dev/null 2>&1")
    out = node.exec(["sh", "-c", "; ".join(steps)], timeout=60, check=False).stdout
    return str(out)


def _verdict(text: str, expect: int | None) -> str:
    try:
        report = netcat.analyze(text, "cut", expect=expect)
    except InputError:
        return "error"
    v = report.verdict
    return "unknown" if v is None else v.value


@pytest.mark.parametrize("framed", [False, True], ids=["bare", "framed"])
@pytest.mark.parametrize("sequence", list(SEQUENCES))
def test_cut_nc_capture_never_answers_open(node: Host, sequence: str, framed: bool) -> None:
    ports = SEQUENCES[sequence]
    whole = _capture(node, ports, framed)
    expected = _verdict(whole, len(ports))
    blocked = {REFUSED: "refused", TIMEOUT: "timeout"}
    assert expected == next((blocked[p] for p in ports if p in blocked), "open"), whole
    assert _verdict(whole, None) == (expected if expected != "open" else "unknown")
    tested = decided = false_open = 0
    wrong: list[str] = []
    for size, cut in cuts(whole):
        for expect in (None, len(ports)):
            tested += 1
            got = _verdict(cut, expect)
            if got in ("unknown", "error"):
                continue
            decided += 1
            where = f"cut at {size} of {len(whole)} (--expect {expect}): {got}"
            if got == "open" and (expected != "open" or expect is None):
                false_open += 1
                wrong.append(f"false open, {where}")
            elif got != expected:
                wrong.append(f"{where}, whole: {expected}")
            elif got != "open" and not _shows_whole_failure(cut, got):
                wrong.append(f"{where} without the failure's whole line")
    print(
        f"\nnc {'framed' if framed else 'bare'} {sequence}: {tested} cuts tested, {decided} "
        f"decided, {false_open} false open, {len(wrong)} unsound (whole: {expected})"
    )
    assert not wrong, "\n".join(wrong[:10])


def _shows_whole_failure(cut: str, status: str) -> bool:
    lines = cut.split("\n")[:-1]  # whole lines only
    words = {"refused": "refused", "timeout": "timed out"}[status]
    return any(words in ln for ln in lines) or (
        status == "timeout" and any(ln.endswith("exit=124") for ln in lines)
    )
