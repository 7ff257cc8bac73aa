"""What the scan knows about a subscription's AKS estate: plain dataclasses, no SDK types.

The ARM adapter (shared/adapters/arm_inventory.py) turns SDK objects into these at its boundary;
the checks (shared/checks/) read only these. Resource ids keep ARM's spelling; compare them with
`same_id` (ARM ids are case-insensitive).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "AgentPool",
    "Cluster",
    "Estate",
    "Instance",
    "LoadBalancer",
    "NatGateway",
    "NsgDocument",
    "OutboundRule",
    "PowerState",
    "Read",
    "ReadError",
    "Subnet",
    "VirtualNetwork",
    "id_key",
    "resource_group_of",
    "same_id",
]


def id_key(resource_id: str) -> str:
    """The comparable form of an ARM id (ARM treats ids case-insensitively)."""
    return resource_id.strip().rstrip("/").lower()


def same_id(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and id_key(a) == id_key(b)


def resource_group_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "resourcegroups":
            return parts[i + 1]
    return ""


class PowerState(StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    STOPPED = "stopped"
    STOPPING = "stopping"
    DEALLOCATED = "deallocated"
    DEALLOCATING = "deallocating"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Instance:
    """One scale-set VM (a node)."""

    instance_id: str  # the scale set's instance id ("3"), what run command takes
    name: str  # aks-nodepool1-12345678-vmss_3
    computer_name: str  # aks-nodepool1-12345678-vmss000003 (the Kubernetes node name)
    power_state: PowerState
    private_ips: tuple[str, ...] = ()  # primary first
    nic_nsg_id: str | None = None  # the NIC's own NSG, when the NIC says so


@dataclass(frozen=True, slots=True)
class AgentPool:
    name: str
    mode: str  # System | User
    os_type: str  # Linux | Windows
    pool_type: str  # VirtualMachineScaleSets | VirtualMachines
    count: int
    min_count: int | None
    max_count: int | None
    max_surge: str  # "1", "33%", "" (AKS default: 10%)
    node_subnet_id: str | None  # the pool's vnetSubnetID, or the scale set's (AKS-managed VNet)
    pod_subnet_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    # From the scale set (None/empty when it was not found):
    vmss_id: str | None = None
    vmss_name: str | None = None
    nic_nsg_id: str | None = None  # NSG of the scale set's network profile
    asg_ids: tuple[str, ...] = ()
    instances: tuple[Instance, ...] = ()

    @property
    def probe_opt_out(self) -> bool:
        return self.tags.get("tunnelwatch-probe", "").lower() == "off"


@dataclass(frozen=True, slots=True)
class Cluster:
    id: str
    name: str
    subscription: str
    resource_group: str
    location: str
    node_resource_group: str
    outbound_type: (
        str  # loadBalancer | managedNATGateway | userAssignedNATGateway | userDefinedRouting | none
    )
    private_cluster: bool
    vnet_integration: bool
    api_server_subnet_id: str | None
    fqdn: str | None
    private_fqdn: str | None
    network_plugin: str  # kubenet | azure | none
    network_plugin_mode: str  # overlay | ""
    pod_cidr: str | None
    restriction_level: str  # Unrestricted | ReadOnly (node resource group lockdown)
    power_state: str  # Running | Stopped
    pools: tuple[AgentPool, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    load_balancer_outbound_ports: int | None = None  # networkProfile.loadBalancerProfile
    load_balancer_outbound_ip_count: int | None = None
    # Private clusters: the address of the `kube-apiserver` private endpoint in the node
    # resource group, which the nodes' tunnel dials (read from its NIC, not from DNS).
    api_server_private_ips: tuple[str, ...] = ()

    @property
    def probe_opt_out(self) -> bool:
        return self.tags.get("tunnelwatch-probe", "").lower() == "off"

    @property
    def has_tunnel(self) -> bool:
        """API Server VNet Integration reaches the nodes directly, without a tunnel."""
        return not self.vnet_integration


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    name: str
    prefixes: tuple[str, ...]
    nsg_id: str | None
    nat_gateway_id: str | None
    route_table_id: str | None


@dataclass(frozen=True, slots=True)
class VirtualNetwork:
    id: str
    name: str
    location: str
    address_prefixes: tuple[str, ...]
    peered_prefixes: tuple[str, ...]  # remote address spaces of connected peerings
    subnets: tuple[Subnet, ...]

    @property
    def vnet_tag_prefixes(self) -> tuple[str, ...]:
        """What the VirtualNetwork service tag covers for resources in this VNet."""
        return self.address_prefixes + self.peered_prefixes


@dataclass(frozen=True, slots=True)
class NsgDocument:
    """An NSG as ARM returns it (REST shape), for shared.analysis.nsg.parse_nsg."""

    id: str
    name: str
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboundRule:
    name: str
    allocated_outbound_ports: int  # 0 = automatic (by backend pool size)
    idle_timeout_minutes: int
    frontend_ip_count: int


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    id: str
    name: str
    resource_group: str
    frontend_ip_count: int
    outbound_rules: tuple[OutboundRule, ...]
    private_frontend_ips: tuple[
        str, ...
    ] = ()  # internal LBs (kube-apiserver with VNet integration)


@dataclass(frozen=True, slots=True)
class NatGateway:
    id: str
    name: str
    resource_group: str
    idle_timeout_minutes: int
    public_ip_count: int
    public_ip_prefix_count: int
    subnet_ids: tuple[str, ...]


class Read(StrEnum):
    """An input of the scan that ARM may fail to give: what a ReadError says was not read."""

    SCALE_SETS = "virtualMachineScaleSets list"
    VNETS = "virtualNetworks list"
    NSGS = "networkSecurityGroups list"
    LOAD_BALANCERS = "loadBalancers list"
    NAT_GATEWAYS = "natGateways list"
    NICS = "networkInterfaces list"  # private clusters: the API server's private endpoint
    POOL_SCALE_SET = "pool scale set"  # which scale set is a pool's (none, or several)
    INSTANCES = "scale set instances"
    POOL_NICS = "scale set NICs"
    NETWORK_REFERENCE = "subnet or NSG reference"  # named by the cluster, not in the lists
    NAT_REFERENCE = "NAT gateway reference"
    PRIVATE_ENDPOINT = "API server private endpoint"


@dataclass(frozen=True, slots=True)
class ReadError:
    """One input that could not be read: of the whole subscription (no cluster) or of one
    cluster (and pool). Checks decide from `read` and `cluster_id` what they cannot judge;
    `message` is for people."""

    read: Read
    message: str
    cluster_id: str = ""  # empty: a subscription-wide list, every cluster lacks it
    pool: str = ""

    def concerns(self, cluster_id: str) -> bool:
        return not self.cluster_id or id_key(self.cluster_id) == id_key(cluster_id)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Estate:
    """Everything one scan read from one subscription."""

    subscription: str
    clusters: tuple[Cluster, ...]
    vnets: tuple[VirtualNetwork, ...]
    nsgs: tuple[NsgDocument, ...]
    load_balancers: tuple[LoadBalancer, ...]
    nat_gateways: tuple[NatGateway, ...]
    errors: tuple[ReadError, ...] = ()  # inputs that could not be read, one each

    _subnets: dict[str, tuple[VirtualNetwork, Subnet]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _nsgs: dict[str, NsgDocument] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        # Indexes: checks look subnets and NSGs up once per pool and flow.
        for vnet in self.vnets:
            for subnet in vnet.subnets:
                self._subnets[id_key(subnet.id)] = (vnet, subnet)
        for nsg in self.nsgs:
            self._nsgs[id_key(nsg.id)] = nsg

    def missing(self, cluster_id: str) -> frozenset[Read]:
        """The inputs this cluster's checks lack: subscription-wide failures and its own."""
        return frozenset(e.read for e in self.errors if e.concerns(cluster_id))

    def subnet(self, subnet_id: str | None) -> tuple[VirtualNetwork, Subnet] | None:
        return None if subnet_id is None else self._subnets.get(id_key(subnet_id))

    def nsg(self, nsg_id: str | None) -> NsgDocument | None:
        return None if nsg_id is None else self._nsgs.get(id_key(nsg_id))
