"""The ARM simulator driven by the REAL azure-mgmt clients over HTTPS (no monkeypatching)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.network import NetworkManagementClient

from tests.armsim import SCENARIOS, ArmSimulator, Failure, Faults, Throttle, load_estate

SUB = "11111111-1111-1111-1111-111111111111"
DEMO = SCENARIOS / "demo.json"


@pytest.fixture(scope="module")
def sim() -> Iterator[ArmSimulator]:
    with ArmSimulator(load_estate(DEMO), page_size=2) as s:
        yield s


def clients(sim: ArmSimulator, **extra: Any) -> dict[str, Any]:
    kw = {**sim.client_kwargs(), **extra}
    cred = sim.credential()
    return {
        "aks": ContainerServiceClient(cred, SUB, **kw),
        "compute": ComputeManagementClient(cred, SUB, **kw),
        "network": NetworkManagementClient(cred, SUB, **kw),
        "monitor": MonitorManagementClient(cred, SUB, **kw),
    }


def test_clusters_across_pages_with_the_fields_the_scan_needs(sim: ArmSimulator) -> None:
    sim.reset_calls()
    aks = clients(sim)["aks"]
    found = {c.name: c for c in aks.managed_clusters.list()}
    assert set(found) == {"aks-healthy", "aks-shop", "aks-batch", "aks-private", "aks-egress",
                          "aks-integrated", "aks-natgw"}  # fmt: skip
    assert sim.calls["managedClusters.list"] == 4  # 7 clusters, 2 per page
    shop = found["aks-shop"].properties
    assert shop.node_resource_group == "rg-shop-nodes"
    assert shop.network_profile.outbound_type == "loadBalancer"
    assert shop.network_profile.load_balancer_profile.allocated_outbound_ports == 4000
    assert len(shop.network_profile.load_balancer_profile.effective_outbound_i_ps) == 2
    user = next(p for p in shop.agent_pool_profiles if p.name == "user")
    assert user.vnet_subnet_id.endswith("/virtualNetworks/vnet-shop/subnets/nodes-user")
    assert user.pod_subnet_id.endswith("/subnets/pods")
    assert user.tags == {"tunnelwatch-probe": "off"}
    private = found["aks-private"].properties
    assert private.api_server_access_profile.enable_private_cluster is True
    assert private.private_fqdn.endswith(".privatelink.eastus.azmk8s.io")
    assert private.fqdn is None
    assert private.node_resource_group_profile.restriction_level == "ReadOnly"
    assert private.network_profile.outbound_type == "userAssignedNATGateway"
    integrated = found["aks-integrated"].properties
    assert integrated.api_server_access_profile.enable_vnet_integration is True
    assert integrated.api_server_access_profile.subnet_id.endswith("/subnets/apiserver")
    assert {p.name: p.type for p in integrated.agent_pool_profiles}["vmpool"] == "VirtualMachines"
    healthy = found["aks-healthy"].properties
    assert healthy.network_profile.network_plugin_mode == "overlay"
    assert {p.name: p.os_type for p in healthy.agent_pool_profiles}["win1"] == "Windows"
    apps = next(p for p in healthy.agent_pool_profiles if p.name == "apps")
    assert (apps.min_count, apps.max_count, apps.upgrade_settings.max_surge) == (2, 5, "33%")
    assert found["aks-natgw"].properties.network_profile.nat_gateway_profile is not None
    pools = list(aks.agent_pools.list("rg-shop", "aks-shop"))
    assert sorted(p.name for p in pools) == ["system", "user"]
    assert sim.calls["agentPools.list"] == 1


def test_scale_sets_and_instances_with_power_state(sim: ArmSimulator) -> None:
    compute = clients(sim)["compute"]
    sets = {s.name: s for s in compute.virtual_machine_scale_sets.list_all()}
    user = next(s for s in sets.values() if s.tags["aks-managed-poolName"] == "user")
    assert user.tags["tunnelwatch-probe"] == "off"
    nic_conf = (
        user.properties.virtual_machine_profile.network_profile.network_interface_configurations[0]
    )
    ipconf = nic_conf.properties.ip_configurations[0].properties
    assert nic_conf.properties.network_security_group.id.endswith("-nsg")  # BYO: NSG on the NICs
    assert ipconf.application_security_groups[0].id.endswith("/asg-shop-web")
    assert ipconf.subnet.id.endswith("/subnets/nodes-user")
    assert "akswin1" in sets  # the Windows pool's scale set
    vms = list(compute.virtual_machine_scale_set_vms.list("rg-shop-nodes", user.name,
                                                          expand="instanceView"))  # fmt: skip
    power = {v.instance_id: [s.code for s in v.properties.instance_view.statuses] for v in vms}
    assert power["2"][-1] == "PowerState/deallocated"
    assert power["0"][-1] == "PowerState/running"
    plain = list(compute.virtual_machine_scale_set_vms.list("RG-SHOP-NODES", user.name))
    assert plain[0].properties.instance_view is None  # only with $expand=instanceView


def test_network_lists_the_scan_reads(sim: ArmSimulator) -> None:
    net = clients(sim)["network"]
    nsgs = {n.name: n for n in net.network_security_groups.list_all()}
    deny = nsgs["nsg-shop-user"].properties.security_rules[0].properties
    assert (deny.access, deny.destination_port_ranges, deny.priority) == (
        "Deny",
        ["10250", "10255"],
        300,
    )
    assert len(nsgs["nsg-shop-user"].properties.default_security_rules) == 6
    vnets = {v.name: v for v in net.virtual_networks.list_all()}
    shop = {s.name: s for s in vnets["vnet-shop"].properties.subnets}
    assert shop["nodes-user"].properties.network_security_group.id.endswith("/nsg-shop-user")
    peering = vnets["vnet-shop"].properties.virtual_network_peerings[0].properties
    assert peering.remote_address_space.address_prefixes == ["10.0.0.0/16"]
    private = vnets["vnet-private"].properties.subnets[0].properties
    assert private.nat_gateway.id.endswith("/natGateways/natgw-private")
    egress = vnets["vnet-egress"].properties.subnets[0].properties
    assert egress.route_table.id.endswith("/routeTables/rt-egress")
    sets = clients(sim)["compute"].virtual_machine_scale_sets.list_all()
    egress_set = next(s for s in sets if "rg-egress-nodes" in s.id)
    nics = list(net.network_interfaces.list_virtual_machine_scale_set_network_interfaces(
        "rg-egress-nodes", egress_set.name))  # fmt: skip
    assert len(nics) == 2
    assert all(n.properties.network_security_group.id.endswith("-nsg") for n in nics)
    assert nics[0].properties.ip_configurations[0].properties.private_ip_address == "10.50.0.4"
    lbs = {lb.id.lower(): lb for lb in net.load_balancers.list_all()}
    batch = next(lb for k, lb in lbs.items() if "mc_rg-batch" in k)
    rule = batch.properties.outbound_rules[0]
    assert (rule.name, rule.properties.allocated_outbound_ports) == ("aksOutboundRule", 1024)
    assert len(rule.properties.frontend_ip_configurations) == 1
    ilb = next(lb for k, lb in lbs.items() if "rg-platform-aks-integrated" in k
               and lb.name == "kube-apiserver")  # fmt: skip
    assert ilb.properties.frontend_ip_configurations[0].properties.private_ip_address == "10.60.8.4"
    gws = {g.name: g for g in net.nat_gateways.list_all()}
    assert len(gws["natgw-private"].properties.public_ip_addresses) == 2
    assert {a.name for a in net.application_security_groups.list_all()} == {"asg-shop-web"}
    assert any(p.properties.ip_address == "20.62.3.10" for p in net.public_ip_addresses.list_all())
    assert any(t.name == "rt-egress" for t in net.route_tables.list_all())
    tags = net.service_tags.list("eastus")
    assert "AzureCloud" in {v.name for v in tags.values_property}


def test_metrics_honour_names_filter_and_top(sim: ArmSimulator) -> None:
    c = clients(sim)
    lb = next(lb for lb in c["network"].load_balancers.list_all() if "mc_rg-batch" in lb.id.lower())
    span = "2024-05-01T10:00:00Z/2024-05-01T10:10:00Z"
    failed = c["monitor"].metrics.list(
        lb.id, timespan=span, interval="PT1M", metricnames="SnatConnectionCount",
        aggregation="Total", filter="ConnectionState eq 'Failed' and BackendIPAddress eq '*'", top=1,
    )  # fmt: skip
    series = failed.value[0].timeseries
    assert len(series) == 1  # top=1 of two backends, the larger first
    assert {m.name.value: m.value for m in series[0].metadatavalues} == {
        "connectionstate": "Failed", "backendipaddress": "10.224.0.4"}  # fmt: skip
    assert [d.total for d in series[0].data][-3:] == [22.0, 35.0, 28.0]
    ports = c["monitor"].metrics.list(
        lb.id, timespan=span, interval="PT1M", metricnames="UsedSnatPorts,AllocatedSnatPorts",
        aggregation="Average", filter="BackendIPAddress eq '10.224.0.5'", top=10,
    )  # fmt: skip
    assert [m.name.value for m in ports.value] == ["UsedSnatPorts", "AllocatedSnatPorts"]
    assert ports.value[1].timeseries[0].data[-1].average == 1024.0
    whole = c["monitor"].metrics.list(lb.id, timespan=span, metricnames="SnatConnectionCount",
                                      aggregation="Total")  # fmt: skip
    assert len(whole.value[0].timeseries) == 1  # no filter: dimensions aggregated away
    assert whole.value[0].timeseries[0].data[-1].total == 28.0 + 9.0 + 1000.0
    with pytest.raises(HttpResponseError) as bad:
        c["monitor"].metrics.list(lb.id, metricnames="NoSuchMetric")
    assert bad.value.status_code == 400


def test_run_command_lro_conflict_lockdown_and_stopped() -> None:
    gate = threading.Event()
    seen: list[tuple[str, ...]] = []

    def executor(sub: str, rg: str, vmss: str, iid: str, script: Sequence[str],
                 params: Sequence[tuple[str, str]]) -> tuple[str, str]:  # fmt: skip
        seen.append((rg, vmss, iid, *script))
        if iid == "1":
            gate.wait(10)
        return "x" * 5000 + "END", "warn"

    with ArmSimulator(load_estate(DEMO), executor=executor) as sim:
        compute = clients(sim)["compute"]
        sets = {s.name: s for s in compute.virtual_machine_scale_sets.list_all()}
        system = next(n for n, s in sets.items() if "rg-shop-nodes" in s.id
                      and s.tags["aks-managed-poolName"] == "system")  # fmt: skip
        body = {"commandId": "RunShellScript", "script": ["nc -z $1 10250"],
                "parameters": [{"name": "target", "value": "10.10.1.4"}]}  # fmt: skip
        result = compute.virtual_machine_scale_set_vms.begin_run_command(
            "rg-shop-nodes", system, "0", body).result()  # fmt: skip
        message = result.value[0].message
        assert message.startswith("Enable succeeded: \n[stdout]\n")
        out = message.split("\n[stdout]\n", 1)[1].split("\n[stderr]\n")[0]
        assert len(out.encode()) == 4096 and out.endswith("END")  # only the last 4,096 bytes
        assert message.endswith("\n[stderr]\nwarn")
        assert sim.calls["runCommand.status"] >= 2  # InProgress first, then Succeeded
        record = sim.run_command_requests[0]
        assert record.script == ("nc -z $1 10250",)
        assert record.parameters == (("target", "10.10.1.4"),)
        first = compute.virtual_machine_scale_set_vms.begin_run_command(
            "rg-shop-nodes", system, "1", body)  # fmt: skip
        with pytest.raises(HttpResponseError) as busy:
            compute.virtual_machine_scale_set_vms.begin_run_command(
                "rg-shop-nodes", system, "1", body
            )
        assert busy.value.status_code == 409 and busy.value.error.code == "Conflict"
        assert "Run command extension execution is in progress" in busy.value.error.message
        gate.set()
        assert first.result().value[0].code == "ProvisioningState/succeeded"
        user = next(n for n, s in sets.items() if "rg-shop-nodes" in s.id
                    and s.tags["aks-managed-poolName"] == "user")  # fmt: skip
        with pytest.raises(HttpResponseError) as stopped:
            compute.virtual_machine_scale_set_vms.begin_run_command(
                "rg-shop-nodes", user, "2", body
            )
        assert stopped.value.status_code == 409
        assert stopped.value.error.code == "OperationNotAllowed"
        locked = next(n for n, s in sets.items() if "rg-private-nodes" in s.id)
        with pytest.raises(HttpResponseError) as denied:
            compute.virtual_machine_scale_set_vms.begin_run_command(
                "rg-private-nodes", locked, "0", body
            )
        assert denied.value.status_code == 403 and denied.value.error.code == "AuthorizationFailed"
        win = compute.virtual_machine_scale_set_vms.begin_run_command(
            "MC_rg-web_aks-healthy_eastus", "akswin1", "0",
            {"commandId": "RunPowerShellScript", "script": ["hostname"]}).result()  # fmt: skip
        assert [v.code for v in win.value] == ["ComponentStatus/StdOut/succeeded",
                                               "ComponentStatus/StdErr/succeeded"]  # fmt: skip
        assert len(seen) == 3  # denied and stopped calls never reached the executor


def test_default_executor_returns_the_configured_output(sim: ArmSimulator) -> None:
    compute = clients(sim)["compute"]
    system = next(s.name for s in compute.virtual_machine_scale_sets.list_all()
                  if "rg-shop-nodes" in s.id and s.tags["aks-managed-poolName"] == "system")  # fmt: skip
    result = compute.virtual_machine_scale_set_vms.begin_run_command(
        "rg-shop-nodes", system, "0", {"commandId": "RunShellScript", "script": ["true"]}).result()  # fmt: skip
    assert "[stdout]\nkubelet 10250 listening\n[stderr]\n" in result.value[0].message


def test_429_with_retry_after_is_retried_by_the_sdk() -> None:
    faults = Faults(throttles=[Throttle("managedClusters.list", first=1, retry_after=1)])
    with ArmSimulator(load_estate(DEMO), faults=faults) as sim:
        names = [c.name for c in clients(sim)["aks"].managed_clusters.list()]
        assert len(names) == 7
        assert sim.calls["managedClusters.list"] == 2  # the 429, then the retry
        assert [r.status for r in sim.log] == [429, 200]


def test_failing_cluster_does_not_hide_the_others() -> None:
    faults = Faults(
        failures=[Failure("agentPools.list", path_contains="/managedClusters/aks-batch/")]
    )
    with ArmSimulator(load_estate(DEMO), faults=faults) as sim:
        aks = clients(sim, retry_total=0)["aks"]
        with pytest.raises(HttpResponseError) as failed:
            list(aks.agent_pools.list("rg-batch", "aks-batch"))
        assert failed.value.status_code == 500
        assert [p.name for p in aks.agent_pools.list("rg-private", "aks-private")] == ["system"]


def test_latency_is_added_per_operation() -> None:
    import time

    faults = Faults(latency_by_operation={"serviceTags.list": 0.3})
    with ArmSimulator(load_estate(DEMO), faults=faults) as sim:
        net = clients(sim)["network"]
        start = time.monotonic()
        net.service_tags.list("eastus")
        assert time.monotonic() - start >= 0.3  # a lower bound: sleep never returns early


def test_not_found_shape_and_case_insensitive_ids(sim: ArmSimulator) -> None:
    net = clients(sim)["network"]
    assert net.network_security_groups.get("RG-SHOP", "NSG-SHOP-USER").name == "nsg-shop-user"
    with pytest.raises(ResourceNotFoundError) as missing:
        net.network_security_groups.get("rg-shop", "nope")
    assert missing.value.error.code == "ResourceNotFound"


def test_raw_https_auth_and_ratelimit_header(sim: ArmSimulator) -> None:
    url = f"{sim.endpoint}/subscriptions/{SUB}/providers/Microsoft.ContainerService/managedClusters"
    anonymous = requests.get(
        url, params={"api-version": "2024-09-01"}, verify=sim.ca_path, timeout=10
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    headers = {"Authorization": "Bearer t"}
    a = requests.get(
        url, params={"api-version": "2024-09-01"}, headers=headers, verify=sim.ca_path, timeout=10
    )
    b = requests.get(
        url, params={"api-version": "2024-09-01"}, headers=headers, verify=sim.ca_path, timeout=10
    )
    remaining = [int(r.headers["x-ms-ratelimit-remaining-subscription-reads"]) for r in (a, b)]
    assert remaining[1] == remaining[0] - 1
    assert "nextLink" in a.json() and "$skipToken=2" in a.json()["nextLink"]
    other = requests.get(url.replace(SUB, "22222222-2222-2222-2222-222222222222"),
                         params={"api-version": "x"}, headers=headers, verify=sim.ca_path, timeout=10)  # fmt: skip
    assert other.status_code == 404 and other.json()["error"]["code"] == "SubscriptionNotFound"
