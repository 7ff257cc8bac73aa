"""Every listing format of one kernel state gives iptables-save's verdict, or unknown.

The property of issue 10: the random rulesets of the kernel differential test
(tests/lab/rulegen.py, fixed seed) are loaded with the real iptables-restore (nf_tables and
legacy backends) into one namespace, and each is captured as `iptables-save` and as every
`iptables --list` format of the filter table (`-L`, `-L -v`, `-L -n`, `-L -n -v`, each with
and without `--line-numbers`, and `-L -n -v -x`). For the probed flows, each listing's verdict
must be the save's (the filter table alone, as the listings show only it) or "unknown",
never the opposite; and removing any one chain from the `-L -n -v --line-numbers` capture
(a paste that left it out) never turns a block into an accept, nor any verdict into another.

The shares per format are printed; `-L -n -v --line-numbers` must agree in at least 97% of
the cases and `-L -n -v` in at least 95%, with no opposite verdict anywhere. No packet is
sent: the kernel's own answers are the differential test's business; here the save dump is
the reference. Bounded: TW_LISTING_COUNT rulesets (default 120), a few seconds of iptables
commands and well under a minute of evaluation on 2 cores.
"""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pytest

from shared.analysis.iptables import Packet, evaluate_input, parse_rulesets
from tests.conftest import require_tools
from tests.lab.netns import netns_unavailable_reason
from tests.lab.rulegen import LISTEN_PORTS, SPORT_RANGE, Universe, generate
from tests.skips import cannot_run

pytestmark = pytest.mark.netns

SEED = 20261206  # fixed: a change of shares is a change of code, not of luck
COUNT = int(os.environ.get("TW_LISTING_COUNT", "120"))
SUBNET = IPv4Network("10.250.0.0/24")
NODE = ("10.250.0.40", "10.250.0.160")
PEERS = ("10.250.0.21", "10.250.0.77", "10.250.0.130")
FORMATS: dict[str, list[str]] = {
    "-L": ["-L"],
    "-L --line-numbers": ["-L", "--line-numbers"],
    "-L -v": ["-L", "-v"],
    "-L -v --line-numbers": ["-L", "-v", "--line-numbers"],
    "-L -n": ["-L", "-n"],
    "-L -n --line-numbers": ["-L", "-n", "--line-numbers"],
    "-L -n -v": ["-L", "-n", "-v"],
    "-L -n -v --line-numbers": ["-L", "-n", "-v", "--line-numbers"],
    "-L -n -v -x": ["-L", "-n", "-v", "-x"],
}
CUT_FROM = "-L -n -v --line-numbers"  # the capture chains are removed from
TOOLS = {
    "nft": ("iptables-nft-restore", "iptables-nft-save", "iptables-nft"),
    "legacy": ("iptables-legacy-restore", "iptables-legacy-save", "iptables-legacy"),
}
_EMPTY = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""


KINDS = ("same", "blocked", "unknown", "opposite")


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    opposite: list[str] = field(default_factory=list)

    def add(self, fmt: str, want: str, got: str, where: str) -> None:
        if got == want:
            self.counts[f"{fmt}:same"] += 1
        elif got == "blocked" and want in ("drop", "reject"):
            self.counts[f"{fmt}:blocked"] += 1  # "DROP or REJECT, depending on ...": not wrong
        elif got == "unknown":
            self.counts[f"{fmt}:unknown"] += 1
        else:
            self.counts[f"{fmt}:opposite"] += 1
            self.opposite.append(f"{fmt}: save says {want}, the listing {got}: {where}")

    def share(self, fmt: str) -> float:
        total = sum(self.counts[f"{fmt}:{k}"] for k in KINDS)
        return self.counts[f"{fmt}:same"] / total if total else 0.0

    def lines(self) -> list[str]:
        out = []
        for fmt in [*FORMATS, *(f"{f} (pasted)" for f in FORMATS), "chain removed"]:
            c = {k: self.counts[f"{fmt}:{k}"] for k in KINDS}
            total = sum(c.values())
            out.append(
                f"  {fmt:<32} same {self.share(fmt):6.1%}  unknown {c['unknown']:>4}  "
                f"drop-or-reject {c['blocked']:>3}  opposite {c['opposite']}  (of {total})"
            )
        return out


