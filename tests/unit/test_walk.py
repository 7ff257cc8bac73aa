"""The walk core both packet-filter engines share (shared/analysis/walk.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from shared.analysis.walk import (
    NEXT_PACKETS,
    Assumption,
    Limits,
    Outcome,
    Packet,
    PacketVerdict,
    WalkAborted,
    agreed,
    drain,
    other_blocks,
    path_summary,
    split,
    with_next_packets,
)

ACCEPT, DROP, REJECT, UNKNOWN = (
    PacketVerdict.ACCEPT,
    PacketVerdict.DROP,
    PacketVerdict.REJECT,
    PacketVerdict.UNKNOWN,
)
SRC = ipaddress.ip_address("10.224.0.5")


class _Out(Outcome[str, str, str, None]):
    __slots__ = ()


def _o(verdict: PacketVerdict, by: str | None = None, *assumed: tuple[str, Assumption]) -> _Out:
    return _Out(verdict, by, (), tuple(assumed))


def test_a_verdict_stands_when_every_path_gives_it_or_every_path_blocks() -> None:
    assert agreed([_o(ACCEPT), _o(ACCEPT)])
    assert agreed([_o(DROP), _o(REJECT)])  # blocked either way
    assert not agreed([_o(ACCEPT), _o(DROP)])
    assert not agreed([_o(UNKNOWN)])


def test_other_blocks_are_the_other_rules_that_block_only_when_the_first_path_blocks() -> None:
    outcomes = [_o(DROP, "r1"), _o(REJECT, "r2"), _o(DROP, "r1"), _o(DROP, "r2")]
    assert other_blocks(outcomes) == ["r2"]
    assert other_blocks([_o(ACCEPT, "a"), _o(ACCEPT, "b")]) == []


def test_path_summary_names_six_paths_and_counts_the_rest() -> None:
    outcomes = [_Out(DROP, None, (), (("u", True),), reason="why")] * 8
    text = path_summary(outcomes, lambda o: ", ".join(f"{u} {h}" for u, h in o.assumed))
    assert text.count("drop (why) if u True") == 6 and text.endswith(" (and 2 more paths)")


@dataclass
class _Path:
    assumed: list[tuple[str, Assumption]] = field(default_factory=list)

    def fork(self) -> _Path:
        return _Path(list(self.assumed))


def test_split_queues_the_matching_side_and_drain_stops_at_the_branch_limit() -> None:
    work: list[_Path] = []
    br = _Path()
    other = split(br, work, "rule 3", taken=True, untaken=False)
    assert work == [other] and other.assumed == [("rule 3", True)]
    assert br.assumed == [("rule 3", False)]

    def run(p: _Path) -> _Out:  # every path forks once more: they never run out
        split(p, work, "again", taken="x", untaken="y")
        return _o(ACCEPT)

    outcomes: list[_Out] = []
    with pytest.raises(WalkAborted, match="more than 4 paths"):
        drain(work, run, Limits(branches=4), outcomes)
    assert outcomes and len(outcomes) + len(work) > 4


@dataclass(frozen=True)
class _Judged:
    verdict: PacketVerdict
    undecided: tuple[str, ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = ()


def test_next_packets_decide_an_accepted_tcp_syn_only() -> None:
    tcp, udp = Packet(SRC), Packet(SRC, proto="udp")
    dropped_after = _Judged(DROP, reason="ct state established dropped")
    accepted = _Judged(ACCEPT, ("u1",))
    assert with_next_packets(accepted, udp, lambda: dropped_after) is accepted
    then = with_next_packets(accepted, tcp, lambda: dropped_after)
    assert then.verdict is DROP and then.reason.startswith(NEXT_PACKETS)
    assert then.notes == (NEXT_PACKETS,)
    both = with_next_packets(accepted, tcp, lambda: _Judged(ACCEPT, ("u1", "u2")))
    assert both.verdict is ACCEPT and both.undecided == ("u1", "u2")
