"""The ARM inventory end to end: real azure-mgmt clients over HTTPS against the ARM simulator.

Covers the inventory shapes (BYO VNet with NIC NSGs and ASGs, pod subnets, peered VNets,
Windows / empty / VirtualMachines-type pools, stopped instances, VNet-integrated API server,
user-assigned and managed NAT gateways, private clusters), paging, 429 handling, one failing
cluster not hiding the others, and the call count being fixed + per scale set.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.adapters.arm_inventory import read_estate
from shared.adapters.clients import ArmClients, RetrySettings, build_clients
from shared.analysis.nsg import parse_nsg
from shared.inventory.model import Cluster, Estate, PowerState, Read, same_id
from tests.armsim import (
    ArmSimulator,
    Failure,
    Faults,
    Throttle,
    build_estate,
    generate_estate,
    parse_scenario,
)

SUB = "22222222-2222-2222-2222-222222222222"
RG_NET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers"

_DENY_10250 = {
    "name": "deny-kubelet",
    "properties": {
        "priority": 300, "direction": "Inbound", "access": "Deny", "protocol": "Tcp",
        "sourceAddressPrefix": "10.1.64.0/18", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "10250",
    },
}  # fmt: skip

SHAPES: dict[str, Any] = {
    "subscriptions": [{
        "id": SUB,
        "asgs": [{"name": "asg-nodes", "resourceGroup": "rg-net", "location": "eastus"}],
        "nsgs": [{"name": "nsg-pods", "resourceGroup": "rg-net", "location": "eastus",
                  "rules": [_DENY_10250]}],
        "natGateways": [{"name": "natgw-user", "resourceGroup": "rg-net", "location": "eastus",
                         "publicIps": ["20.1.1.1", "20.1.1.2"], "idleTimeoutInMinutes": 10}],
        "vnets": [
            {"name": "vnet-hub", "resourceGroup": "rg-net", "location": "eastus",
             "addressSpace": ["10.0.0.0/16"],
             "subnets": [{"name": "shared", "addressPrefix": "10.0.0.0/24"}],
             "peerings": [{"name": "hub-to-spoke", "remoteVnet": "vnet-spoke",
                           "state": "Connected"}]},
            {"name": "vnet-spoke", "resourceGroup": "rg-net", "location": "eastus",
             "addressSpace": ["10.1.0.0/16"],
             "subnets": [
                 {"name": "nodes", "addressPrefix": "10.1.0.0/22", "natGateway": "natgw-user"},
                 {"name": "pods", "addressPrefix": "10.1.64.0/18", "nsg": "nsg-pods"},
                 {"name": "apiserver", "addressPrefix": "10.1.8.0/28"},
             ],
             "peerings": [
                 {"name": "spoke-to-hub", "remoteVnet": "vnet-hub", "state": "Connected"},
                 {"name": "spoke-to-old", "state": "Disconnected",
                  "remoteVnet": "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/x/providers/Microsoft.Network/virtualNetworks/old",
                  "remoteAddressSpace": ["192.168.0.0/16"]},
             ]},
        ],
        "clusters": [
            {"name": "aks-byo", "resourceGroup": "rg-app", "location": "eastus",
             "nodeResourceGroup": "custom-nodes", "outboundType": "userAssignedNATGateway",
             "networkPlugin": "azure", "apiServerVnetIntegration": True,
             "apiServerSubnet": "vnet-spoke/apiserver", "nodeNsgOn": "nic",
             "tags": {"tunnelwatch-probe": "off"},
             "agentPools": [
                 {"name": "system", "mode": "System", "count": 3,
                  "subnet": "vnet-spoke/nodes", "podSubnet": "vnet-spoke/pods",
                  "asgs": ["asg-nodes"],
                  "instances": [{"powerState": "running", "privateIp": "10.1.0.10"},
                                {"powerState": "stopped"},
                                {"powerState": "deallocated"}]},
                 {"name": "win", "mode": "User", "count": 1, "osType": "Windows",
                  "subnet": "vnet-spoke/nodes", "podSubnet": "vnet-spoke/pods"},
                 {"name": "empty", "mode": "User", "count": 0, "minCount": 0, "maxCount": 5,
                  "maxSurge": "33%", "subnet": "vnet-spoke/nodes"},
                 {"name": "vmpool", "mode": "User", "count": 2, "type": "VirtualMachines",
                  "subnet": "vnet-spoke/nodes"},
             ]},
            {"name": "aks-plain", "resourceGroup": "rg-app", "location": "westeurope",
             "networkPlugin": "kubenet", "restrictionLevel": "ReadOnly",
             "loadBalancer": {"frontendIps": ["20.2.2.1", "20.2.2.2"],
                              "allocatedOutboundPorts": 2048, "idleTimeoutInMinutes": 15},
             "agentPools": [{"name": "nodepool1", "mode": "System", "count": 2}]},
            {"name": "aks-priv", "resourceGroup": "rg-app", "location": "eastus",
             "nodeResourceGroup": "rg-priv-nodes", "privateCluster": True, "networkPluginMode": "overlay",
             "outboundType": "managedNATGateway",
             "natGateway": {"publicIps": ["20.3.3.3"]},
             "agentPools": [{"name": "system", "mode": "System", "count": 1}]},
        ],
    }],
}  # fmt: skip


@pytest.fixture(scope="module")
def shapes_sim() -> Iterator[ArmSimulator]:
    with ArmSimulator(build_estate(parse_scenario(SHAPES, source="shapes"))) as sim:
        yield sim


def _clients(sim: ArmSimulator, sub: str = SUB, retry: RetrySettings | None = None) -> ArmClients:
    return build_clients(
        sim.credential(), sub, arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path, retry=retry
    )


@pytest.fixture(scope="module")
def shapes(shapes_sim: ArmSimulator) -> Estate:
    return read_estate(_clients(shapes_sim), SUB)


def _cluster(estate: Estate, name: str) -> Cluster:
    (found,) = [c for c in estate.clusters if c.name == name]
    return found


# -- shapes ------------------------------------------------------------------------------------


def test_no_errors_and_every_cluster(shapes: Estate) -> None:
    assert shapes.errors == ()
    assert sorted(c.name for c in shapes.clusters) == ["aks-byo", "aks-plain", "aks-priv"]


def test_byo_vnet_pool_has_subnets_nic_nsg_asgs(shapes: Estate) -> None:
    byo = _cluster(shapes, "aks-byo")
    assert byo.node_resource_group == "custom-nodes"
    system = next(p for p in byo.pools if p.name == "system")
    assert (
        system.node_subnet_id
        == f"{RG_NET}/Microsoft.Network/virtualNetworks/vnet-spoke/subnets/nodes"
    )
    assert system.pod_subnet_id is not None and system.pod_subnet_id.endswith("/subnets/pods")
    assert system.nic_nsg_id is not None and "aks-agentpool-" in system.nic_nsg_id
    assert shapes.nsg(system.nic_nsg_id) is not None
    assert system.asg_ids == (f"{RG_NET}/Microsoft.Network/applicationSecurityGroups/asg-nodes",)
    assert system.vmss_name is not None and system.vmss_name.startswith("aks-system-")
    assert all(i.nic_nsg_id == system.nic_nsg_id for i in system.instances)


def test_stopped_and_deallocated_instances(shapes: Estate) -> None:
    system = next(p for p in _cluster(shapes, "aks-byo").pools if p.name == "system")
    states = [(i.instance_id, i.power_state) for i in system.instances]
    assert states == [
        ("0", PowerState.RUNNING),
        ("1", PowerState.STOPPED),
        ("2", PowerState.DEALLOCATED),
    ]
    first = system.instances[0]
    assert first.private_ips == ("10.1.0.10",)
    assert first.computer_name.startswith("aks-system-") and first.name.endswith("_0")


def test_windows_empty_and_vm_pools(shapes: Estate) -> None:
    pools = {p.name: p for p in _cluster(shapes, "aks-byo").pools}
    assert pools["win"].os_type == "Windows" and pools["win"].vmss_name == "akswin"
    assert len(pools["win"].instances) == 1 and pools["win"].instances[0].private_ips
    empty = pools["empty"]
    assert (empty.count, empty.min_count, empty.max_count, empty.max_surge) == (0, 0, 5, "33%")
    assert empty.vmss_id is not None and empty.instances == ()
    vm = pools["vmpool"]
    assert vm.pool_type == "VirtualMachines" and vm.vmss_id is None and vm.instances == ()
    assert pools["system"].pool_type == "VirtualMachineScaleSets"


def test_vnet_integration_and_user_nat_gateway(shapes: Estate) -> None:
    byo = _cluster(shapes, "aks-byo")
    assert byo.vnet_integration and not byo.has_tunnel and not byo.private_cluster
    assert byo.api_server_subnet_id is not None
    assert byo.api_server_subnet_id.endswith("/subnets/apiserver")
    assert byo.outbound_type == "userAssignedNATGateway" and byo.probe_opt_out
    ilb = [lb for lb in shapes.load_balancers
           if lb.name == "kube-apiserver" and lb.resource_group == "custom-nodes"]  # fmt: skip
    assert len(ilb) == 1 and ilb[0].private_frontend_ips[0].startswith("10.1.8.")
    found = shapes.subnet(byo.pools[0].node_subnet_id)
    assert found is not None
    nat = next(n for n in shapes.nat_gateways if same_id(n.id, found[1].nat_gateway_id))
    assert (nat.name, nat.public_ip_count, nat.idle_timeout_minutes) == ("natgw-user", 2, 10)
    assert any(same_id(s, found[1].id) for s in nat.subnet_ids)


def test_peerings_only_connected(shapes: Estate) -> None:
    vnets = {v.name: v for v in shapes.vnets}
    assert vnets["vnet-spoke"].peered_prefixes == ("10.0.0.0/16",)
    assert vnets["vnet-spoke"].vnet_tag_prefixes == ("10.1.0.0/16", "10.0.0.0/16")
    assert vnets["vnet-hub"].peered_prefixes == ("10.1.0.0/16",)
    pods = shapes.subnet(f"{RG_NET}/Microsoft.Network/virtualNetworks/vnet-spoke/subnets/pods")
    assert pods is not None and pods[1].prefixes == ("10.1.64.0/18",)
    assert pods[1].nsg_id is not None and pods[1].nsg_id.endswith("/nsg-pods")


def test_managed_vnet_plain_cluster(shapes: Estate) -> None:
    plain = _cluster(shapes, "aks-plain")
    assert plain.node_resource_group == "MC_rg-app_aks-plain_westeurope"
    assert (plain.network_plugin, plain.network_plugin_mode) == ("kubenet", "")
    assert plain.pod_cidr == "10.244.0.0/16" and plain.restriction_level == "ReadOnly"
    assert plain.fqdn is not None and plain.fqdn.endswith(".hcp.westeurope.azmk8s.io")
    assert plain.load_balancer_outbound_ports == 2048
    assert plain.load_balancer_outbound_ip_count == 2
    (pool,) = plain.pools
    # AKS-managed VNet: the pool names no subnet; the scale set's IP configuration does
    assert pool.node_subnet_id is not None and "/aks-vnet-" in pool.node_subnet_id
    found = shapes.subnet(pool.node_subnet_id)
    assert found is not None and found[1].route_table_id is not None  # kubenet's route table
    assert found[1].nsg_id is not None and pool.nic_nsg_id is None
    lb = next(lb for lb in shapes.load_balancers
              if lb.name == "kubernetes" and lb.resource_group == plain.node_resource_group)  # fmt: skip
    (rule,) = lb.outbound_rules
    assert (rule.allocated_outbound_ports, rule.idle_timeout_minutes, rule.frontend_ip_count) == (
        2048, 15, 2,
    )  # fmt: skip


def test_private_cluster_with_managed_nat(shapes: Estate) -> None:
    priv = _cluster(shapes, "aks-priv")
    assert priv.private_cluster and priv.fqdn is None
    assert priv.private_fqdn is not None and ".privatelink." in priv.private_fqdn
    assert priv.outbound_type == "managedNATGateway"
    assert priv.load_balancer_outbound_ip_count is None
    managed = [n for n in shapes.nat_gateways if n.resource_group == priv.node_resource_group]
    assert len(managed) == 1 and managed[0].public_ip_count == 1
    # the tunnel dials the kube-apiserver private endpoint, found on its NIC (not through DNS)
    (ip,) = priv.api_server_private_ips
    assert ipaddress.ip_address(ip).is_private
    assert all(c.api_server_private_ips == () for c in shapes.clusters if not c.private_cluster)


def test_nsg_documents_parse(shapes: Estate) -> None:
    assert shapes.nsgs
    for doc in shapes.nsgs:
        nsg = parse_nsg(doc.document, doc.id)
        assert nsg is not None
    pods = next(d for d in shapes.nsgs if d.name == "nsg-pods")
    assert pods.document["properties"]["securityRules"][0]["name"] == "deny-kubelet"


# -- calls, paging, throttling, failures -------------------------------------------------------


def test_counter_matches_the_server(shapes_sim: ArmSimulator) -> None:
    shapes_sim.reset_calls()
    clients = _clients(shapes_sim)
    read_estate(clients, SUB)
    counts = clients.counter.snapshot()
    assert counts.total == shapes_sim.total_calls()
    # 6 lists, plus the NIC list that only a private cluster's private endpoint needs
    assert counts.subscription_wide == 7
    assert counts.requests["GET sub:networkInterfaces"] == 1
    # scale-set pools: system(3) win(1) empty(0) | nodepool1 | system -> NICs skipped for empty
    assert counts.requests["GET rg:virtualMachineScaleSets/{}/virtualMachines"] == 5
    assert counts.requests["GET rg:virtualMachineScaleSets/{}/networkInterfaces"] == 4
    assert "GET rg:managedClusters/{}" not in counts.requests


def test_paging_reads_everything(shapes: Estate) -> None:
    with ArmSimulator(build_estate(parse_scenario(SHAPES, source="shapes")), page_size=1) as sim:
        clients = _clients(sim)
        paged = read_estate(clients, SUB)
        calls = clients.counter.snapshot().requests
    assert paged == shapes
    assert calls["GET sub:managedClusters"] == 3  # one cluster per page
    assert calls["GET sub:virtualNetworks"] == len(shapes.vnets)
    system = next(p for p in _cluster(paged, "aks-byo").pools if p.name == "system")
    assert len(system.instances) == 3


def test_429_with_retry_after_is_retried_and_counted() -> None:
    faults = Faults(throttles=[Throttle("managedClusters.list", first=1, retry_after=1)])
    with ArmSimulator(build_estate(parse_scenario(SHAPES, source="shapes")), faults=faults) as sim:
        clients = _clients(sim)
        estate = read_estate(clients, SUB)
        counts = clients.counter.snapshot()
        server = sim.calls
    assert len(estate.clusters) == 3 and estate.errors == ()
    assert counts.requests["GET sub:managedClusters"] == 2 == server["managedClusters.list"]
    assert counts.throttled == {"GET sub:managedClusters": 1}


def test_retry_after_beyond_the_bound_fails_that_scale_set_only() -> None:
    faults = Faults(
        throttles=[
            Throttle(
                "virtualMachineScaleSetVMs.list",
                first=99,
                retry_after=30,
                path_contains="/custom-nodes/",
            )
        ]
    )
    retry = RetrySettings(max_retry_after=5)
    with ArmSimulator(build_estate(parse_scenario(SHAPES, source="shapes")), faults=faults) as sim:
        clients = _clients(sim, retry=retry)
        estate = read_estate(clients, SUB)
        counts = clients.counter.snapshot()
    # three scale sets of aks-byo, each asked once, none waited for
    assert counts.throttled == {"GET rg:virtualMachineScaleSets/{}/virtualMachines": 3}
    assert len(estate.errors) == 3
    assert all("cluster " in str(e) and "/managedClusters/aks-byo" in str(e)
               and "HTTP 429" in str(e) for e in estate.errors)  # fmt: skip
    assert {e.read for e in estate.errors} == {Read.INSTANCES}
    assert all(e.cluster_id == _cluster(estate, "aks-byo").id for e in estate.errors)
    assert _cluster(estate, "aks-plain").pools[0].instances


def test_one_failing_cluster_does_not_hide_the_others() -> None:
    faults = Faults(
        failures=[
            Failure(
                "networkInterfaces.listVirtualMachineScaleSetNetworkInterfaces",
                status=500,
                path_contains="/MC_rg-app_aks-plain_westeurope/",
            ),
            Failure(
                "virtualMachineScaleSetVMs.list",
                status=403,
                code="AuthorizationFailed",
                message="no access",
                path_contains="/custom-nodes/",
            ),
        ]
    )
    retry = RetrySettings(total=1, status=1, backoff_factor=0.01)
    with ArmSimulator(build_estate(parse_scenario(SHAPES, source="shapes")), faults=faults) as sim:
        estate = read_estate(_clients(sim, retry=retry), SUB)
    assert sorted(c.name for c in estate.clusters) == ["aks-byo", "aks-plain", "aks-priv"]
    priv = _cluster(estate, "aks-priv")
    assert priv.pools[0].instances and priv.pools[0].instances[0].private_ips
    plain = _cluster(estate, "aks-plain").pools[0]
    # the NIC list failed: instances and power state stay, addresses are unknown
    assert [i.power_state for i in plain.instances] == [PowerState.RUNNING] * 2
    assert all(i.private_ips == () for i in plain.instances)
    plain_errors = [str(e) for e in estate.errors if "aks-plain" in str(e)]
    assert len(plain_errors) == 1 and "NIC list failed" in plain_errors[0]
    assert "HTTP 500" in plain_errors[0]
    byo_errors = [e for e in estate.errors if "/aks-byo" in str(e)]
    assert len(byo_errors) == 3
    assert all("AuthorizationFailed" in str(e) for e in byo_errors)
    assert estate.missing(_cluster(estate, "aks-plain").id) == {Read.POOL_NICS}
    assert estate.missing(_cluster(estate, "aks-priv").id) == frozenset()


def test_cluster_list_failure_propagates() -> None:
    faults = Faults(
        failures=[Failure("managedClusters.list", status=403, code="AuthorizationFailed")]
    )
    estate = build_estate(parse_scenario(SHAPES, source="shapes"))
    with ArmSimulator(estate, faults=faults) as sim, pytest.raises(HttpResponseError) as caught:
        read_estate(_clients(sim), SUB)
    assert caught.value.status_code == 403


def test_a_failed_subscription_list_is_recorded() -> None:
    faults = Faults(
        failures=[Failure("natGateways.listAll", status=403, code="AuthorizationFailed")]
    )
    with ArmSimulator(build_estate(parse_scenario(SHAPES, source="shapes")), faults=faults) as sim:
        estate = read_estate(_clients(sim), SUB)
    assert estate.nat_gateways == ()
    assert any(str(e).startswith(f"subscription {SUB}: natGateways list failed: HTTP 403")
               for e in estate.errors)  # fmt: skip
    # a subscription-wide failure: every cluster lacks the list
    assert all(Read.NAT_GATEWAYS in estate.missing(c.id) for c in estate.clusters)
    # the node subnet's NAT gateway is now a dangling reference: said, not assumed absent
    assert any("/aks-byo" in str(e) and "NAT gateway" in str(e) for e in estate.errors)
    assert len(estate.clusters) == 3


@pytest.mark.parametrize("clusters", [3, 7])
def test_call_count_is_fixed_plus_per_scale_set(clusters: int) -> None:
    pools, page = 2, 1000
    with ArmSimulator(generate_estate(clusters, pools_per_cluster=pools, nodes_per_pool=3),
                      page_size=page) as sim:  # fmt: skip
        sub = "00000000-0000-0000-0000-00000000b001"
        clients = _clients(sim, sub)
        estate = read_estate(clients, sub)
        counts = clients.counter.snapshot()
        server_total = sim.total_calls()
    scale_sets = clusters * pools
    assert sum(len(c.pools) for c in estate.clusters) == scale_sets
    assert estate.errors == ()
    assert counts.subscription_wide == 6
    assert counts.per_resource == 2 * scale_sets
    assert counts.total == 6 + 2 * scale_sets == server_total


def test_call_count_with_paging_formula() -> None:
    clusters, page = 5, 2
    with ArmSimulator(generate_estate(clusters), page_size=page) as sim:
        sub = "00000000-0000-0000-0000-00000000b001"
        clients = _clients(sim, sub)
        estate = read_estate(clients, sub)
        counts = clients.counter.snapshot()
    assert counts.requests["GET sub:managedClusters"] == math.ceil(clusters / page)
    assert counts.requests["GET sub:networkSecurityGroups"] == math.ceil(len(estate.nsgs) / page)
    nodes = 3
    per_set_pages = math.ceil(nodes / page)
    assert counts.requests["GET rg:virtualMachineScaleSets/{}/virtualMachines"] == (
        clusters * 2 * per_set_pages
    )


def test_subscription_mismatch_is_a_programming_error(shapes_sim: ArmSimulator) -> None:
    with pytest.raises(ValueError, match="not"):
        read_estate(_clients(shapes_sim), "44444444-4444-4444-4444-444444444444")
