"""Seeded random iptables rulesets (iptables-restore text) for the kernel differential test.

`generate(rng, universe)` writes one ruleset for one node: the filter table always, and
sometimes raw and mangle. Everything the kernel is later asked about comes from the
`Universe` (the node's addresses, the peer's source addresses, the ports the node listens
on), so generated CIDRs and ports sometimes contain the probed flows and sometimes just
miss them.

What the rulesets hold: INPUT policy ACCEPT or DROP; 1-4 custom chains reached by jumps and
gotos; ACCEPT/DROP/REJECT (several --reject-with kinds)/RETURN/LOG; `!` negations; -s/-d
CIDRs; -i eth0, eth+, lo, ! -i; single ports, ranges and multiport lists; comments with
spaces; conntrack and state matches; addrtype; MARK in raw/mangle PREROUTING with
`-m mark` matches in filter; raw/mangle DROP rules; FORWARD and OUTPUT rules; and in some
rulesets the standard AKS/kube-proxy chains.

Rules that keep the lab honest:
- Custom chains are numbered and a chain only jumps to higher-numbered ones: the jump graph
  is acyclic (the kernel refuses loops) and every loop here is bounded.
- OUTPUT never drops what the node sends back (SYN-ACK, RST, ICMP errors): its rules only
  match UDP, TCP to service ports (never the probe source ports), ctstate NEW (replies
  are not NEW) or addresses no probe uses; its policy stays ACCEPT.
- Addresses are inside the lab subnet, except the literal AKS wireserver rule
  (168.63.129.16), 127.0.0.0/8 of KUBE-FIREWALL and wide CIDRs used as matches only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, ip_network

__all__ = [
    "LISTEN_PORTS",
    "PROBE_PORT",
    "SPORT_RANGE",
    "Generated",
    "Universe",
    "generate",
]

PROBE_PORT = 10250
# Every node listens on all of these; probes go to 10250 plus one or two of the others.
LISTEN_PORTS = (10250, 22, 443, 8080, 10255, 30080, 32000)
# Probes bind their source port here: below the kernel's ephemeral range (32768-60999), so
# `--sport` rules are decidable, and far from every port OUTPUT rules mention.
SPORT_RANGE = (20000, 31999)

_MARKS = ("0x4000/0x4000", "0x8000/0x8000", "0x1/0x1", "0x10/0xf0", "0x2")
_CTSTATES = (
    "NEW",
    "ESTABLISHED",
    "RELATED,ESTABLISHED",
    "INVALID",
    "NEW,ESTABLISHED",
    "UNTRACKED",
    "NEW,RELATED",
)
_REJECT_WITH = (
    "tcp-reset",
    "icmp-port-unreachable",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-net-prohibited",
)
_COMMENTS = (
    "with spaces",
    "allow kubelet",
    "site policy: block 10250",
    "kube-system/konnectivity-agent",
    "ops ticket 4711 (temporary)",
    "no-spaces-here",
)
_CHAIN_NAMES = ("SITE-INPUT", "tw_guard", "NODE-HARDENING", "audit-10250", "LOCAL-POLICY")
_IFACES = (
    ("-i", "eth0"),
    ("-i", "eth+"),
    ("-i", "lo"),
    ("! -i", "eth0"),
    ("! -i", "lo"),
    ("-i", "e+"),
    ("-i", "eth1"),
)


@dataclass(frozen=True)
class Universe:
    """What the probes of one node can be: the lab subnet, node and peer addresses, ports."""

    subnet: IPv4Network
    node_addrs: tuple[IPv4Address, ...]
    peer_addrs: tuple[IPv4Address, ...]
    ports: tuple[int, ...] = LISTEN_PORTS

    @cached_property
    def others(self) -> tuple[IPv4Address, ...]:
        """Lab addresses that no probe uses (rules naming them must match nothing probed)."""
        used = set(self.node_addrs) | set(self.peer_addrs)
        return tuple(a for a in list(self.subnet.hosts())[:250] if a not in used)


@dataclass(frozen=True)
class Generated:
    text: str  # iptables-restore input
    probe_ports: tuple[int, ...]  # 10250 first
    tables: tuple[str, ...]
    features: frozenset[str]  # which constructs appear, for coverage checks


@dataclass
class _Table:
    name: str
    builtins: dict[str, str]  # chain -> policy
    custom: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"*{self.name}"]
        lines += [f":{c} {p} [0:0]" for c, p in self.builtins.items()]
        lines += [f":{c} - [0:0]" for c in self.custom]
        lines += self.rules
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


class _Gen:
    def __init__(self, rng: random.Random, uni: Universe) -> None:
        self.rng = rng
        self.uni = uni
        self.features: set[str] = set()
        self.marks_set: list[str] = []

    # ---- small pieces -------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def neg(self, p: float = 0.2) -> str:
        if self.chance(p):
            self.features.add("negation")
            return "! "
        return ""

    def cidr(self, targets: Sequence[IPv4Address]) -> str:
        """A CIDR that sometimes contains some of `targets` and sometimes none."""
        r = self.rng
        roll = r.random()
        if roll < 0.30:
            addr = r.choice(targets)
            return f"{addr}/32" if self.chance(0.8) else str(addr)  # restore adds the /32
        if roll < 0.45:
            return f"{r.choice(self.uni.others)}/32"
        if roll < 0.85:
            base = r.choice(targets) if self.chance(0.6) else r.choice(self.uni.others)
            prefix = r.choice((8, 16, 20, 24, 25, 26, 27, 28, 29, 30, 31))
            net = ip_network(f"{base}/{prefix}", strict=False)
            if self.chance(0.1):
                self.features.add("host-bits")  # the kernel masks them; save shows the network
                return f"{base}/{prefix}"
            return str(net)
        if roll < 0.95:
            return str(self.uni.subnet)
        return "0.0.0.0/1" if self.chance(0.5) else "0.0.0.0/0"

    def port(self) -> int:
        r = self.rng
        if self.chance(0.5):
            return r.choice(self.uni.ports)
        return r.choice(self.uni.ports) + r.choice((-1, 1))

    def port_range(self) -> str:
        r = self.rng
        p = r.choice(self.uni.ports)
        lo = max(1, p - r.choice((0, 1, 5, 100, 1000)))
        hi = min(65535, p + r.choice((0, 1, 5, 100, 1000)))
        if self.chance(0.3):  # a range that ends just below / starts just above the port
            return f"{min(lo, p - 1)}:{p - 1}" if self.chance(0.5) else f"{p + 1}:{max(hi, p + 1)}"
        return f"{lo}:{hi}"

    def sport_spec(self) -> str:
        r = self.rng
        lo, hi = SPORT_RANGE
        return r.choice(
            (
                "1024:65535",
                "0:1023",
                f"{lo}:{hi}",
                f"{r.randint(lo, hi)}:{hi}",
                f"{lo}:{r.randint(lo, hi)}",
                "32768:60999",
            )
        )

    def multiport(self) -> str:
        r = self.rng
        items: list[str] = []
        for _ in range(r.randint(1, 5)):
            item = self.port_range() if self.chance(0.3) else str(self.port())
            lo, _, hi = item.partition(":")
            items.append(lo if lo == hi else item)  # multiport refuses "21:21"; tcp does not
        opt = r.choice(("--dports", "--dports", "--ports", "--sports"))
        if opt == "--sports":
            items = [self.sport_spec() if self.chance(0.5) else str(self.port())]
        self.features.add("multiport")
        return f"-m multiport {self.neg(0.15)}{opt} {','.join(items)}"

    def comment(self) -> str:
        text = self.rng.choice(_COMMENTS)
        self.features.add("comment")
        return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"

    # ---- one rule's matches -------------------------------------------------------------

    def matches(self, *, table: str = "filter", chain: str = "INPUT") -> tuple[list[str], str]:
        """Match options for an inbound rule, and the protocol ("" when none)."""
        r = self.rng
        parts: list[str] = []
        if self.chance(0.35):
            c = self.cidr(self.uni.peer_addrs)  # iptables-nft refuses to negate a /0
            parts.append(f"{'' if c.endswith('/0') else self.neg(0.15)}-s {c}")
            self.features.add("src")
        if self.chance(0.2):
            c = self.cidr(self.uni.node_addrs)
            parts.append(f"{'' if c.endswith('/0') else self.neg(0.15)}-d {c}")
            self.features.add("dst")
        if chain in ("INPUT", "PREROUTING", "custom") and self.chance(0.2):
            opt, name = r.choice(_IFACES)
            parts.append(f"{opt} {name}")
            self.features.add(f"iface:{opt} {name}")
        proto = r.choices(("tcp", "", "udp", "icmp", "!udp"), weights=(75, 15, 5, 3, 2))[0]
        if proto == "!udp":
            parts.append("! -p udp")
            proto = ""
            self.features.add("negated-proto")
        elif proto:
            parts.append(f"-p {proto}")
        if proto in ("tcp", "udp"):
            roll = r.random()
            explicit = f"-m {proto} " if self.chance(0.5) else ""
            if roll < 0.45:
                parts.append(f"{explicit}{self.neg(0.15)}--dport {self.port()}")
            elif roll < 0.65:
                parts.append(f"{explicit}{self.neg(0.15)}--dport {self.port_range()}")
                self.features.add("port-range")
            elif roll < 0.8:
                parts.append(self.multiport())
            elif roll < 0.88:
                parts.append(f"{explicit}{self.neg(0.15)}--sport {self.sport_spec()}")
                self.features.add("sport")
        if proto == "tcp" and self.chance(0.03):
            parts.append("-m tcp --tcp-flags FIN,SYN,RST,ACK SYN" if self.chance(0.5) else "--syn")
            self.features.add("tcp-flags")
        if self.chance(0.15):
            parts.append(self.comment())
        if self.chance(0.15):
            states = r.choice(_CTSTATES)
            if self.chance(0.75):
                parts.append(f"-m conntrack {self.neg(0.25)}--ctstate {states}")
                self.features.add("conntrack")
            else:
                parts.append(f"-m state {self.neg(0.25)}--state {states}")
                self.features.add("state")
            if table == "raw":
                self.features.add("ctstate-in-raw")
        if self.chance(0.08):
            kind = r.choices(
                ("--dst-type LOCAL", "--src-type LOCAL", "--dst-type UNICAST"), weights=(8, 1, 1)
            )[0]
            parts.append(f"-m addrtype {self.neg(0.2)}{kind}")
            self.features.add("addrtype")
        if self.marks_set and table == "filter" and self.chance(0.35):
            mark = r.choice(self.marks_set) if self.chance(0.8) else r.choice(_MARKS)
            if self.chance(0.15) and "/" not in mark:
                mark = str(int(mark, 16))  # decimal is accepted too
            parts.append(f"-m mark {self.neg(0.15)}--mark {mark}")
            self.features.add("mark-match")
        return parts, proto

    def verdict_target(self, proto: str, *, allow_return: bool) -> str:
        r = self.rng
        names = ["ACCEPT", "DROP", "REJECT", "LOG"] + (["RETURN"] if allow_return else [])
        weights = [30, 25, 20, 8] + ([8] if allow_return else [])
        target = r.choices(names, weights=weights)[0]
        if target == "REJECT":
            kinds = [k for k in _REJECT_WITH if proto == "tcp" or k != "tcp-reset"]
            if self.chance(0.2):
                self.features.add("reject-default")
                return "-j REJECT"
            kind = r.choice(kinds)
            self.features.add(f"reject:{kind}")
            return f"-j REJECT --reject-with {kind}"
        if target == "LOG":
            self.features.add("log")
            prefix = r.choice(('"TW drop: "', "tw-in:", '"[10250 probe] "'))
            level = " --log-level 4" if self.chance(0.3) else ""
            return f"-j LOG --log-prefix {prefix}{level}"
        self.features.add(target.lower())
        return f"-j {target}"

    # ---- tables --------------------------------------------------------------------------

    def mark_table(self, name: str) -> _Table:
        """raw or mangle: MARK rules in PREROUTING (and mangle INPUT), sometimes a DROP."""
        r = self.rng
        if name == "raw":
            table = _Table(name, {"PREROUTING": "ACCEPT", "OUTPUT": "ACCEPT"})
        else:
            table = _Table(
                name,
                {c: "ACCEPT" for c in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")},
            )
        for _ in range(r.randint(1, 4)):
            chain = "PREROUTING" if name == "raw" or self.chance(0.7) else "INPUT"
            parts, _proto = self.matches(table=name, chain=chain)
            if self.chance(0.75):
                mark = r.choice(_MARKS)
                value, _, mask = mark.partition("/")
                style = r.random()
                if not mask:
                    target = f"-j MARK --set-mark {value}"
                    self.features.add("set-mark")
                elif style < 0.6:
                    target = f"-j MARK --set-xmark {value}/{mask}"
                    self.features.add("set-xmark")
                else:
                    target = (
                        f"-j MARK --or-mark {value}"
                        if value == mask
                        else (f"-j MARK --set-xmark {value}/{mask}")
                    )
                    self.features.add("set-xmark")
                self.marks_set.append(mark)
            else:
                target = "-j DROP"
                self.features.add(f"{name}-drop")
            table.rules.append(" ".join([f"-A {chain}", *parts, target]))
        return table

    def filter_table(self, aks: bool) -> tuple[_Table, list[str]]:
        r = self.rng
        policy = "DROP" if self.chance(0.4) else "ACCEPT"
        self.features.add(f"policy-{policy.lower()}")
        table = _Table(
            "filter",
            {
                "INPUT": policy,
                "FORWARD": "DROP" if self.chance(0.5) else "ACCEPT",
                "OUTPUT": "ACCEPT",
            },
        )
        names = r.sample(_CHAIN_NAMES, r.randint(1, 4))
        table.custom = list(names)
        chains: dict[str, list[str]] = {"INPUT": []}
        chains.update({n: [] for n in names})
        # INPUT may target any custom chain; chain i only chains numbered above i.
        for chain, callees in [("INPUT", names)] + [
            (n, names[i + 1 :]) for i, n in enumerate(names)
        ]:
            count = r.randint(0, 8 if chain == "INPUT" else 5)
            for _ in range(count):
                parts, proto = self.matches(chain="INPUT" if chain == "INPUT" else "custom")
                if callees and self.chance(0.3):
                    callee = r.choice(callees)
                    flag = "-g" if self.chance(0.2) else "-j"
                    self.features.add("goto" if flag == "-g" else "jump")
                    target = f"{flag} {callee}"
                else:
                    target = self.verdict_target(proto, allow_return=True)
                chains[chain].append(" ".join([f"-A {chain}", *parts, target]))
            if chain == "INPUT" and not any(
                ("-j " + n) in x or ("-g " + n) in x for x in chains["INPUT"] for n in names
            ):
                # Make sure at least the first custom chain is on the INPUT path.
                parts, _proto = self.matches()
                chains["INPUT"].insert(
                    r.randint(0, len(chains["INPUT"])),
                    " ".join(["-A INPUT", *parts, f"-j {names[0]}"]),
                )
                self.features.add("jump")
        if aks:
            self.features.add("aks")
            aks_chains, aks_rules = _aks_rules(self.uni)
            table.custom += aks_chains
            # kube-proxy puts its jumps first in INPUT.
            chains["INPUT"] = aks_rules.pop("INPUT") + chains["INPUT"]
            extra = aks_rules
        else:
            extra = {}
        for lines in chains.values():
            table.rules += lines
        table.rules += self.forward_rules() + extra.get("FORWARD", [])
        table.rules += self.output_rules() + extra.get("OUTPUT", [])
        for chain, lines in extra.items():
            if chain not in ("FORWARD", "OUTPUT"):
                table.rules += lines
        return table, list(names)

    def forward_rules(self) -> list[str]:
        """FORWARD never sees traffic to the node: anything goes, including DROP and REJECT."""
        out = []
        for _ in range(self.rng.randint(0, 3)):
            parts, proto = self.matches(chain="FORWARD")
            out.append(
                " ".join(["-A FORWARD", *parts, self.verdict_target(proto, allow_return=False)])
            )
            self.features.add("forward-rule")
        return out

    def output_rules(self) -> list[str]:
        """Only rules that cannot touch the node's replies (see the module docstring)."""
        r = self.rng
        other = r.choice(self.uni.others)
        options = [
            "-A OUTPUT -p udp -m udp --dport 1194 -j DROP",
            f"-A OUTPUT -p tcp -m tcp --dport {r.choice((443, 9000))} -j REJECT "
            "--reject-with icmp-port-unreachable",
            f"-A OUTPUT -d {other}/32 -j DROP",
            "-A OUTPUT -m conntrack --ctstate NEW -p tcp -m tcp --dport 10250 -j DROP",
            '-A OUTPUT -p tcp -m multiport --dports 9000,443 -m comment --comment "egress block" '
            "-j DROP",
            "-A OUTPUT -j LOG --log-prefix out:",
        ]
        picked = r.sample(options, r.randint(0, 3))
        if picked:
            self.features.add("output-rule")
        return picked


