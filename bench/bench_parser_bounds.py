"""Parse time of plain versus adversarial inputs, per parser (issue 15: bounded parsing).

For each parser of tests/fuzz/corpus.py (the `analyze` commands end to end, and the worker's
reading of probe output), the best of 3 runs on a plain input and on each adversarial input of
the same size, with the ratio. Prints figures only; tests/fuzz/test_parser_bounds.py holds the
bounds. Run: `python -m bench.bench_parser_bounds [--size BYTES] [--parser NAME]`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from tests.fuzz.corpus import CASES, PARSERS


def _best(run: Callable[[str], str], text: str, tries: int = 3) -> tuple[float, str]:
    best, outcome = float("inf"), ""
    for _ in range(tries):
        started = time.perf_counter()
        outcome = run(text)
        best = min(best, time.perf_counter() - started)
    return best, outcome


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=1024 * 1024, help="input size (1 MB)")
    ap.add_argument("--parser", choices=sorted(PARSERS), help="only this parser")
    args = ap.parse_args(argv)
    print(f"input size {args.size:,} characters (probe output: decompressed), best of 3")
    print(f"{'parser':<14} {'input':<22} {'seconds':>8} {'x plain':>8}  outcome")
    for name, parser in PARSERS.items():
        if args.parser and name != args.parser:
            continue
        plain, outcome = _best(parser.run, parser.plain(args.size))
        print(f"{name:<14} {'plain':<22} {plain:8.3f} {1.0:8.1f}  {outcome}", flush=True)
        for case in CASES:
            if case.parser == name:
                took, outcome = _best(parser.run, case.make(args.size))
                ratio = took / plain if plain else float("inf")
                print(f"{'':<14} {case.name:<22} {took:8.3f} {ratio:8.1f}  {outcome}", flush=True)


if __name__ == "__main__":
    main()
