"""Benchmark of the iptables engine on a kube-proxy-sized dump (figures only, no thresholds).

Prints: rules/s of parse and of evaluate in-process, then the wall time of the whole
`tunnelwatch analyze iptables DUMP --json` process beside `iptables-restore --test < DUMP` in a
fresh network namespace (root only; skipped with a note otherwise).

    python -m bench.bench_iptables [--rules 50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gen_kubeproxy import generate
from shared.analysis.iptables import Packet, evaluate_input, parse_ruleset

ROOT = Path(__file__).resolve().parent.parent
SRC, DST = "10.224.0.5", "10.224.0.4"


def _wall(argv: list[str], stdin_path: str | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    if stdin_path is None:
        proc = subprocess.run(argv, capture_output=True, timeout=120)
    else:
        with open(stdin_path, "rb") as f:
            proc = subprocess.run(argv, stdin=f, capture_output=True, timeout=120)
    return time.perf_counter() - started, proc.returncode


def _median(argv: list[str], runs: int, stdin_path: str | None = None) -> tuple[float, int]:
    results = [_wall(argv, stdin_path) for _ in range(runs)]
    return statistics.median(t for t, _ in results), results[-1][1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv if argv is not None else [])

    text = generate(args.rules)
    rules = text.count("\n-A ")
    print(f"dump: {rules} rules, {len(text) / 1e6:.1f} MB (bench/gen_kubeproxy.py)")

    t0 = time.perf_counter()
    rs = parse_ruleset(text, "kubeproxy.save")
    t1 = time.perf_counter()
    pkt = Packet(src=ipaddress.IPv4Address(SRC), dst=ipaddress.IPv4Address(DST), in_iface="eth0")
    v = evaluate_input([rs], pkt)
    t2 = time.perf_counter()
    print(f"parse:    {t1 - t0:.3f} s  ({rules / (t1 - t0):,.0f} rules/s, structure only)")
    print(f"evaluate: {t2 - t1:.3f} s  (verdict {v.verdict.value}; chains compiled on first use)")
    print(f"parse+evaluate: {rules / (t2 - t0):,.0f} rules/s")

    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "kubeproxy.save")
        Path(dump).write_text(text)
        cli = str(ROOT / ".venv" / "bin" / "tunnelwatch")
        if not os.path.exists(cli):
            cli = shutil.which("tunnelwatch") or ""
        if cli:
            argv_cli = [cli, "analyze", "iptables", dump, "--src", SRC, "--dst", DST, "--json"]
            wall, rc = _median(argv_cli, args.runs)
            print(
                f"tunnelwatch analyze iptables (whole process): {wall:.3f} s median of "
                f"{args.runs} (exit {rc})"
            )
        else:
            print("tunnelwatch is not installed: CLI column skipped")
        restore = shutil.which("iptables-restore")
        if os.geteuid() != 0 or restore is None or shutil.which("ip") is None:
            print("iptables-restore --test: skipped (needs root, iptables-restore and ip)")
            return 0
        ns = f"twbench{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
        try:
            wall, rc = _median(["ip", "netns", "exec", ns, restore, "--test"], args.runs, dump)
            print(
                f"iptables-restore --test in a fresh netns: {wall:.3f} s median of "
                f"{args.runs} (exit {rc})"
            )
        finally:
            subprocess.run(["ip", "netns", "del", ns], timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
