"""The inventory mappings on SDK model objects and REST dicts, and read_estate over a small fake.

The fake is injected (an object with the SDK clients' attribute names), never patched into
azure modules; it lets the edge cases that the simulator does not build be tested: node
resource group casing, ambiguous scale sets, dangling references, a list failing mid-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import models as cm
from azure.mgmt.containerservice import models as csm
from azure.mgmt.network import models as nm

from shared.adapters.arm_documents import (
    as_doc,
    load_balancer_ip_count,
    map_cluster,
    map_instances,
    map_load_balancer,
    map_nat_gateway,
    map_nsg,
    map_pool,
    map_scale_set,
    map_subnet,
    map_vnet,
    power_state_of,
)
from shared.adapters.arm_inventory import describe_error, read_estate
from shared.analysis.nsg import parse_nsg
from shared.inventory.model import PowerState, Read

SUB = "55555555-5555-5555-5555-555555555555"
P = f"/subscriptions/{SUB}/resourceGroups"
CLUSTER_ID = f"{P}/rg-app/providers/Microsoft.ContainerService/managedClusters/aks1"
NODE_RG = "Nodes-For-AKS1"  # as the cluster spells it; ARM ids may spell it otherwise
VMSS_ID = f"{P}/nodes-for-aks1/providers/Microsoft.Compute/virtualMachineScaleSets/aks-np1-1-vmss"
SUBNET = f"{P}/rg-net/providers/Microsoft.Network/virtualNetworks/v1/subnets/nodes"
NSG_ID = f"{P}/rg-net/providers/Microsoft.Network/networkSecurityGroups/nsg-nodes"


# -- SDK model objects ------------------------------------------------------------------------


def _sdk_cluster() -> csm.ManagedCluster:
    rest = {
        "id": CLUSTER_ID, "name": "aks1", "location": "eastus", "tags": {"team": "a", "n": 1},
        "properties": {
            "fqdn": "aks1-abc.hcp.eastus.azmk8s.io", "powerState": {"code": "Stopped"},
            "nodeResourceGroup": NODE_RG,
        },
    }  # fmt: skip
    mc = csm.ManagedCluster(rest)
    mc.agent_pool_profiles = [
        csm.ManagedClusterAgentPoolProfile(
            name="np1", count=2, min_count=1, max_count=4, os_type="Linux", mode="System",
            type="VirtualMachineScaleSets", vnet_subnet_id=SUBNET, pod_subnet_id=None,
            upgrade_settings=csm.AgentPoolUpgradeSettings(max_surge="1"), tags={"x": "y"},
        ),
        csm.ManagedClusterAgentPoolProfile(name="vms", count=1, type="VirtualMachines"),
    ]  # fmt: skip
    mc.network_profile = csm.ContainerServiceNetworkProfile(
        network_plugin="azure", network_plugin_mode="overlay", outbound_type="loadBalancer",
        pod_cidr="10.244.0.0/16",
        load_balancer_profile=csm.ManagedClusterLoadBalancerProfile(
            managed_outbound_i_ps=csm.ManagedClusterLoadBalancerProfileManagedOutboundIPs(count=3),
            allocated_outbound_ports=1000,
        ),
    )  # fmt: skip
    mc.api_server_access_profile = csm.ManagedClusterAPIServerAccessProfile(
        enable_private_cluster=True, enable_vnet_integration=False
    )
    mc.node_resource_group_profile = csm.ManagedClusterNodeResourceGroupProfile(
        restriction_level="ReadOnly"
    )
    return mc


def test_cluster_from_sdk_model() -> None:
    doc = as_doc(_sdk_cluster())
    pools = tuple(map_pool(p) for p in doc["properties"]["agentPoolProfiles"])
    c = map_cluster(doc, SUB, pools)
    assert (c.name, c.resource_group, c.location, c.node_resource_group) == (
        "aks1", "rg-app", "eastus", NODE_RG,
    )  # fmt: skip
    assert (c.outbound_type, c.network_plugin, c.network_plugin_mode) == (
        "loadBalancer", "azure", "overlay",
    )  # fmt: skip
    assert c.private_cluster and not c.vnet_integration and c.api_server_subnet_id is None
    assert c.fqdn == "aks1-abc.hcp.eastus.azmk8s.io" and c.private_fqdn is None
    assert (c.restriction_level, c.power_state, c.pod_cidr) == (
        "ReadOnly",
        "Stopped",
        "10.244.0.0/16",
    )
    assert (c.load_balancer_outbound_ports, c.load_balancer_outbound_ip_count) == (1000, 3)
    assert c.tags == {"team": "a"}  # non-string tag values are not tags
    np1, vms = c.pools
    assert (np1.count, np1.min_count, np1.max_count, np1.max_surge) == (2, 1, 4, "1")
    assert np1.node_subnet_id == SUBNET and np1.tags == {"x": "y"}
    assert vms.pool_type == "VirtualMachines" and vms.os_type == "Linux" and vms.mode == ""


def test_cluster_absent_fields_are_unknown_or_documented_defaults() -> None:
    c = map_cluster({"id": CLUSTER_ID}, SUB, ())
    assert (c.outbound_type, c.network_plugin, c.power_state, c.node_resource_group) == (
        "",
        "",
        "",
        "",
    )
    assert c.restriction_level == "Unrestricted"  # the API's default when the profile is absent
    assert c.load_balancer_outbound_ip_count is None and c.load_balancer_outbound_ports is None
    assert c.name == "aks1" and c.location == ""


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            {
                "effectiveOutboundIPs": [{"id": "a"}, {"id": "b"}],
                "managedOutboundIPs": {"count": 5},
            },
            2,
        ),
        ({"managedOutboundIPs": {"count": 5}}, 5),
        ({"outboundIPs": {"publicIPs": [{"id": "a"}]}}, 1),
        ({"outboundIPPrefixes": {"publicIPPrefixes": [{"id": "p"}]}}, None),
        ({}, None),
    ],
)
def test_load_balancer_ip_count(profile: dict[str, Any], expected: int | None) -> None:
    assert load_balancer_ip_count(profile) == expected


def test_nsg_from_sdk_model_parses() -> None:
    rule = nm.SecurityRule(
        name="deny-10250", priority=200, direction="Inbound", access="Deny", protocol="Tcp",
        source_address_prefixes=["10.1.0.0/24", "10.2.0.0/24"], source_port_range="*",
        destination_address_prefix="*", destination_port_ranges=["10250", "10255"],
    )  # fmt: skip
    model = nm.NetworkSecurityGroup({"id": NSG_ID, "name": "nsg-nodes", "location": "eastus"})
    model.security_rules = [rule]
    doc = map_nsg(model)
    assert doc.id == NSG_ID and doc.name == "nsg-nodes"
    props = doc.document["properties"]["securityRules"][0]["properties"]
    assert props["destinationPortRanges"] == ["10250", "10255"]
    nsg = parse_nsg(doc.document, doc.id)
    assert nsg.id == NSG_ID and nsg.name == "nsg-nodes"
    assert any(r.name == "deny-10250" and r.priority == 200 for r in nsg.inbound)
    assert sum(r.default for r in (*nsg.inbound, *nsg.outbound)) == 6  # defaults added


def test_vnet_subnets_and_peerings() -> None:
    doc = {
        "id": f"{P}/rg-net/providers/Microsoft.Network/virtualNetworks/v1", "location": "eastus",
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.1.0.0/16", "10.9.0.0/16"]},
            "subnets": [
                {"id": SUBNET, "name": "nodes", "properties": {
                    "addressPrefix": "10.1.0.0/22", "networkSecurityGroup": {"id": NSG_ID},
                    "natGateway": {"id": "/nat"}, "routeTable": {"id": "/rt"}}},
                {"id": SUBNET + "2", "properties": {"addressPrefixes": ["10.9.0.0/24", "fd00::/64"]}},
            ],
            "virtualNetworkPeerings": [
                {"properties": {"peeringState": "Connected",
                                "remoteAddressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                                "remoteVirtualNetworkAddressSpace": {"addressPrefixes": ["10.0.0.0/15"]}}},
                {"properties": {"peeringState": "connected",
                                "remoteVirtualNetworkAddressSpace": {"addressPrefixes": ["172.16.0.0/12"]}}},
                {"properties": {"peeringState": "Connected", "allowVirtualNetworkAccess": False,
                                "remoteAddressSpace": {"addressPrefixes": ["192.168.0.0/16"]}}},
                {"properties": {"peeringState": "Initiated",
                                "remoteAddressSpace": {"addressPrefixes": ["10.200.0.0/16"]}}},
            ],
        },
    }  # fmt: skip
    v = map_vnet(doc)
    assert v.name == "v1" and v.address_prefixes == ("10.1.0.0/16", "10.9.0.0/16")
    assert v.peered_prefixes == ("10.0.0.0/16", "172.16.0.0/12")
    nodes, other = v.subnets
    assert (nodes.nsg_id, nodes.nat_gateway_id, nodes.route_table_id) == (NSG_ID, "/nat", "/rt")
    assert nodes.prefixes == ("10.1.0.0/22",) and other.prefixes == ("10.9.0.0/24", "fd00::/64")
    assert other.name == "nodes2" and other.nsg_id is None


def test_subnet_from_sdk_model() -> None:
    model = nm.Subnet(id=SUBNET, name="nodes", address_prefix="10.1.0.0/22")
    model.network_security_group = nm.NetworkSecurityGroup(id=NSG_ID)
    s = map_subnet(as_doc(model))
    assert s.prefixes == ("10.1.0.0/22",) and s.nsg_id == NSG_ID


def test_load_balancer_and_nat_gateway() -> None:
    lb = map_load_balancer({
        "id": f"{P}/{NODE_RG}/providers/Microsoft.Network/loadBalancers/kubernetes",
        "properties": {
            "frontendIPConfigurations": [{"properties": {"publicIPAddress": {"id": "a"}}},
                                         {"properties": {"publicIPAddress": {"id": "b"}}}],
            "outboundRules": [{"name": "aksOutboundRule", "properties": {
                "allocatedOutboundPorts": 0, "frontendIPConfigurations": [{"id": "f1"}, {"id": "f2"}]}}],
        },
    })  # fmt: skip
    assert (lb.name, lb.resource_group, lb.frontend_ip_count) == ("kubernetes", NODE_RG, 2)
    (rule,) = lb.outbound_rules
    # 0 = automatic; an absent idle timeout is ARM's default of 4 minutes
    assert (rule.allocated_outbound_ports, rule.idle_timeout_minutes, rule.frontend_ip_count) == (
        0,
        4,
        2,
    )
    assert lb.private_frontend_ips == ()
    nat = map_nat_gateway(nm.NatGateway({
        "id": f"{P}/rg-net/providers/Microsoft.Network/natGateways/ng",
        "properties": {"idleTimeoutInMinutes": 10, "publicIpAddresses": [{"id": "p1"}],
                       "publicIpPrefixes": [{"id": "x"}, {"id": "y"}], "subnets": [{"id": SUBNET}]},
    }))  # fmt: skip
    assert (nat.name, nat.idle_timeout_minutes, nat.public_ip_count, nat.public_ip_prefix_count) == (
        "ng", 10, 1, 2,
    )  # fmt: skip
    assert nat.subnet_ids == (SUBNET,)


# -- scale sets and instances -----------------------------------------------------------------


def _vmss_doc(
    pool: str = "np1", resource_id: str = VMSS_ID, tag_key: str = "aks-managed-poolName"
) -> dict[str, Any]:
    return {
        "id": resource_id, "name": resource_id.rsplit("/", 1)[1], "tags": {tag_key: pool},
        "properties": {"virtualMachineProfile": {"networkProfile": {"networkInterfaceConfigurations": [
            {"name": "secondary", "properties": {"primary": False, "ipConfigurations": [
                {"properties": {"subnet": {"id": SUBNET + "-x"}}}]}},
            {"name": "primary", "properties": {
                "primary": True, "networkSecurityGroup": {"id": NSG_ID},
                "ipConfigurations": [{"properties": {
                    "primary": True, "subnet": {"id": SUBNET},
                    "applicationSecurityGroups": [{"id": "/asg/1"}, {"id": "/ASG/1"}, {"id": "/asg/2"}]}}]}},
        ]}}},
    }  # fmt: skip


def test_scale_set_primary_nic_first_and_asgs_deduplicated() -> None:
    ss = map_scale_set(cm.VirtualMachineScaleSet(_vmss_doc(tag_key="AKS-Managed-PoolName")))
    assert ss.pool_name == "np1" and ss.resource_group == "nodes-for-aks1"
    assert ss.subnet_ids == (SUBNET, SUBNET + "-x") and ss.nic_nsg_id == NSG_ID
    assert ss.asg_ids == ("/asg/1", "/asg/2")
    pool = map_pool({"name": "np1"}, ss)
    assert pool.node_subnet_id == SUBNET  # AKS-managed VNet: the scale set says where
    assert pool.vmss_id == VMSS_ID and pool.asg_ids == ("/asg/1", "/asg/2")


def _vm(iid: str, state: str | None, nic: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"osProfile": {"computerName": f"aks-np1-vmss00000{iid}"}}
    if state is not None:
        props["instanceView"] = {"statuses": [{"code": "ProvisioningState/succeeded"},
                                              {"code": f"PowerState/{state}"}]}  # fmt: skip
    if nic:
        props["networkProfile"] = {"networkInterfaces": [{"id": nic}]}
    return {"id": f"{VMSS_ID}/virtualMachines/{iid}", "instanceId": iid, "name": f"vmss_{iid}",
            "properties": props}  # fmt: skip


def _nic(nic_id: str, vm: str | None, ips: list[str], primary: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {"primary": primary, "ipConfigurations": [
        {"properties": {"privateIPAddress": ip, "primary": i == 0}} for i, ip in enumerate(ips)]}  # fmt: skip
    if vm:
        props["virtualMachine"] = {"id": vm}
    if primary:
        props["networkSecurityGroup"] = {"id": NSG_ID}
    return {"id": nic_id, "properties": props}


def test_instances_join_nics_both_ways_and_order() -> None:
    vms = [
        _vm("10", "running", nic="/nic/10"),
        _vm("2", "deallocated"),
        _vm("3", "hibernated"),  # not a state we know
        _vm("4", None),
    ]
    nics = [
        _nic("/NIC/10", None, ["10.0.0.10", "10.0.0.11"]),  # named by the VM (other casing)
        _nic("/nic/2b", f"{VMSS_ID}/virtualMachines/2", ["10.0.0.3"], primary=False),
        _nic("/nic/2a", f"{VMSS_ID.upper()}/virtualMachines/2", ["10.0.0.2"]),
    ]
    out = map_instances(vms, nics)
    assert [i.instance_id for i in out] == ["2", "3", "4", "10"]
    by_id = {i.instance_id: i for i in out}
    assert by_id["10"].private_ips == ("10.0.0.10", "10.0.0.11")
    assert by_id["2"].private_ips == ("10.0.0.2", "10.0.0.3")  # primary NIC first
    assert by_id["2"].power_state is PowerState.DEALLOCATED and by_id["2"].nic_nsg_id == NSG_ID
    assert by_id["3"].power_state is PowerState.UNKNOWN
    assert by_id["4"].power_state is PowerState.UNKNOWN and by_id["4"].private_ips == ()
    assert by_id["10"].computer_name == "aks-np1-vmss0000010"
    # NICs not read (the call failed): instances still there, addresses unknown
    assert all(i.private_ips == () for i in map_instances(vms, None))


def test_odd_instance_ids_sort_without_error() -> None:
    ids = [i.instance_id for i in map_instances([_vm("²", "running"), _vm("7", "running")], [])]
    assert ids == ["7", "²"]


def test_power_state_from_sdk_model() -> None:
    vm = cm.VirtualMachineScaleSetVM(_vm("0", "stopped"))
    assert power_state_of(as_doc(vm)) is PowerState.STOPPED


# -- read_estate over an injected fake --------------------------------------------------------


class _Fake:
    """The attributes read_estate uses, returning prepared documents; records the calls."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.subscription = SUB
        self.calls: list[str] = []
        self.data = data
        self.container = SimpleNamespace(managed_clusters=SimpleNamespace(list=self._l("clusters")))
        self.compute = SimpleNamespace(
            virtual_machine_scale_sets=SimpleNamespace(list_all=self._l("vmss")),
            virtual_machine_scale_set_vms=SimpleNamespace(list=self._per("vms")),
        )
        self.network = SimpleNamespace(
            virtual_networks=SimpleNamespace(list_all=self._l("vnets")),
            network_security_groups=SimpleNamespace(list_all=self._l("nsgs")),
            load_balancers=SimpleNamespace(list_all=self._l("lbs")),
            nat_gateways=SimpleNamespace(list_all=self._l("nats")),
            network_interfaces=SimpleNamespace(
                list_virtual_machine_scale_set_network_interfaces=self._per("nics")
            ),
        )

    def _l(self, key: str) -> Any:
        def call() -> Iterator[Any]:
            self.calls.append(key)
            for item in self.data.get(key, []):
                if isinstance(item, Exception):
                    raise item
                yield item

        return call

    def _per(self, key: str) -> Any:
        def call(rg: str, name: str, **kwargs: Any) -> list[Any]:
            self.calls.append(f"{key}:{rg}/{name}:{sorted(kwargs.items())}")
            value = self.data.get(key, {}).get(name, [])
            if isinstance(value, Exception):
                raise value
            return list(value)

        return call