def _ns(name: str, argv: list[str], text: str | None = None) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", name, *argv], input=text, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv}: {done.stderr.strip()}")
    return done.stdout


def _only_filter(save: str) -> str:
    """The `*filter ... COMMIT` section of an iptables-save dump (comments kept)."""
    out, inside = [], False
    for line in save.splitlines(keepends=True):
        if line.startswith("*"):
            inside = line.strip() == "*filter"
        if inside or line.startswith("#"):
            out.append(line)
        if line.strip() == "COMMIT":
            inside = False
    return "".join(out)


def _without_chain(listing: str, chain: str) -> str:
    """The listing with one chain's block (header to the blank line after it) left out."""
    blocks = listing.split("\n\n")
    kept = [b for b in blocks if not b.startswith(f"Chain {chain} (")]
    return "\n\n".join(kept)


def _chains(listing: str) -> list[str]:
    return [ln.split()[1] for ln in listing.splitlines() if ln.startswith("Chain ")]


def _verdict(text: str, source: str, packet: Packet, *, whole: bool = False) -> str:
    """The verdict's word; "blocked" for "DROP or REJECT, depending on ...". `whole`: the
    test ran the command and read all its output (as the node probe marks its dumps), so
    the listing's last chain did not go on past the end."""
    rulesets = parse_rulesets(text, source)
    for rs in rulesets:
        rs.whole = whole
    v = evaluate_input(rulesets, packet)
    return "blocked" if v.blocked_as else str(v.verdict.value)


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    if reason := netns_unavailable_reason():
        cannot_run(reason)
    require_tools(*(t for tools in TOOLS.values() for t in tools))
    name = f"twprop{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    result = Tally()
    try:
        _run(name, result)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    print(f"\nlistings vs iptables-save ({COUNT} rulesets, seed {SEED}):")
    print("\n".join(result.lines()))
    yield result


def _run(name: str, tally: Tally) -> None:
    rng = random.Random(SEED)
    uni = Universe(
        SUBNET,
        tuple(IPv4Address(a) for a in NODE),
        tuple(IPv4Address(a) for a in PEERS),
        LISTEN_PORTS,
    )
    for index in range(COUNT):
        gen = generate(rng, uni)
        backend = "nft" if index % 3 else "legacy"
        restore, save_cmd, cmd = TOOLS[backend]
        for tool in (TOOLS["nft"][0], TOOLS["legacy"][0]):
            _ns(name, [tool], _EMPTY)  # restore replaces only the tables it names
        _ns(name, [restore], gen.text)
        save = _only_filter(_ns(name, [save_cmd]))
        listings = {fmt: _ns(name, [cmd, *argv]) for fmt, argv in FORMATS.items()}
        packets = [
            Packet(
                src=IPv4Address(src),
                dst=IPv4Address(rng.choice(NODE)),
                dport=port,
                in_iface="eth0",
                sport=rng.randint(*SPORT_RANGE),
            )
            for src in rng.sample(PEERS, 2)
            for port in gen.probe_ports
        ]
        for packet in packets:
            where = f"ruleset {index} ({backend}), {packet}\n{gen.text}"
            want = _verdict(save, "save", packet, whole=True)
            for fmt, text in listings.items():
                tally.add(fmt, want, _verdict(text, fmt, packet, whole=True), where)
                # The same text pasted: nothing shows that its last chain ended there.
                tally.add(f"{fmt} (pasted)", want, _verdict(text, fmt, packet), where)
            for chain in _chains(listings[CUT_FROM]):
                cut = _without_chain(listings[CUT_FROM], chain)
                got = _verdict(cut, f"without {chain}", packet)
                tally.add("chain removed", want, got, f"without chain {chain}: {where}")


def test_no_listing_format_gives_the_opposite_verdict(tally: Tally) -> None:
    assert not tally.opposite, "\n\n".join(tally.opposite[:3])


def test_verbose_numeric_listings_mostly_agree(tally: Tally) -> None:
    assert tally.share("-L -n -v --line-numbers") >= 0.97, "\n".join(tally.lines())
    assert tally.share("-L -n -v") >= 0.95, "\n".join(tally.lines())
