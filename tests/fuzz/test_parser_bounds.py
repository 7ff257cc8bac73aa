"""Every parser of node and CLI input stays within a time and a memory bound (issue 15).

Time: an adversarial input of size S takes at most K times as long as a plain input of the
same size S, measured in the same run (a ratio, so a slow or busy machine does not matter),
plus a small absolute floor for tiny inputs where noise dominates. Each time is the best of up
to 3 runs. Sizes grow from 16 KB to 1 MB (x4) and a case stops at its first failing size, so a
quadratic parser fails in about a second instead of running for minutes.

Memory: the tracemalloc peak of an adversarial 64 KB input stays under a fixed multiple of the
input size plus a constant (tracemalloc slows a run tenfold: 1 MB inputs would take minutes;
the bound being linear, 64 KB shows a super-linear parser as well). For probe output the size
is that of the text inside the blobs, once decompressed.

Before any measure, each input is shown to reach an outcome of the kind its case expects
(a verdict, an inconclusive finding, or an InputError naming the input), never a crash.
Random mutations of small valid inputs (hypothesis, derandomized: the same examples every
run) are held to the same bounds. The inputs live in tests/fuzz/corpus.py.
"""

from __future__ import annotations

import functools
import time
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.corpus import CASES, PARSERS, Case

K = 20.0  # an adversarial input may take this many times a plain one of its size
FLOOR_S = 0.05  # ... plus this, so that milliseconds of noise on small inputs do not count
SIZES = (16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024)
MEMORY_SIZE = 64 * 1024
# tracemalloc peak <= this * input size + MEMORY_CONST. The most seen is ~110 bytes per byte
# (iptables' tokenizer on a run of backslash escapes, linear: the same at 16 KB and 256 KB).
MEMORY_PER_BYTE = 128
MEMORY_CONST = 4 * 1024 * 1024
TRIES = 3


def _timed(run: Callable[[str], str], text: str) -> float:
    started = time.perf_counter()
    run(text)
    return time.perf_counter() - started


def _best(run: Callable[[str], str], text: str, enough: float = 0.0) -> float:
    """The best of up to TRIES runs; stops early once a run is within `enough`, or is more
    than twice over it (noise does not explain that, and a quadratic run is slow)."""
    best = float("inf")
    for _ in range(TRIES):
        best = min(best, _timed(run, text))
        if best <= enough or (enough and best > 2 * enough):
            break
    return best


@functools.cache
def _plain_time(parser: str, size: int) -> float:
    p = PARSERS[parser]
    text = p.plain(size)
    assert p.run(text) != "error", f"{parser}: the plain input of {size} is not readable"
    return _best(p.run, text)


def _bound(parser: str, size: int) -> float:
    return K * _plain_time(parser, size) + FLOOR_S


def _within_bound(parser: str, run: Callable[[str], str], text: str, size: int) -> tuple[bool, str]:
    """Whether `text` parses within the bound, measured twice before saying no: a busy machine
    (CI, other tests) can slow one measurement several-fold, while a quadratic parser stays
    over the bound however often it is measured. The second time, the plain input is timed
    again too, right next to it."""
    bound = _bound(parser, size)
    took = _best(run, text, enough=bound)
    if took <= bound:
        return True, ""
    p = PARSERS[parser]
    plain = p.plain(size)
    plain_took = min(_timed(p.run, plain) for _ in range(TRIES))
    bound = K * plain_took + FLOOR_S
    took = _best(run, text, enough=bound)
    return took <= bound, (
        f"{len(text):,} characters took {took:.3f} s; a plain input of that size takes "
        f"{plain_took:.4f} s (bound {bound:.3f} s), measured twice"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_adversarial_input_within_time_and_memory_bounds(case: Case) -> None:
    run = PARSERS[case.parser].run
    outcome = run(case.make(SIZES[0]))
    assert outcome in case.expect, f"{case.id}: {outcome}, expected one of {sorted(case.expect)}"
    for size in SIZES:
        ok, why = _within_bound(case.parser, run, case.make(size), size)
        assert ok, f"{case.id}: {why}"
    peak = _peak(run, case.make(MEMORY_SIZE))
    size = case.fixed_size or MEMORY_SIZE
    assert peak <= MEMORY_PER_BYTE * size + MEMORY_CONST, f"{case.id}: peak {peak:,} bytes"


def _peak(run: Callable[[str], str], text: str) -> int:
    tracemalloc.start()
    try:
        run(text)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_plain_input_within_memory_bound(parser: str) -> None:
    peak = _peak(PARSERS[parser].run, PARSERS[parser].plain(MEMORY_SIZE))
    assert peak <= MEMORY_PER_BYTE * MEMORY_SIZE + MEMORY_CONST, f"{parser}: peak {peak:,} bytes"


def _mutate(sample: str, ops: list[tuple[int, int, int, str]]) -> str:
    """Each op repeats a slice of the text (up to 1 MB in all), or puts junk in place of one."""
    text = sample
    for start, length, times, junk in ops:
        i = start % (len(text) + 1)
        piece = text[i : i + length] or junk or "a:"
        if times > 1:
            reps = min(times, max(1, (SIZES[-1] - len(text)) // len(piece)))
            text = text[:i] + piece * reps + text[i + length :]
        else:
            text = text[:i] + junk + text[i + length :]
    return text


@pytest.mark.parametrize("parser", sorted(PARSERS))
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(
        st.tuples(
            st.integers(0, 5000),
            st.integers(0, 80),
            st.sampled_from([1, 1, 1000, 100_000]),
            st.text(alphabet=st.sampled_from(list(' \t:=/*()[]"\\\n-abx0.#')), max_size=8),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_input_within_time_bound(parser: str, ops: list[tuple[int, int, int, str]]) -> None:
    p = PARSERS[parser]
    text = _mutate(p.sample, ops)
    assert p.run(text) in {"ok", "problem", "inconclusive", "error"}
    size = next((s for s in SIZES if len(text) <= s), SIZES[-1])
    ok, why = _within_bound(parser, p.run, text, size)
    assert ok, f"{parser}: {why}"
