"""The node lab's faults: a registry of names -> changes to a node's or API server's plan.

A fault is a function that edits a plan before anything is built (like a prober registry:
one signature, one table of names). Node faults receive the NodePlan of the node they are put
on; API-server faults receive the cluster's ApiPlan (they model a firewall on the path or a
TLS-inspecting proxy, so they act at the API server's end of the path). To add a fault, write
`def _my_fault(plan: NodePlan) -> None` (or ApiPlan) and register it in NODE_FAULTS (or
API_FAULTS) with a one-line description; the lab files then accept its name.

Plans are plain data: iptables commands per backend, ufw commands, the containers crictl
shows, the API server's TLS and drop settings. tests/lab/nodelab.py turns them into namespaces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "API_FAULTS",
    "FAULT_NAMES",
    "NODE_FAULTS",
    "ApiPlan",
    "Container",
    "NodePlan",
    "agent",
    "default_containers",
]

# Times in crictl's inspect format (RFC 3339 with nanoseconds, UTC); a running container's
# finishedAt is the zero Unix time, which crictl prints as 1970-01-01T00:00:00Z.
_ZERO_TIME = "1970-01-01T00:00:00Z"


@dataclass(slots=True)
class Container:
    """One container as the CRI reports it (crictl ps / crictl inspect)."""

    id: str  # 64 hex digits
    name: str
    pod: str
    pod_id: str
    image: str
    attempt: int
    state: str  # CONTAINER_RUNNING | CONTAINER_EXITED | CONTAINER_CREATED | CONTAINER_UNKNOWN
    created_at: str
    started_at: str
    finished_at: str = _ZERO_TIME
    exit_code: int = 0
    reason: str = ""
    message: str = ""


@dataclass(slots=True)
class NodePlan:
    """What one node gets; the lab fills the defaults, faults edit them."""

    name: str  # cluster/pool/instance
    addresses: list[str]
    subnets: list[str]  # the prefixes of every node subnet of the cluster
    backend: str  # legacy | nft: where the standard AKS rules live
    has_ufw: bool
    containers: list[Container]
    # (backend, argv after the iptables command), applied after the standard rules
    iptables: list[tuple[str, list[str]]] = field(default_factory=list)
    ufw: list[list[str]] = field(default_factory=list)  # ufw argv lists, in order
    faults: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ApiPlan:
    """The cluster's API server stand-in."""

    cluster: str
    address: str
    names: list[str]  # FQDN and private FQDN
    node_addresses: list[str]
    alpn: list[str] = field(default_factory=lambda: ["konnectivity", "http/1.1"])
    inspecting_ca: bool = False  # present a certificate from a CA the cluster never issued
    drop_from_nodes: list[int] = field(default_factory=list)  # TCP ports dropped from nodes
    faults: list[str] = field(default_factory=list)


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def agent(node: str, *, attempt: int = 0, state: str = "CONTAINER_RUNNING") -> Container:
    """konnectivity-agent's container on a node, as AKS runs it (kube-system Deployment)."""
    pod = "konnectivity-agent-7d9f8c6b5d-" + _hex(node + "pod")[:5]
    return Container(
        id=_hex(f"{node}/konnectivity-agent/{attempt}"),
        name="konnectivity-agent",
        pod=pod,
        pod_id=_hex(node + pod),
        image="mcr.microsoft.com/oss/kubernetes/apiserver-network-proxy/agent:v0.30.3-hotfix.20240819",
        attempt=attempt,
        state=state,
        created_at=f"2026-11-22T03:{10 + attempt:02d}:01.123456789Z",
        started_at=f"2026-11-22T03:{10 + attempt:02d}:02.234567890Z",
    )


def default_containers(node: str) -> list[Container]:
    """What crictl shows on a healthy node: the agent and two daemonset containers."""
    out = [agent(node)]
    for name, image in (("kube-proxy", "mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.30.5"),
                        ("cloud-node-manager",
                         "mcr.microsoft.com/oss/kubernetes/azure-cloud-node-manager:v1.30.4")):  # fmt: skip
        c = agent(node)
        c.name, c.image = name, image
        c.id = _hex(f"{node}/{name}")
        c.pod = f"{name}-{c.id[:5]}"
        c.pod_id = _hex(node + c.pod)
        c.created_at = c.started_at = "2026-11-22T03:01:00.000000000Z"
        out.append(c)
    return out


def _need_ufw(plan: NodePlan) -> None:
    if not plan.has_ufw:
        raise ValueError(f"{plan.name}: a ufw fault on an image without ufw (Azure Linux)")