def _aks_rules(uni: Universe) -> tuple[list[str], dict[str, list[str]]]:
    """The chains kube-proxy (iptables mode) and AKS leave on a node, as iptables-save shows."""
    svc_ip = uni.others[-1]
    chains = [
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
    ]
    new = "-m conntrack --ctstate NEW"
    rules = {
        "INPUT": [
            f'-A INPUT {new} -m comment --comment "kubernetes load balancer firewall" '
            "-j KUBE-PROXY-FIREWALL",
            '-A INPUT -m comment --comment "kubernetes health check service ports" '
            "-j KUBE-NODEPORTS",
            f'-A INPUT {new} -m comment --comment "kubernetes externally-visible service portals" '
            "-j KUBE-EXTERNAL-SERVICES",
            "-A INPUT -j KUBE-FIREWALL",
        ],
        "FORWARD": [
            f'-A FORWARD {new} -m comment --comment "kubernetes load balancer firewall" '
            "-j KUBE-PROXY-FIREWALL",
            '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
            f'-A FORWARD {new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            "-A FORWARD -d 168.63.129.16/32 -p tcp -m tcp --dport 80 -j DROP",
        ],
        "OUTPUT": [
            f'-A OUTPUT {new} -m comment --comment "kubernetes load balancer firewall" '
            "-j KUBE-PROXY-FIREWALL",
            f'-A OUTPUT {new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            "-A OUTPUT -j KUBE-FIREWALL",
        ],
        "KUBE-EXTERNAL-SERVICES": [
            '-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/web:http has no '
            'endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT '
            "--reject-with icmp-port-unreachable",
        ],
        "KUBE-FIREWALL": [
            '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block '
            'incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT '
            "-j DROP",
            '-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked '
            'packets" -m mark --mark 0x8000/0x8000 -j DROP',
        ],
        "KUBE-FORWARD": [
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
            "-m mark --mark 0x4000/0x4000 -j ACCEPT",
        ],
        "KUBE-NODEPORTS": [
            '-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web health check node port" '
            "-m tcp --dport 32000 -j ACCEPT",
        ],
        "KUBE-SERVICES": [
            f"-A KUBE-SERVICES -d {svc_ip}/32 -p tcp -m comment --comment "
            '"default/web:http has no endpoints" -m tcp --dport 80 -j REJECT '
            "--reject-with icmp-port-unreachable",
        ],
    }
    return chains, rules


def generate(rng: random.Random, uni: Universe, *, filter_only: bool = False) -> Generated:
    """One ruleset in iptables-restore format; deterministic for a given rng state."""
    gen = _Gen(rng, uni)
    tables: list[_Table] = []
    if not filter_only:
        for name in ("raw", "mangle"):
            if gen.chance(0.25):
                tables.append(gen.mark_table(name))
                gen.features.add(name)
        if gen.marks_set and gen.chance(0.5):
            gen.marks_set.append("0x8000/0x8000")  # KUBE-FIREWALL's mark
    filt, _names = gen.filter_table(aks=gen.chance(0.3))
    tables.append(filt)
    others = [p for p in uni.ports if p != PROBE_PORT]
    probe_ports = (PROBE_PORT, *rng.sample(others, rng.randint(1, 2)))
    text = f"# tunnelwatch rulegen\n{''.join(t.render() for t in tables)}"
    return Generated(
        text=text,
        probe_ports=probe_ports,
        tables=tuple(t.name for t in tables),
        features=frozenset(gen.features),
    )
