"""NSG evaluator throughput: parse a 1,000-rule subnet + NIC NSG pair, evaluate 10,000 flows.

Prints figures only (rules parsed/s, flows evaluated/s, verdict mix); asserts no timing.
Run: `python -m bench.bench_nsg [--rules N] [--flows N] [--seed N]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import time
from typing import Any

from shared.analysis.nsg import (
    Flow,
    NsgFlowVerdict,
    TagContext,
    evaluate_flow,
    parse_nsg,
    propose_fix,
)

_TAGS = ["VirtualNetwork", "Internet", "AzureLoadBalancer", "Storage.EastUS"]
_PROTOS = ["Tcp", "Udp", "*", "Tcp", "Tcp"]


def _prefix(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return "*"
    if roll < 0.10:
        return rng.choice(_TAGS)
    if roll < 0.15:
        return f"fd00:{rng.randrange(65536):x}::/48"
    length = rng.choice([8, 12, 16, 20, 24, 28, 32])
    addr = ipaddress.IPv4Address(
        rng.choice([10 << 24, 172 << 24 | 16 << 16, 0]) + rng.randrange(1 << 24)
    )
    return str(ipaddress.ip_network(f"{addr}/{length}", strict=False))


def _ports(rng: random.Random) -> list[str]:
    out = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        low = rng.randrange(1, 65000)
        out.append(str(low) if rng.random() < 0.6 else f"{low}-{low + rng.randrange(1, 500)}")
    return out


def _rules(rng: random.Random, count: int) -> list[dict[str, Any]]:
    rules = []
    per_direction = count // 2
    for direction in ("Inbound", "Outbound"):
        for priority in rng.sample(range(100, 4097), per_direction):
            src = [_prefix(rng) for _ in range(rng.choice([1, 1, 2, 4]))]
            rules.append(
                {
                    "name": f"{direction[:2].lower()}-{priority}",
                    "properties": {
                        "priority": priority,
                        "direction": direction,
                        "access": rng.choice(["Allow", "Deny"]),
                        "protocol": rng.choice(_PROTOS),
                        "sourceAddressPrefix": "",
                        "sourceAddressPrefixes": src,
                        "destinationAddressPrefix": _prefix(rng),
                        "destinationPortRange": "",
                        "destinationPortRanges": _ports(rng),
                        "sourcePortRange": "*",
                    },
                }
            )
    return rules


def _flows(rng: random.Random, count: int) -> list[Flow]:
    def addr() -> str:
        base = rng.choice([10 << 24, 172 << 24 | 16 << 16, 52 << 24])
        return str(ipaddress.IPv4Address(base + rng.randrange(1 << 20)))

    return [
        Flow(
            rng.choice(["inbound", "outbound"]),
            addr(),
            addr(),
            rng.choice([10250, 443, 9000, 1194, rng.randrange(1, 65536)]),
            rng.choice(["tcp", "tcp", "udp"]),
        )
        for _ in range(count)
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rules", type=int, default=1000, help="rules per NSG")
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    docs = [
        {"name": name, "id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/"
         f"networkSecurityGroups/{name}", "properties": {"securityRules": _rules(rng, args.rules)}}
        for name in ("bench-subnet", "bench-nic")
    ]  # fmt: skip
    flows = _flows(rng, args.flows)
    ctx = TagContext(vnet_prefixes=(ipaddress.ip_network("10.0.0.0/8"),))

    started = time.perf_counter()
    subnet, nic = (parse_nsg(d, f"{d['name']}.json") for d in docs)
    parse_s = time.perf_counter() - started
    parsed = len(subnet.inbound) + len(subnet.outbound) + len(nic.inbound) + len(nic.outbound)

    started = time.perf_counter()
    verdicts = [evaluate_flow(f, subnet, nic, ctx) for f in flows]
    eval_s = time.perf_counter() - started

    started = time.perf_counter()
    fixes = sum(1 for v in verdicts if propose_fix(v) is not None)
    fix_s = time.perf_counter() - started

    mix = {v: sum(1 for x in verdicts if x.verdict is v) for v in NsgFlowVerdict}
    rate = parsed / parse_s
    print(f"rules parsed (with defaults): {parsed} in {parse_s:.3f} s = {rate:,.0f} rules/s")
    print(f"flows evaluated: {len(flows)} in {eval_s:.3f} s = {len(flows) / eval_s:,.0f} flows/s")
    print(f"fixes proposed: {fixes} in {fix_s:.3f} s")
    print("verdicts: " + ", ".join(f"{k.value}={n}" for k, n in mix.items()))


if __name__ == "__main__":
    main()
