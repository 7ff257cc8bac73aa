"""The probe's on-node reduction (the awk program inside the script), run by every awk here.

The program is taken from the shipped script and run the way the script runs it. Checked:
mawk, gawk and gawk --posix print the same bytes; the engine gives the same verdict and the
same deciding rule (number included) on the reduced dump as on the full one; exactly the
rules that provably cannot match go; anything unexpected turns the reduction off. The kernel
side (real iptables-save output, the real script) is tests/netns/test_probe_reduction.py.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.gen_kubeproxy import generate as kubeproxy
from shared.analysis import iptables
from shared.errors import InputError
from shared.probe import script_text
from tests.conftest import require_tools
from tests.lab.rulegen import LISTEN_PORTS, Universe, generate

SUBNET = IPv4Network("10.250.0.0/24")
NODE = ("10.250.0.40", "10.250.0.160")
PEERS = ("10.250.0.21", "10.250.0.77", "10.250.0.130")
SOURCES = (*PEERS, "10.250.0.99", "192.168.7.7")
AWKS = {"mawk": ["mawk"], "gawk": ["gawk"], "gawk --posix": ["gawk", "--posix"]}


def awk_program() -> str:
    m = re.search(r"^tw_reduce_awk='\n(.*?)^'$", script_text(), re.DOTALL | re.MULTILINE)
    assert m is not None, "the script holds no tw_reduce_awk='...' block"
    return m.group(1)


PROGRAM = awk_program()


def reduce(text: str, addrs: str = " ".join(NODE), awk: str = "mawk") -> str:
    require_tools(AWKS[awk][0])
    argv = [*AWKS[awk], "-v", f"addrs={addrs}", PROGRAM]
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def stats(reduced: str) -> tuple[int, int, int]:
    m = re.search(r"^# tw-reduced (\d+) (\d+) (\d+)$", reduced, re.MULTILINE)
    assert m is not None, reduced[-200:]
    return int(m[1]), int(m[2]), int(m[3])


def _rulegen(seed: int) -> str:
    rng = random.Random(seed)
    uni = Universe(
        SUBNET, tuple(map(IPv4Address, NODE)), tuple(map(IPv4Address, PEERS)), LISTEN_PORTS
    )
    return generate(rng, uni).text


def verdicts(text: str, dsts: tuple[str, ...] = NODE) -> list[str]:
    """Verdict, deciding rule (with its number) and cause for TCP 10250 from every source."""
    rulesets = iptables.parse_rulesets(text, "dump")
    out = []
    for dst in dsts:
        for src in SOURCES:
            for iface in ("eth0", "eth1"):
                packet = iptables.Packet(
                    src=IPv4Address(src), dst=IPv4Address(dst), dport=10250, in_iface=iface
                )
                v = iptables.evaluate_input(rulesets, packet)
                doc = v.to_json()
                out.append(json.dumps([doc["verdict"], doc["decided_by"], doc["cause"]]))
    return out


def test_every_awk_prints_the_same_reduction() -> None:
    require_tools("mawk", "gawk")
    corpus = [_rulegen(seed) for seed in range(12)] + [kubeproxy(3000, 7)]
    for text in corpus:
        outputs = {name: reduce(text, awk=name) for name in AWKS}
        assert len(set(outputs.values())) == 1, f"awks disagree on:\n{text}"


@pytest.mark.parametrize("seed", range(40))
def test_reduced_rulegen_dump_gives_the_same_verdicts(seed: int) -> None:
    text = _rulegen(seed)
    reduced = reduce(text)
    assert verdicts(reduced) == verdicts(text), f"seed {seed}:\n{text}\n--- reduced:\n{reduced}"


def test_kubeproxy_table_mostly_reduces_away_with_the_same_verdicts() -> None:
    text = kubeproxy(20_000, 3)
    reduced = reduce(text, addrs="10.250.0.40")
    kept, dropped, chains = stats(reduced)
    assert kept < 20 and dropped > 19_000 and chains > 1_000
    assert len(reduced) < 3_000
    assert verdicts(reduced, ("10.250.0.40",)) == verdicts(text, ("10.250.0.40",))


RULES = [  # (rule in INPUT, dropped?) for a node at 10.250.0.40
    ("-A INPUT -p udp -m udp --dport 53 -j DROP", True),
    ("-A INPUT -p 17 -j DROP", True),
    ("-A INPUT -p icmp -j REJECT", True),
    ("-A INPUT ! -p udp -j DROP", False),
    ("-A INPUT -p all -j DROP", False),
    ("-A INPUT -p tcp -j DROP", False),
    ("-A INPUT -d 10.9.0.1/32 -j DROP", True),
    ("-A INPUT -d 10.250.0.0/24 -j DROP", False),
    ("-A INPUT -d 10.250.0.40/32 -j DROP", False),
    ("-A INPUT ! -d 10.9.0.1/32 -j DROP", False),
    ("-A INPUT -d 10.250.0.0/255.255.255.0 -j DROP", False),  # a mask we do not read: kept
    ("-A INPUT -p tcp -m tcp --dport 22 -j DROP", True),
    ("-A INPUT -p tcp -m tcp --dport 10000:11000 -j DROP", False),
    ("-A INPUT -p tcp -m tcp --dport 10251:65535 -j DROP", True),
    ("-A INPUT -p tcp -m tcp ! --dport 22 -j DROP", False),
    ("-A INPUT -p tcp -m tcp --sport 10250 -j DROP", False),
    ("-A INPUT -p tcp -m multiport --dports 80,443,8000:9000 -j DROP", True),
    ("-A INPUT -p tcp -m multiport --dports 80,10250 -j DROP", False),
    ("-A INPUT -p tcp -m multiport --ports 80,443 -j DROP", False),  # source OR destination
    ("-A INPUT -p tcp -m multiport ! --dports 80 -j DROP", False),
    ("-A INPUT -p tcp -m tcp --destination-port 22 -j DROP", False),  # unknown spelling: kept
    ('-A INPUT -m comment --comment "-d 10.9.0.1/32 -p udp" -j DROP', False),
    ('-A INPUT -m comment --comment "odd \\" quote -p udp" -j DROP', False),
    ("-A INPUT -s 10.9.0.1/32 -j DROP", False),  # from ANY source: -s never drops a rule
    ("-A INPUT -i eth9 -j DROP", False),  # on any interface: -i neither
]


@pytest.mark.parametrize(("rule", "dropped"), RULES)
def test_exactly_the_rules_that_cannot_match_are_dropped(rule: str, dropped: bool) -> None:
    text = f"*filter\n:INPUT ACCEPT [0:0]\n{rule}\nCOMMIT\n"
    reduced = reduce(text, addrs="10.250.0.40")
    assert (rule not in reduced) is dropped
    assert ("# tw-skip INPUT 1" in reduced) is dropped
    assert stats(reduced)[:2] == ((0, 1) if dropped else (1, 0))


def test_an_unknown_node_address_keeps_every_d_rule() -> None:
    text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -d 10.9.0.1/32 -j DROP\nCOMMIT\n"
    assert "-A INPUT -d 10.9.0.1/32 -j DROP" in reduce(text, addrs="")


def test_unreachable_chains_go_and_ufw_declarations_stay() -> None:
    text = (
        "*filter\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:LIVE - [0:0]\n:DEAD - [0:0]\n"
        ":ufw-user-input - [0:0]\n:ONLY-FROM-OUTPUT - [0:0]\n"
        "-A INPUT -j LIVE\n-A INPUT -p udp -j DEAD\n-A OUTPUT -j ONLY-FROM-OUTPUT\n"
        "-A LIVE -j ACCEPT\n-A DEAD -j ACCEPT\n-A ufw-user-input -j ACCEPT\n"
        "-A ONLY-FROM-OUTPUT -j DROP\nCOMMIT\n"
    )
    reduced = reduce(text, addrs="10.250.0.40")
    assert ":LIVE - [0:0]" in reduced and "-A LIVE -j ACCEPT" in reduced
    assert "DEAD" not in reduced.replace("# tw-skip INPUT 1", "")
    assert ":ufw-user-input - [0:0]" in reduced and "# tw-skip ufw-user-input 1" in reduced
    assert "ONLY-FROM-OUTPUT" not in reduced.replace("-j ONLY-FROM-OUTPUT", "")
    assert stats(reduced) == (2, 5, 2)


@pytest.mark.parametrize(
    "text",
    [
        "*filter\n:INPUT ACCEPT [0:0]\n[0:0] -A INPUT -j DROP\nCOMMIT\n",  # -c counters
        "*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -p udp -j DROP\nCOMMIT\n",
        "-A INPUT -p udp -j DROP\n",
    ],
)
def test_anything_unexpected_turns_the_reduction_off(text: str) -> None:
    reduced = reduce(text)
    assert reduced.startswith(text.rstrip("\n"))
    assert reduced.splitlines()[-1].startswith("# tw-reduced off ")


# ---- the skip marker in the parser ---------------------------------------------------------

SKIPPED = (
    "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n# tw-skip INPUT 3\n-A INPUT -j X\n"
    "# tw-skip X 2\n-A X -p tcp -m tcp --dport 10250 -j DROP\nCOMMIT\n"
)


def test_skip_markers_keep_rule_numbers() -> None:
    (rs,) = iptables.parse_rulesets(SKIPPED, "s")
    v = iptables.evaluate_input([rs], iptables.Packet(src=IPv4Address("10.0.0.1")))
    assert v.decided_by is not None and (v.decided_by.chain, v.decided_by.rule_number) == ("X", 3)
    assert [s.rule_number for s in v.trace if s.chain == "INPUT"] == [4]
    assert iptables.fix_commands(v) == ("iptables -D X 3",)


@pytest.mark.parametrize(
    "marker",
    ["# tw-skip Y 2", "# tw-skip X 0", "# tw-skip X", "# tw-skip X -1", "# tw-skip X 2 3"],
)
def test_bad_skip_marker_is_an_input_error_naming_the_line(marker: str) -> None:
    with pytest.raises(InputError) as exc:
        iptables.parse_rulesets(SKIPPED.replace("# tw-skip X 2", marker), "s")
    assert exc.value.line == 6


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_reduced_dumps_raise_only_input_error(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(SKIPPED)))
    j = data.draw(st.integers(i, min(len(SKIPPED), i + 20)))
    noise = data.draw(st.sampled_from(["# tw-skip ", "X ", "7", "\n", ""]) | st.text(max_size=8))
    with contextlib.suppress(InputError):
        for rs in iptables.parse_rulesets(SKIPPED[:i] + noise + SKIPPED[j:], "s"):
            rs.compile_all()
