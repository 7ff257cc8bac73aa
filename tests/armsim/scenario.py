"""The scenario file format: a high-level description of an Azure estate, validated on load.

The format is documented in tests/armsim/README.md. This module only reads and checks it; the
estate builder (estate.py) expands it into full ARM resource documents. References between
objects (a subnet's NSG, a pool's subnet) are kept as `Ref`s with their path so that an unknown
name is reported at the field that holds it.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.armsim.reader import Node, ScenarioError

__all__ = [
    "AgentPoolSpec",
    "AsgSpec",
    "ClusterSpec",
    "InstanceSpec",
    "LoadBalancerSpec",
    "MetricSeries",
    "NatGatewaySpec",
    "NsgSpec",
    "PeeringSpec",
    "Ref",
    "RouteTableSpec",
    "Scenario",
    "ScenarioError",
    "SubnetSpec",
    "SubscriptionSpec",
    "VnetSpec",
    "load_scenario",
    "parse_scenario",
]

OUTBOUND_TYPES = (
    "loadBalancer",
    "managedNATGateway",
    "userAssignedNATGateway",
    "userDefinedRouting",
)
POWER_STATES = ("running", "stopped", "deallocated", "starting", "stopping", "deallocating")
PROTOCOLS = ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*")


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference by name ("nsg1", "vnet1/subnet1") or by full ARM id, and where it was written."""

    value: str
    path: str

    @property
    def is_id(self) -> bool:
        return self.value.startswith("/subscriptions/")


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """Per-minute values, oldest first; the last value is the newest minute (see README)."""

    name: str
    dimensions: dict[str, str]
    values: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class SubnetSpec:
    name: str
    address_prefix: str
    nsg: Ref | None
    nat_gateway: Ref | None
    route_table: Ref | None
    delegation: str | None


@dataclass(frozen=True, slots=True)
class PeeringSpec:
    name: str
    remote_vnet: Ref
    remote_address_space: tuple[str, ...]
    state: str


@dataclass(frozen=True, slots=True)
class VnetSpec:
    name: str
    resource_group: str
    location: str
    address_space: tuple[str, ...]
    subnets: tuple[SubnetSpec, ...]
    peerings: tuple[PeeringSpec, ...]


@dataclass(frozen=True, slots=True)
class NsgSpec:
    name: str
    resource_group: str
    location: str
    rules: tuple[dict[str, Any], ...]  # the real REST rule shape {name, properties: {...}}


@dataclass(frozen=True, slots=True)
class AsgSpec:
    name: str
    resource_group: str
    location: str


@dataclass(frozen=True, slots=True)
class NatGatewaySpec:
    name: str
    resource_group: str
    location: str
    public_ips: tuple[str, ...]
    idle_timeout: int
    metrics: tuple[MetricSeries, ...]


@dataclass(frozen=True, slots=True)
class RouteTableSpec:
    name: str
    resource_group: str
    location: str
    routes: tuple[tuple[str, str, str, str | None], ...]  # name, prefix, next hop type, hop ip


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    power_state: str
    private_ip: str | None
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class AgentPoolSpec:
    name: str
    count: int
    os_type: str
    vm_size: str
    mode: str
    pool_type: str
    subnet: Ref | None
    pod_subnet: Ref | None
    min_count: int | None
    max_count: int | None
    max_surge: str | None
    tags: dict[str, str]
    asgs: tuple[Ref, ...]
    instances: tuple[InstanceSpec, ...]
    os_sku: str = ""  # "" = the default image of the OS type (Ubuntu, Windows2022)