def _cluster_doc(pools: list[str], subnet: str | None = SUBNET) -> dict[str, Any]:
    profiles = [{"name": p, "count": 1, "type": "VirtualMachineScaleSets",
                 **({"vnetSubnetID": subnet} if subnet else {})} for p in pools]  # fmt: skip
    return {"id": CLUSTER_ID, "name": "aks1", "location": "eastus",
            "properties": {"nodeResourceGroup": NODE_RG, "agentPoolProfiles": profiles}}  # fmt: skip


_VNET = {"id": SUBNET.rsplit("/subnets/", 1)[0], "properties": {
    "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
    "subnets": [{"id": SUBNET, "properties": {"addressPrefix": "10.1.0.0/22",
                                              "networkSecurityGroup": {"id": NSG_ID}}}]}}  # fmt: skip
_NSG = {"id": NSG_ID, "name": "nsg-nodes", "properties": {"securityRules": []}}


def test_node_resource_group_and_tag_compared_case_insensitively() -> None:
    other_rg = VMSS_ID.replace("nodes-for-aks1", "somewhere-else").replace("np1-1", "np1-2")
    fake = _Fake({
        "clusters": [csm.ManagedCluster(_cluster_doc(["np1"]))],
        "vmss": [cm.VirtualMachineScaleSet(_vmss_doc(tag_key="AKS-MANAGED-POOLNAME")),
                 _vmss_doc(resource_id=other_rg)],
        "vms": {"aks-np1-1-vmss": [_vm("0", "running", nic="/nic/0")]},
        "nics": {"aks-np1-1-vmss": [_nic("/nic/0", None, ["10.1.0.4"])]},
        "vnets": [_VNET], "nsgs": [_NSG],
    })  # fmt: skip
    estate = read_estate(fake, SUB)  # type: ignore[arg-type]
    assert estate.errors == ()
    (pool,) = estate.clusters[0].pools
    assert pool.vmss_id == VMSS_ID and pool.instances[0].private_ips == ("10.1.0.4",)
    assert "vms:nodes-for-aks1/aks-np1-1-vmss:[('expand', 'instanceView')]" in fake.calls
    assert sum(c.startswith("vms:") for c in fake.calls) == 1  # the other RG's set is not read


