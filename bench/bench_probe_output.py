"""Probe output size: the REAL probe script on kube-proxy-sized tables and on big triages.

Deep mode: for each size, a fresh lab namespace (tests/lab/netns.py) gets a filter+nat table of
about that many kube-proxy-like rules (bench/gen_kubeproxy.py, loaded with
iptables-nft-restore: the nft backend, as on current AKS node images), and the probe script
runs there the way run command runs it (`export` lines, then `/bin/bash -c`). Printed per
size: rules, the raw `iptables-nft-save` bytes, the dump after the on-node reduction, the
`ruleset` record (gzip + base64), the whole output against run command's 4,096-byte limit,
rules kept/dropped by the reduction, and the script's wall time.

Triage mode: one lab host owns a whole /22 (a `local` route), so 10, 100 or 1,000 targets are
real addresses behind one ARP entry. Each size runs twice: every target reachable (a healthy
cluster: the summary alone) and every target unreachable (an iptables DROP on that host: every
connect times out, the worst case for both time and size).

Needs root and network namespaces; says so and returns otherwise. Prints figures only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from ipaddress import IPv4Network

from bench.gen_kubeproxy import generate as kubeproxy
from shared.probe import script_text
from shared.probe.output import parse_probe_output
from shared.probe.params import rendered_preamble, validate_probe_parameters
from tests.lab.netns import Host, Lab, netns_unavailable_reason

__all__ = ["output_sizes"]

LIMIT = 4096  # run command returns the last 4,096 bytes of stdout
NODE, FAR_HOST = "10.250.0.10", "10.250.0.20"
FAR = IPv4Network("10.251.0.0/22")  # the triage targets, all owned by FAR_HOST
TRIAGE_SIZES = (10, 100, 1000)


@dataclass(frozen=True, slots=True)
class _Run:
    stdout: str
    seconds: float


def _probe(node: Host, targets: list[str], api: str, mode: str) -> _Run:
    params = validate_probe_parameters(targets, api, 443, mode)
    code = rendered_preamble(params) + script_text()
    started = time.monotonic()
    proc = node.exec(["/bin/bash", "-c", code], timeout=120, check=False)
    return _Run(proc.stdout, time.monotonic() - started)


def _record_bytes(stdout: str, prefix: str) -> int:
    return sum(len(x.encode()) + 1 for x in stdout.splitlines() if x.startswith(prefix))


def _deep_row(rules: int) -> str:
    dump = kubeproxy(rules)
    with Lab() as lab:
        node = lab.add_host([NODE])
        node.exec(["iptables-nft-restore"], input=dump, timeout=300)
        raw = node.exec(["iptables-nft-save"], timeout=120).stdout
        run = _probe(node, [], "", "deep")
    report = parse_probe_output(run.stdout, f"deep {rules}")
    total = len(run.stdout.encode())
    nft = next((r for r in report.rulesets if r.backend == "nft"), None)
    too_large = next((e for e in report.errors if e.subject == "ruleset nft"), None)
    if nft is not None:
        reduced = f"{len(nft.text.encode()):>9,}"
        record = f"{_record_bytes(run.stdout, 'ruleset' + chr(9) + 'nft'):>8,}"
        kept = f"{nft.kept if nft.kept is not None else '-'}/{nft.dropped or 0:,}"
    else:
        reduced = "        -"
        size = too_large.too_large if too_large and too_large.too_large else 0
        record = f"{size:>7,}!"  # left out by the size guard: the compressed size it had
        kept = "toolarge" if too_large else "missing"
    fits = "yes" if report.complete and total <= LIMIT else "NO"
    lines = sum(1 for x in raw.splitlines() if x.startswith("-A "))
    return (
        f"{lines:>7,} {len(raw.encode()):>11,} {reduced} {record} {total:>7,} {fits:>5} "
        f"{kept:>14} {run.seconds:>6.1f}"
    )


def _triage_rows() -> list[str]:
    rows = []
    first = FAR.network_address + 1
    with Lab() as lab:
        node = lab.add_host([NODE])
        far = lab.add_host([FAR_HOST])
        node.exec(["ip", "route", "add", str(FAR), "via", FAR_HOST])
        far.exec(["ip", "route", "add", "local", str(FAR), "dev", "lo"])
        far.listen([10250, 443])
        for reachable in (True, False):
            if not reachable:
                far.exec(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP"])
            for n in TRIAGE_SIZES:
                targets = [str(first + i) for i in range(n)]
                run = _probe(node, targets, FAR_HOST, "triage")
                report = parse_probe_output(run.stdout, f"triage {n}")
                reach = report.reach
                named = f"{reach.named}/{reach.failed}" if reach else "-"
                state = ("cut" if reach.cut else "all") if reach else "-"
                nc = _record_bytes(run.stdout, "nc")  # nc and ncgz records
                total = len(run.stdout.encode())
                fits = "yes" if report.complete and total <= LIMIT else "NO"
                rows.append(
                    f"{n:>7,} {'reachable' if reachable else 'unreachable':>12} {nc:>9,} "
                    f"{total:>7,} {fits:>5} {named:>13} {state:>5} {run.seconds:>6.1f}"
                )
    return rows


def output_sizes(rules: list[int]) -> None:
    """Print the probe script's output sizes (deep per table size, triage per target count)."""
    print("\nProbe output size: the real script in a lab namespace (run command keeps 4,096 B)")
    why = netns_unavailable_reason()
    if why:
        print(f"  skipped: network namespaces are not available here ({why}); run as root")
        return
    print("Deep probe, kube-proxy-like filter+nat rules loaded with iptables-nft-restore")
    print(f"{'rules':>7} {'raw save B':>11} {'reduced B':>9} {'record B':>8} {'output':>7} "
          f"{'fits':>5} {'kept/dropped':>14} {'secs':>6}")  # fmt: skip
    for n in rules:
        print(_deep_row(n), flush=True)
    print("  reduced: the dump after the on-node reduction; record: the `ruleset` line (gzip +")
    print("  base64); `!`: left out by the size guard (a `toolarge` record, an inconclusive")
    print("  finding), with its compressed size; output: the whole probe output.")
    print("\nTriage probe, targets behind one lab host (unreachable: an iptables DROP there)")
    print(f"{'targets':>7} {'targets are':>12} {'nc/ncgz B':>9} {'output':>7} {'fits':>5} "
          f"{'named/failed':>13} {'state':>5} {'secs':>6}")  # fmt: skip
    for row in _triage_rows():
        print(row, flush=True)
    print("  reachable targets print nothing each: one `reach` record counts them. Unreachable")
    print("  ones are named (netcat lines, gzip+base64 when many) as far as they fit; the rest")
    print("  are counted (`cut`) and reported as one inconclusive finding, never as open.")