@dataclass(frozen=True, slots=True)
class LoadBalancerSpec:
    frontend_ips: tuple[str, ...]
    allocated_outbound_ports: int
    idle_timeout: int
    metrics: tuple[MetricSeries, ...]


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str
    resource_group: str
    location: str
    node_resource_group: str
    kubernetes_version: str
    outbound_type: str
    private: bool
    private_fqdn: str | None
    fqdn: str | None
    vnet_integration: bool
    api_server_subnet: Ref | None
    network_plugin: str
    network_plugin_mode: str | None
    network_policy: str | None
    pod_cidr: str | None
    restriction_level: str
    node_nsg_on: str  # subnet | nic | none
    node_nsg_rules: tuple[dict[str, Any], ...]
    load_balancer: LoadBalancerSpec | None
    nat_gateway: NatGatewaySpec | None  # the managed one (outbound type managedNATGateway)
    tags: dict[str, str]
    pools: tuple[AgentPoolSpec, ...]
    path: str


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    id: str
    service_tags: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]  # location -> (name, prefixes)
    vnets: tuple[VnetSpec, ...]
    nsgs: tuple[NsgSpec, ...]
    asgs: tuple[AsgSpec, ...]
    nat_gateways: tuple[NatGatewaySpec, ...]
    route_tables: tuple[RouteTableSpec, ...]
    clusters: tuple[ClusterSpec, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    source: str
    subscriptions: tuple[SubscriptionSpec, ...]
    metrics_lag_minutes: int


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ScenarioError names the file and the bad field."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(p), f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise ScenarioError(str(p), f"not JSON: {e.msg}", line=e.lineno) from e
    return parse_scenario(data, source=str(p))


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    root = Node(source, "", data).obj(frozenset({"subscriptions", "metricsLagMinutes", "comment"}))
    subs = tuple(_subscription(n) for n in root.child("subscriptions").items())
    if not subs:
        raise root.fail("needs at least one subscription", "subscriptions")
    seen: set[str] = set()
    for s, node in zip(subs, root.child("subscriptions").items(), strict=True):
        if s.id.lower() in seen:
            raise node.fail(f"duplicate subscription {s.id!r}", "id")
        seen.add(s.id.lower())
    return Scenario(source, subs, root.int("metricsLagMinutes", 0, 0, 60))


_SUB_KEYS = frozenset(
    {"id", "serviceTags", "vnets", "nsgs", "asgs", "natGateways", "routeTables", "clusters"}
)


def _subscription(n: Node) -> SubscriptionSpec:
    n.obj(_SUB_KEYS)
    tags: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
    st = n.opt("serviceTags")
    if st is not None:
        st.obj()
        for loc in st.value:
            entries = []
            for t in st.child(loc).items():
                t.obj(frozenset({"name", "addressPrefixes"}))
                prefixes = t.strs("addressPrefixes")
                for i, p in enumerate(prefixes):
                    _prefix(t.child("addressPrefixes"), i, p)
                entries.append((t.str("name"), prefixes))
            tags[loc.lower()] = tuple(entries)
    clusters = tuple(_cluster(c) for c in n.list("clusters"))
    _unique([(c.resource_group, c.name) for c in clusters], n, "clusters")
    return SubscriptionSpec(
        id=n.str("id"),
        service_tags=tags,
        vnets=tuple(_vnet(v) for v in n.list("vnets")),
        nsgs=tuple(_nsg(v) for v in n.list("nsgs")),
        asgs=tuple(
            AsgSpec(a.str("name"), a.str("resourceGroup"), a.str("location"))
            for a in (
                x.obj(frozenset({"name", "resourceGroup", "location"})) for x in n.list("asgs")
            )
        ),
        nat_gateways=tuple(_natgw(v, None) for v in n.list("natGateways")),
        route_tables=tuple(_route_table(v) for v in n.list("routeTables")),
        clusters=clusters,
    )


def _unique(keys: list[tuple[str, str]], n: Node, field: str) -> None:
    seen: set[tuple[str, str]] = set()
    for i, (rg, name) in enumerate(keys):
        k = (rg.lower(), name.lower())
        if k in seen:
            raise n.fail(f"duplicate name {name!r} in resource group {rg!r}", f"{field}[{i}]")
        seen.add(k)


def _ref(n: Node, key: str) -> Ref | None:
    return Ref(n.str(key), n._join(key)) if n.has(key) else None


def _prefix(n: Node, key: int | str, value: str) -> None:
    """`key` is the list index or field name under `n` that holds `value`."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        where = f"{n.path}[{key}]" if isinstance(key, int) else n._join(key)
        raise ScenarioError(n.source, f"{where}: {value!r} is not an address prefix") from None


def _vnet(n: Node) -> VnetSpec:
    n.obj(frozenset({"name", "resourceGroup", "location", "addressSpace", "subnets", "peerings"}))
    space = n.strs("addressSpace")
    if not space:
        raise n.fail("needs at least one prefix", "addressSpace")
    for i, prefix in enumerate(space):
        _prefix(n.child("addressSpace"), i, prefix)
    subnets = []
    for s in n.list("subnets"):
        s.obj(frozenset({"name", "addressPrefix", "nsg", "natGateway", "routeTable", "delegation"}))
        prefix = s.str("addressPrefix")
        _prefix(s, "addressPrefix", prefix)
        subnets.append(
            SubnetSpec(s.str("name"), prefix, _ref(s, "nsg"), _ref(s, "natGateway"),
                       _ref(s, "routeTable"), s.opt_str("delegation"))
        )  # fmt: skip
    peerings = []
    for p in n.list("peerings"):
        p.obj(frozenset({"name", "remoteVnet", "remoteAddressSpace", "state"}))
        remote = _ref(p, "remoteVnet")
        if remote is None:
            raise p.fail("missing required field", "remoteVnet")
        peerings.append(
            PeeringSpec(p.str("name"), remote, p.strs("remoteAddressSpace"),
                        p.choice("state", ("Connected", "Disconnected", "Initiated"), "Connected"))
        )  # fmt: skip
    return VnetSpec(n.str("name"), n.str("resourceGroup"), n.str("location"), space,
                    tuple(subnets), tuple(peerings))  # fmt: skip


def _rules(n: Node, key: str) -> tuple[dict[str, Any], ...]:
    out = []
    for r in n.list(key):
        r.obj(frozenset({"name", "properties"}))
        r.str("name")
        props = r.child("properties").obj()
        props.int("priority", None, 100, 4096)
        props.choice("direction", ("Inbound", "Outbound"))
        props.choice("access", ("Allow", "Deny"))
        props.choice("protocol", PROTOCOLS)
        for field in ("sourceAddressPrefix", "destinationAddressPrefix", "sourcePortRange",
                      "destinationPortRange", "description"):  # fmt: skip
            if props.has(field):
                props.str(field)
        for field in ("sourceAddressPrefixes", "destinationAddressPrefixes", "sourcePortRanges",
                      "destinationPortRanges"):  # fmt: skip
            props.strs(field)
        for field in ("sourceApplicationSecurityGroups", "destinationApplicationSecurityGroups"):
            for asg in props.list(field):
                asg.obj(frozenset({"id"})).str("id")
        out.append(dict(r.value))
    return tuple(out)


def _nsg(n: Node) -> NsgSpec:
    n.obj(frozenset({"name", "resourceGroup", "location", "rules"}))
    return NsgSpec(n.str("name"), n.str("resourceGroup"), n.str("location"), _rules(n, "rules"))


LB_METRICS = ("SnatConnectionCount", "AllocatedSnatPorts", "UsedSnatPorts", "ByteCount",
              "PacketCount", "SYNCount", "VipAvailability", "DipAvailability")  # fmt: skip
NAT_METRICS = ("SNATConnectionCount", "TotalConnectionCount", "PacketDropCount",
               "DatapathAvailability", "ByteCount", "PacketCount")  # fmt: skip


def _metrics(n: Node, known: tuple[str, ...]) -> tuple[MetricSeries, ...]:
    out = []
    for m in n.list("metrics"):
        m.obj(frozenset({"name", "dimensions", "values"}))
        if m.str("name") not in known:  # metric names are case-sensitive in scenarios
            raise m.child("name").fail(f"{m.str('name')!r} is not one of {', '.join(known)}")
        values: list[float | None] = []
        for v in m.child("values").items():
            if v.value is not None and (isinstance(v.value, bool)
                                        or not isinstance(v.value, (int, float))):  # fmt: skip
                raise v.fail("expected a number or null")
            values.append(None if v.value is None else float(v.value))
        out.append(MetricSeries(m.str("name"), m.str_map("dimensions"), tuple(values)))
    return tuple(out)


def _natgw(n: Node, cluster: Node | None) -> NatGatewaySpec:
    keys = {"name", "publicIps", "idleTimeoutInMinutes", "metrics"}
    n.obj(frozenset(keys if cluster else keys | {"resourceGroup", "location"}))
    rg = cluster.str("nodeResourceGroup") if cluster else n.str("resourceGroup")
    loc = cluster.str("location") if cluster else n.str("location")
    default_name = f"{cluster.str('name')}-natgw" if cluster else None
    return NatGatewaySpec(n.str("name", default_name), rg, loc, n.strs("publicIps"),
                          n.int("idleTimeoutInMinutes", 4, 4, 120), _metrics(n, NAT_METRICS))  # fmt: skip


def _route_table(n: Node) -> RouteTableSpec:
    n.obj(frozenset({"name", "resourceGroup", "location", "routes"}))
    routes = []
    for r in n.list("routes"):
        r.obj(frozenset({"name", "addressPrefix", "nextHopType", "nextHopIpAddress"}))
        hop = r.choice("nextHopType", ("VirtualAppliance", "Internet", "VnetLocal",
                                       "VirtualNetworkGateway", "None"))  # fmt: skip
        routes.append((r.str("name"), r.str("addressPrefix"), hop, r.opt_str("nextHopIpAddress")))
    return RouteTableSpec(n.str("name"), n.str("resourceGroup"), n.str("location"), tuple(routes))


_CLUSTER_KEYS = frozenset({
    "name", "resourceGroup", "location", "nodeResourceGroup", "kubernetesVersion", "outboundType",
    "privateCluster", "privateFqdn", "fqdn", "apiServerVnetIntegration", "apiServerSubnet",
    "networkPlugin", "networkPluginMode", "networkPolicy", "podCidr", "restrictionLevel",
    "nodeNsgOn", "nodeNsgRules", "loadBalancer", "natGateway", "tags", "agentPools",
})  # fmt: skip


def _cluster(n: Node) -> ClusterSpec:
    n.obj(_CLUSTER_KEYS)
    name, loc = n.str("name"), n.str("location")
    outbound = n.choice("outboundType", OUTBOUND_TYPES, "loadBalancer")
    private = n.bool("privateCluster")
    integration = n.bool("apiServerVnetIntegration")
    api_subnet = _ref(n, "apiServerSubnet")
    if integration and api_subnet is None:
        raise n.fail("required when apiServerVnetIntegration is true", "apiServerSubnet")
    lb = None
    if outbound == "loadBalancer":
        lbn = n.opt("loadBalancer") or Node(n.source, n._join("loadBalancer"), {})
        lbn.obj(frozenset({"frontendIps", "allocatedOutboundPorts", "idleTimeoutInMinutes",
                           "metrics"}))  # fmt: skip
        ips = lbn.strs("frontendIps") or ("20.0.0.1",)
        ports = lbn.int("allocatedOutboundPorts", 0, 0, 64000)
        if ports % 8:
            raise lbn.fail("must be a multiple of 8", "allocatedOutboundPorts")
        lb = LoadBalancerSpec(
            ips, ports, lbn.int("idleTimeoutInMinutes", 30, 4, 120), _metrics(lbn, LB_METRICS)
        )
    elif n.has("loadBalancer"):
        raise n.fail(
            f"only for outboundType loadBalancer (this cluster: {outbound})", "loadBalancer"
        )
    natgw = None
    if outbound == "managedNATGateway":
        natgw = _natgw(n.opt("natGateway") or Node(n.source, n._join("natGateway"), {}), n)
    elif n.has("natGateway"):
        raise n.fail("only for outboundType managedNATGateway (a user-assigned NAT gateway "
                     "is declared under natGateways and referenced by a subnet)", "natGateway")  # fmt: skip
    pools = tuple(_pool(p) for p in n.child("agentPools").items())
    if not any(p.mode == "System" for p in pools):
        raise n.fail("needs at least one System pool", "agentPools")
    seen: set[str] = set()
    for i, p in enumerate(pools):
        if p.name.lower() in seen:
            raise n.fail(f"duplicate pool name {p.name!r}", f"agentPools[{i}].name")
        seen.add(p.name.lower())
    byo = any(p.subnet is not None for p in pools)
    if byo and any(p.subnet is None for p in pools):
        raise n.fail("either every pool names a subnet (BYO VNet) or none does", "agentPools")
    if outbound == "managedNATGateway" and byo:
        raise n.fail(
            "managedNATGateway needs the AKS-managed VNet (no pool 'subnet')", "outboundType"
        )
    if outbound == "userAssignedNATGateway" and not byo:
        raise n.fail(
            "userAssignedNATGateway needs BYO subnets (pools with 'subnet')", "outboundType"
        )
    rg = n.str("resourceGroup")
    return ClusterSpec(
        name=name, resource_group=rg, location=loc,
        node_resource_group=n.str("nodeResourceGroup", f"MC_{rg}_{name}_{loc}"),
        kubernetes_version=n.str("kubernetesVersion", "1.30.5"),
        outbound_type=outbound, private=private,
        private_fqdn=n.opt_str("privateFqdn"), fqdn=n.opt_str("fqdn"),
        vnet_integration=integration, api_server_subnet=api_subnet,
        network_plugin=n.choice("networkPlugin", ("azure", "kubenet", "none"), "azure"),
        network_plugin_mode=(n.choice("networkPluginMode", ("overlay",))
                             if n.has("networkPluginMode") else None),
        network_policy=n.opt_str("networkPolicy"),
        pod_cidr=n.opt_str("podCidr"),
        restriction_level=n.choice("restrictionLevel", ("Unrestricted", "ReadOnly"), "Unrestricted"),
        node_nsg_on=n.choice("nodeNsgOn", ("subnet", "nic", "none"), "nic" if byo else "subnet"),
        node_nsg_rules=_rules(n, "nodeNsgRules"),
        load_balancer=lb, nat_gateway=natgw, tags=n.str_map("tags"), pools=pools, path=n.path,
    )  # fmt: skip


_POOL_KEYS = frozenset({
    "name", "count", "osType", "vmSize", "mode", "type", "subnet", "podSubnet", "minCount",
    "maxCount", "maxSurge", "tags", "asgs", "instances", "osSku",
})  # fmt: skip
OS_SKUS = {"Linux": ("Ubuntu", "AzureLinux"), "Windows": ("Windows2019", "Windows2022")}


def _pool(n: Node) -> AgentPoolSpec:
    n.obj(_POOL_KEYS)
    name = n.str("name")
    os_type = n.choice("osType", ("Linux", "Windows"), "Linux")
    limit = 6 if os_type == "Windows" else 12
    if not name.isalnum() or not name[0].isalpha() or name != name.lower() or len(name) > limit:
        raise n.fail(f"pool names are lowercase letters and digits, starting with a letter, "
                     f"at most {limit} characters ({os_type})", "name")  # fmt: skip
    instances = []
    for i in n.list("instances"):
        i.obj(frozenset({"powerState", "privateIp", "runCommand"}))
        ip = i.opt_str("privateIp")
        if ip is not None:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise i.fail(f"{ip!r} is not an IP address", "privateIp") from None
        rc = i.opt("runCommand")
        if rc is not None:
            rc.obj(frozenset({"stdout", "stderr"}))
        stdout = rc.value.get("stdout", "") if rc else ""
        stderr = rc.value.get("stderr", "") if rc else ""
        if not isinstance(stdout, str) or not isinstance(stderr, str):
            raise i.fail("stdout and stderr must be strings", "runCommand")
        instances.append(InstanceSpec(i.choice("powerState", POWER_STATES, "running"), ip,
                                      stdout, stderr))  # fmt: skip
    count = n.int("count", len(instances) or 1, 0, 1000)
    if instances and len(instances) != count:
        raise n.fail(f"lists {len(instances)} instances but count is {count}", "instances")
    auto_min, auto_max = n.opt_int("minCount", 0, 1000), n.opt_int("maxCount", 0, 1000)
    if (auto_min is None) != (auto_max is None):
        raise n.fail("minCount and maxCount go together", "maxCount")
    if auto_min is not None and auto_max is not None and auto_min > auto_max:
        raise n.fail(f"minCount {auto_min} is above maxCount {auto_max}", "minCount")
    return AgentPoolSpec(
        name=name, count=count, os_type=os_type,
        vm_size=n.str("vmSize", "Standard_D4s_v5"),
        mode=n.choice("mode", ("System", "User"), "User"),
        pool_type=n.choice("type", ("VirtualMachineScaleSets", "VirtualMachines"),
                           "VirtualMachineScaleSets"),
        subnet=_ref(n, "subnet"), pod_subnet=_ref(n, "podSubnet"),
        min_count=auto_min, max_count=auto_max, max_surge=n.opt_str("maxSurge"),
        tags=n.str_map("tags"),
        asgs=tuple(Ref(a.value, a.path) for a in n.list("asgs") if _is_str(a)),
        instances=tuple(instances),
        os_sku=n.choice("osSku", OS_SKUS[os_type], OS_SKUS[os_type][0 if os_type == "Linux" else 1]),
    )  # fmt: skip


def _is_str(n: Node) -> bool:
    if not isinstance(n.value, str) or not n.value.strip():
        raise n.fail("expected a non-empty string")
    return True