def test_ambiguous_and_missing_scale_sets_are_errors() -> None:
    twin = VMSS_ID.replace("np1-1", "np1-9")
    fake = _Fake({
        "clusters": [_cluster_doc(["np1", "np2"])],
        "vmss": [_vmss_doc(), _vmss_doc(resource_id=twin)],
        "vnets": [_VNET], "nsgs": [_NSG],
    })  # fmt: skip
    estate = read_estate(fake, SUB)  # type: ignore[arg-type]
    np1, np2 = estate.clusters[0].pools
    assert np1.vmss_id is None and np2.vmss_id is None
    lines = [str(e) for e in estate.errors]
    assert any("pool np1: several scale sets" in e and CLUSTER_ID in e for e in lines)
    assert any("pool np2: no scale set tagged aks-managed-poolName=np2" in e for e in lines)
    assert {(e.read, e.pool) for e in estate.errors} == {
        (Read.POOL_SCALE_SET, "np1"), (Read.POOL_SCALE_SET, "np2"),
    }  # fmt: skip
    assert not [c for c in fake.calls if c.startswith(("vms:", "nics:"))]


def test_dangling_references_are_named() -> None:
    foreign = "/subscriptions/99999999-9999-9999-9999-999999999999/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
    fake = _Fake({"clusters": [_cluster_doc(["np1"], subnet=foreign)], "vmss": [_vmss_doc()],
                  "vnets": [_VNET]})  # fmt: skip
    estate = read_estate(fake, SUB)  # type: ignore[arg-type]
    lines = [str(e) for e in estate.errors]
    assert any(f"pool np1 node subnet {foreign} not found" in e for e in lines)
    assert any("NIC NSG" in e and NSG_ID in e for e in lines)  # no NSG list entry
    assert {e.read for e in estate.errors} == {Read.NETWORK_REFERENCE}


