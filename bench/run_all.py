"""`make bench`: run every benchmark module under bench/ in turn; each prints its own figures."""

from __future__ import annotations

import importlib
import sys
import time

MODULES = (
    "bench.bench_iptables",
    "bench.bench_nsg",
    "bench.bench_scan",
    "bench.bench_probes",
    "bench.bench_parser_bounds",
)


def main() -> int:
    for name in MODULES:
        print(f"\n##### {name}", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(name)
        module.main()
        print(f"##### {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