def _ufw_deny(plan: NodePlan) -> None:
    """ufw enabled: default deny incoming, only ssh allowed (no rule for 10250)."""
    _need_ufw(plan)
    plan.ufw += [["default", "deny", "incoming"], ["allow", "22/tcp"], ["--force", "enable"]]


def _ufw_allow(plan: NodePlan) -> None:
    """ufw enabled with the article's fix: allow the node subnet to 10250 (healthy)."""
    _need_ufw(plan)
    plan.ufw += [["default", "deny", "incoming"], ["allow", "22/tcp"]]
    plan.ufw += [
        ["allow", "from", s, "to", "any", "port", "10250", "proto", "tcp"] for s in plan.subnets
    ]
    plan.ufw.append(["--force", "enable"])


def _iptables_drop(plan: NodePlan) -> None:
    plan.iptables.append(
        (plan.backend, ["-I", "INPUT", "1", "-p", "tcp", "--dport", "10250", "-j", "DROP"])
    )


def _iptables_reject(plan: NodePlan) -> None:
    plan.iptables.append(
        (plan.backend, ["-I", "INPUT", "1", "-p", "tcp", "--dport", "10250", "-j", "REJECT"])
    )


def _policy_drop(plan: NodePlan) -> None:
    """A hardening script's INPUT policy DROP: loopback, established and ssh only."""
    b = plan.backend
    plan.iptables += [
        (b, ["-I", "INPUT", "1", "-i", "lo", "-j", "ACCEPT"]),
        (b, ["-I", "INPUT", "2", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
             "-j", "ACCEPT"]),
        (b, ["-I", "INPUT", "3", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]),
        (b, ["-P", "INPUT", "DROP"]),
    ]  # fmt: skip


def _reject_all(plan: NodePlan) -> None:
    """A RHEL-style tail: a few ACCEPTs, then REJECT everything with icmp-host-prohibited."""
    b = plan.backend
    plan.iptables += [
        (b, ["-A", "INPUT", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
        (b, ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]),
        (b, ["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]),
        (b, ["-A", "INPUT", "-p", "tcp", "--dport", "443", "-j", "ACCEPT"]),
        (b, ["-A", "INPUT", "-j", "REJECT", "--reject-with", "icmp-host-prohibited"]),
    ]


def _nft_only(plan: NodePlan) -> None:
    """The block lives in the backend the standard rules do NOT use (iptables-nft on a node
    whose kube-proxy rules are legacy): `iptables-legacy -L` shows nothing wrong."""
    other = "nft" if plan.backend == "legacy" else "legacy"
    plan.iptables.append(
        (other, ["-I", "INPUT", "1", "-p", "tcp", "--dport", "10250", "-j", "DROP"])
    )


def _oom_agent(plan: NodePlan) -> None:
    """konnectivity-agent OOM-killed 5 times: crictl ps -a shows the running attempt 5 and
    the exited attempt 4 (137, OOMKilled); the kubelet keeps only the last dead container."""
    running = agent(plan.name, attempt=5)
    dead = agent(plan.name, attempt=4, state="CONTAINER_EXITED")
    dead.finished_at = "2026-11-22T03:14:59.876543210Z"
    dead.exit_code, dead.reason = 137, "OOMKilled"
    others = [c for c in plan.containers if c.name != "konnectivity-agent"]
    plan.containers = [running, dead, *others]


def _egress_443(plan: ApiPlan) -> None:
    """A firewall on the path drops the nodes' traffic to the API server (443 and 9000)."""
    plan.drop_from_nodes += [443, 9000]


def _tls_inspect(plan: ApiPlan) -> None:
    """A TLS-inspecting proxy: a certificate from another CA, and no ALPN negotiated."""
    plan.inspecting_ca = True
    plan.alpn = []


def _healthy(plan: NodePlan) -> None:
    """Nothing changed (named so that a lab file can say it explicitly)."""


NODE_FAULTS: dict[str, Callable[[NodePlan], None]] = {
    "healthy": _healthy,
    "ufw-deny": _ufw_deny,
    "ufw-allow": _ufw_allow,
    "iptables-drop": _iptables_drop,
    "iptables-reject": _iptables_reject,
    "policy-drop": _policy_drop,
    "reject-all": _reject_all,
    "nft-only": _nft_only,
    "oom-agent": _oom_agent,
}
API_FAULTS: dict[str, Callable[[ApiPlan], None]] = {
    "egress-443": _egress_443,
    "tls-inspect": _tls_inspect,
}
FAULT_NAMES = frozenset(NODE_FAULTS) | frozenset(API_FAULTS)
