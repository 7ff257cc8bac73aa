"""Generates a kube-proxy-sized iptables-save dump (iptables mode) for the iptables benchmark.

Filter and nat tables as kube-proxy writes them: one KUBE-SERVICES rule per service port,
KUBE-SVC-* chains spreading over endpoints with `-m statistic --mode random --probability`,
KUBE-SEP-* chains with KUBE-MARK-MASQ and DNAT to pod IPs, NodePorts, no-endpoint REJECTs,
comments with quotes. Deterministic for a seed.

    python -m bench.gen_kubeproxy --rules 50000 > /tmp/kubeproxy.save
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys

__all__ = [
    "FILTER_CHAINS",
    "INPUT_RULES",
    "KUBE_FIREWALL_RULES",
    "MASQ_RULES",
    "NAT_ENTRY_RULES",
    "NODEPORTS_LAST",
    "chain_name",
    "cluster_ip",
    "endpoint",
    "generate",
    "no_endpoints",
    "node_port",
]

# The pieces below are kube-proxy's (pkg/proxy/iptables/proxier.go) as it writes them; the
# node lab's healthy AKS node (tests/lab/aks_rules.py) is built from them too.

FILTER_CHAINS = (
    ":INPUT ACCEPT [0:0]",
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":KUBE-EXTERNAL-SERVICES - [0:0]",
    ":KUBE-FIREWALL - [0:0]",
    ":KUBE-FORWARD - [0:0]",
    ":KUBE-KUBELET-CANARY - [0:0]",
    ":KUBE-NODEPORTS - [0:0]",
    ":KUBE-PROXY-CANARY - [0:0]",
    ":KUBE-PROXY-FIREWALL - [0:0]",
    ":KUBE-SERVICES - [0:0]",
)
INPUT_RULES = (
    '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
    'firewall" -j KUBE-PROXY-FIREWALL',
    '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
    '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible '
    'service portals" -j KUBE-EXTERNAL-SERVICES',
    "-A INPUT -j KUBE-FIREWALL",
)
# KUBE-FIREWALL's martian drop (CVE-2020-8558) and KUBE-FORWARD's first rules.
KUBE_FIREWALL_RULES = (
    '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming '
    'localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark '
    "0x4000/0x4000 -j ACCEPT",
)
# nat: the built-in chains' jumps into kube-proxy's.
NAT_ENTRY_RULES = (
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
)
# nat: marking for SNAT, and the SNAT itself.
MASQ_RULES = (
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
    "-j MASQUERADE --random-fully",
)
NODEPORTS_LAST = (
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
    'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
)


def chain_name(prefix: str, key: str) -> str:
    """kube-proxy's chain name: a prefix and a hash of what the chain serves."""
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:16].upper()


def no_endpoints(name: str, ip: str, port: int, proto: str = "tcp") -> str:
    """The filter rule rejecting a service port without endpoints (KUBE-SERVICES)."""
    return (
        f'-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment "{name} has no '
        f'endpoints" -m {proto} --dport {port} -j REJECT --reject-with icmp-port-unreachable'
    )


def cluster_ip(
    name: str, ip: str, port: int, proto: str = "tcp", pod_cidr: str = "10.244.0.0/16"
) -> tuple[str, str, str]:
    """(KUBE-SVC chain, its KUBE-SERVICES jump, its KUBE-MARK-MASQ rule for non-pod sources)."""
    svc = chain_name("KUBE-SVC-", name)
    jump = (
        f'-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment "{name} cluster IP" '
        f"-m {proto} --dport {port} -j {svc}"
    )
    masq = (
        f'-A {svc} ! -s {pod_cidr} -d {ip}/32 -p {proto} -m comment --comment "{name} '
        f'cluster IP" -m {proto} --dport {port} -j KUBE-MARK-MASQ'
    )
    return svc, jump, masq


