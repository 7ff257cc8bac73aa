"""SNAT port capacity of an AKS outbound load balancer: do max + surge nodes fit, and what would.

Facts (AKS "Use a public Standard Load Balancer", az aks help, the ManagedCluster API, and Azure
Load Balancer "outbound connections"):
- each frontend (outbound) IP gives 64,000 SNAT ports;
- `--load-balancer-outbound-ports` (allocatedOutboundPorts) is 0..64,000 and a multiple of 8;
  0 means automatic: ports per node from the default table by backend pool size, per frontend
  IP, and never more than 1,024 in total;
- `--load-balancer-managed-outbound-ip-count` is 1..100;
- it fits when ports_per_node x (max nodes + surge nodes) <= 64,000 x outbound IPs; otherwise
  scaling or upgrading fails (InvalidLoadBalancerProfileAllocatedOutboundPorts).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InputError

__all__ = [
    "MAX_MANAGED_OUTBOUND_IPS",
    "PORTS_PER_IP",
    "Capacity",
    "default_ports_per_node",
    "snat_capacity",
]

PORTS_PER_IP = 64_000
MAX_MANAGED_OUTBOUND_IPS = 100
_PORT_STEP = 8
# Default allocation per frontend IP by backend pool size (VM instances): (up to, ports).
_DEFAULT_TABLE = ((50, 1024), (100, 512), (200, 256), (400, 128), (800, 64), (1000, 32))
_DEFAULT_CAP = 1024


@dataclass(frozen=True, slots=True)
class Capacity:
    frontend_ips: int
    allocated_ports_per_node: int  # as configured; 0 = automatic
    effective_ports_per_node: int | None  # what each node gets; None: beyond the default table
    nodes: int  # max nodes + surge nodes
    ports_available: int  # 64,000 x frontend IPs
    ports_needed: int | None  # effective ports x nodes
    fits: bool | None  # None when the effective ports are unknown
    nodes_that_fit: int | None  # how many nodes the configured ports allow
    max_ports_per_node: int  # the most ports per node (multiple of 8) that fit `nodes` as is
    min_outbound_ips: int | None  # the fewest managed IPs for the configured ports (None > 100)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "frontend_ips": self.frontend_ips,
            "allocated_ports_per_node": self.allocated_ports_per_node,
            "effective_ports_per_node": self.effective_ports_per_node,
            "nodes": self.nodes,
            "ports_available": self.ports_available,
            "ports_needed": self.ports_needed,
            "fits": self.fits,
            "nodes_that_fit": self.nodes_that_fit,
            "max_ports_per_node": self.max_ports_per_node,
            "min_outbound_ips": self.min_outbound_ips,
            "notes": list(self.notes),
        }


def default_ports_per_node(pool_size: int, frontend_ips: int) -> int | None:
    """Automatic allocation for this many instances; None beyond the published table."""
    for upto, ports in _DEFAULT_TABLE:
        if pool_size <= upto:
            return min(ports * frontend_ips, _DEFAULT_CAP)
    return None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def snat_capacity(
    frontend_ips: int, allocated_ports_per_node: int, max_nodes: int, surge_nodes: int
) -> Capacity:
    """Whether max + surge nodes fit the outbound IPs, and the settings that would fit."""
    src = "snat capacity"
    if frontend_ips < 1:
        raise InputError(src, f"frontend IPs must be at least 1, got {frontend_ips}")
    if not 0 <= allocated_ports_per_node <= PORTS_PER_IP:
        raise InputError(src, f"ports per node must be 0..64000, got {allocated_ports_per_node}")
    if allocated_ports_per_node % _PORT_STEP:
        raise InputError(
            src, f"ports per node must be a multiple of 8, got {allocated_ports_per_node}"
        )
    if max_nodes < 1 or surge_nodes < 0:
        raise InputError(src, f"need max nodes >= 1 and surge >= 0, got {max_nodes}/{surge_nodes}")
    nodes = max_nodes + surge_nodes
    available = frontend_ips * PORTS_PER_IP
    notes: list[str] = []
    if allocated_ports_per_node == 0:
        effective = default_ports_per_node(nodes, frontend_ips)
        notes.append(
            "automatic allocation: ports per node shrink as the pool grows; set "
            "--load-balancer-outbound-ports to make them predictable"
        )
        if effective is None:
            notes.append("more than 1,000 instances: beyond the default allocation table")
    else:
        effective = allocated_ports_per_node
    per_node = available // nodes
    max_ports = min(PORTS_PER_IP, per_node - per_node % _PORT_STEP)
    if max_ports < _PORT_STEP:
        notes.append(f"{nodes} nodes cannot get even 8 ports each from {frontend_ips} IP(s)")
    if effective is None or effective == 0:
        return Capacity(
            frontend_ips,
            allocated_ports_per_node,
            effective,
            nodes,
            available,
            None,
            None,
            None,
            max(max_ports, 0),
            None,
            tuple(notes),
        )
    needed = effective * nodes
    min_ips = _ceil_div(needed, PORTS_PER_IP)
    if min_ips > MAX_MANAGED_OUTBOUND_IPS:
        notes.append(f"{min_ips} outbound IPs would be needed: more than the 100 AKS manages")
    return Capacity(
        frontend_ips=frontend_ips,
        allocated_ports_per_node=allocated_ports_per_node,
        effective_ports_per_node=effective,
        nodes=nodes,
        ports_available=available,
        ports_needed=needed,
        fits=needed <= available,
        nodes_that_fit=available // effective,
        max_ports_per_node=max(max_ports, 0),
        min_outbound_ips=min_ips if min_ips <= MAX_MANAGED_OUTBOUND_IPS else None,
        notes=tuple(notes),
    )