def test_list_failing_midway_keeps_what_was_read() -> None:
    err = HttpResponseError(message="boom")
    err.status_code = 503
    fake = _Fake({"clusters": [_cluster_doc(["np1"])], "vmss": [_vmss_doc()],
                  "vnets": [_VNET, err], "nsgs": [_NSG]})  # fmt: skip
    estate = read_estate(fake, SUB)  # type: ignore[arg-type]
    assert len(estate.vnets) == 1
    assert any(str(e).startswith(f"subscription {SUB}: virtualNetworks list failed: HTTP 503")
               for e in estate.errors)  # fmt: skip
    assert estate.missing(CLUSTER_ID) == {Read.VNETS}


def test_scale_set_list_failure_is_one_line_not_one_per_pool() -> None:
    err = HttpResponseError(message="denied")
    err.status_code = 403
    fake = _Fake({"clusters": [_cluster_doc(["np1", "np2"])], "vmss": [err],
                  "vnets": [_VNET], "nsgs": [_NSG]})  # fmt: skip
    estate = read_estate(fake, SUB)  # type: ignore[arg-type]
    assert [str(e) for e in estate.errors] == [
        f"subscription {SUB}: virtualMachineScaleSets list failed: HTTP 403: denied",
    ]
    assert estate.errors[0].read is Read.SCALE_SETS and not estate.errors[0].cluster_id


def test_describe_error_other_exceptions() -> None:
    assert describe_error(RuntimeError("a\nb")) == "RuntimeError: a"