def endpoint(
    svc: str, sep: str, name: str, pod: str, port: int, left: int, proto: str = "tcp"
) -> list[str]:
    """The KUBE-SVC jump to one endpoint's KUBE-SEP chain (`left` endpoints from here on,
    so each is picked with probability 1/left) and that chain's MASQ mark and DNAT."""
    prob = f" -m statistic --mode random --probability {1 / left:.11f}" if left > 1 else ""
    return [
        f'-A {svc} -m comment --comment "{name} -> {pod}:{port}"{prob} -j {sep}',
        f'-A {sep} -s {pod}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ',
        f'-A {sep} -p {proto} -m comment --comment "{name}" -m {proto} -j DNAT '
        f"--to-destination {pod}:{port}",
    ]


def node_port(name: str, svc: str, port: int) -> tuple[str, list[str]]:
    """(KUBE-EXT chain, the nat rules sending TCP NodePort `port` through it to `svc`)."""
    ext = chain_name("KUBE-EXT-", name)
    return ext, [
        f'-A KUBE-NODEPORTS -p tcp -m comment --comment "{name}" -m tcp --dport {port} -j {ext}',
        f'-A {ext} -m comment --comment "masquerade traffic for {name} external '
        f'destinations" -j KUBE-MARK-MASQ',
        f"-A {ext} -j {svc}",
    ]


def generate(rules: int = 50_000, seed: int = 1) -> str:
    """An iptables-save dump with about `rules` rules."""
    rnd = random.Random(seed)
    filt_chains = list(FILTER_CHAINS)
    filt = [
        *INPUT_RULES,
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
        "-j KUBE-SERVICES",
        "-A FORWARD -d 168.63.129.16/32 -p tcp -m tcp --dport 80 -j DROP",
        "-A OUTPUT -j KUBE-FIREWALL",
        *KUBE_FIREWALL_RULES,
    ]
    nat_chains = [
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-MARK-MASQ - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-POSTROUTING - [0:0]",
        ":KUBE-SERVICES - [0:0]",
    ]
    nat = [*NAT_ENTRY_RULES, *MASQ_RULES]
    svc_rules: list[str] = []
    port_number = 30000
    i = 0
    while len(filt) + len(nat) + len(svc_rules) < rules - 1:
        i += 1
        name = f"ns{i % 97}/svc-{i}:port-{i % 3}"
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        port = rnd.choice((80, 443, 8080, 9090, 5432, 6379))
        proto = "tcp" if rnd.random() < 0.9 else "udp"
        endpoints = rnd.choice((0, 1, 2, 3, 3, 4))
        if endpoints == 0:
            filt.append(no_endpoints(name, ip, port, proto))
            continue
        svc, jump, masq = cluster_ip(name, ip, port, proto)
        nat_chains.append(f":{svc} - [0:0]")
        svc_rules.append(jump)
        nat.append(masq)
        for e in range(endpoints):
            pod = f"10.244.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
            sep = chain_name("KUBE-SEP-", f"{name}{e}")
            nat_chains.append(f":{sep} - [0:0]")
            nat += endpoint(svc, sep, name, pod, port, endpoints - e, proto)
        if proto == "tcp" and rnd.random() < 0.1 and port_number < 32767:
            port_number += 1
            ext, ext_rules = node_port(name, svc, port_number)
            nat_chains.append(f":{ext} - [0:0]")
            nat += ext_rules
    svc_rules.append(NODEPORTS_LAST)
    head = "# Generated by iptables-save v1.8.7 (legacy) on Tue Mar  5 10:12:01 2024\n"
    return (
        head
        + "*filter\n"
        + "\n".join(filt_chains + filt)
        + "\nCOMMIT\n*nat\n"
        + "\n".join(nat_chains + svc_rules + nat)
        + "\nCOMMIT\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", type=int, default=50_000, help="about how many rules (50000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--output", help="file to write (stdout if omitted)")
    args = p.parse_args(argv)
    text = generate(args.rules, args.seed)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
