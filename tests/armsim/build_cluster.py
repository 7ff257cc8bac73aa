"""One AKS cluster -> its documents: the managed cluster, agent pools, scale sets, instances,
NICs, the node NSG, the AKS-managed VNet (when no pool names a subnet), the outbound load
balancer or managed NAT gateway, the private endpoint of a private cluster and the internal
`kube-apiserver` load balancer of a VNet-integrated API server.
"""

from __future__ import annotations

from typing import Any

from tests.armsim.build import SubscriptionContext, link_subnet, nat_gateway
from tests.armsim.estate import InstanceState, MetricResource, norm
from tests.armsim.scenario import AgentPoolSpec, ClusterSpec, ScenarioError, SubnetSpec, VnetSpec
from tests.armsim.shapes import det_uuid, nsg_doc, public_ip_doc, rid, stable_digits

__all__ = ["build_cluster"]

_POWER_TEXT = {"running": "VM running", "stopped": "VM stopped", "deallocated": "VM deallocated",
               "starting": "VM starting", "stopping": "VM stopping",
               "deallocating": "VM deallocating"}  # fmt: skip


def build_cluster(ctx: SubscriptionContext, c: ClusterSpec) -> None:
    sub, est = ctx.sub, ctx.estate
    cluster_id = rid(sub, c.resource_group, "Microsoft.ContainerService/managedClusters", c.name)
    digits = stable_digits(cluster_id)
    nrg = c.node_resource_group
    aks_tags = {"aks-managed-cluster-name": c.name, "aks-managed-cluster-rg": c.resource_group}
    byo = any(p.subnet is not None for p in c.pools)

    nsg = est.add(nsg_doc(sub, nrg, f"aks-agentpool-{digits}-nsg", c.location, c.node_nsg_rules))
    managed_subnet: str | None = None
    if not byo:
        from tests.armsim.build import vnet

        spec = VnetSpec(f"aks-vnet-{digits}", nrg, c.location, ("10.224.0.0/12",),
                        (SubnetSpec("aks-subnet", "10.224.0.0/16", None, None, None, None),), ())  # fmt: skip
        vnet(ctx, spec)
        managed_subnet = (
            f"{rid(sub, nrg, 'Microsoft.Network/virtualNetworks', spec.name)}/subnets/aks-subnet"
        )
    pool_subnets = {p.name: ctx.resolve(p.subnet, "subnet") if p.subnet else managed_subnet
                    for p in c.pools}  # fmt: skip
    node_subnets = sorted({s for s in pool_subnets.values() if s}, key=str.lower)
    if c.node_nsg_on == "subnet":
        for s in node_subnets:
            subnet_props = _subnet_props(ctx, s, c)
            if "networkSecurityGroup" in subnet_props:
                raise ScenarioError(
                    ctx.source, f"{c.path}.nodeNsgOn: subnet {s} already has an NSG"
                )
            subnet_props["networkSecurityGroup"] = {"id": nsg["id"]}
            link_subnet(ctx, nsg["id"], s)
    if c.network_plugin == "kubenet":
        rt_id = rid(sub, nrg, "Microsoft.Network/routeTables", f"aks-agentpool-{digits}-routetable")
        est.add({"name": rt_id.rsplit("/", 1)[1], "id": rt_id, "location": c.location,
                 "type": "Microsoft.Network/routeTables", "etag": f'W/"{det_uuid(rt_id)}"',
                 "properties": {"provisioningState": "Succeeded", "routes": [], "subnets": [],
                                "disableBgpRoutePropagation": False}})  # fmt: skip
        for s in node_subnets:
            _subnet_props(ctx, s, c).setdefault("routeTable", {"id": rt_id})
            link_subnet(ctx, rt_id, s)

    backend_pools: list[str] = []
    lb_profile: dict[str, Any] | None = None
    nat_profile: dict[str, Any] | None = None
    if c.load_balancer is not None:
        backend_pools, lb_profile = _outbound_lb(ctx, c, aks_tags)
    if c.nat_gateway is not None:
        gw = nat_gateway(ctx, c.nat_gateway, aks_tags)
        for s in node_subnets:
            _subnet_props(ctx, s, c)["natGateway"] = {"id": gw["id"]}
            link_subnet(ctx, gw["id"], s)
        nat_profile = {"managedOutboundIPProfile": {"count": len(c.nat_gateway.public_ips) or 1},
                       "effectiveOutboundIPs": [{"id": p["id"]}
                                                for p in gw["properties"]["publicIpAddresses"]],
                       "idleTimeoutInMinutes": c.nat_gateway.idle_timeout}  # fmt: skip

    profiles = []
    for pool in c.pools:
        profile = _pool_profile(ctx, c, pool, pool_subnets[pool.name] if byo else None)
        profiles.append({"name": pool.name, **profile})
        est.add({"id": f"{cluster_id}/agentPools/{pool.name}", "name": pool.name,
                 "type": "Microsoft.ContainerService/managedClusters/agentPools",
                 "properties": profile})  # fmt: skip
        if pool.pool_type == "VirtualMachineScaleSets":
            subnet = pool_subnets[pool.name]
            assert subnet is not None
            nic_nsg = nsg["id"] if c.node_nsg_on == "nic" else None
            _scale_set(ctx, c, pool, digits, subnet, nic_nsg, backend_pools)

    api_access: dict[str, Any] = {"enablePrivateCluster": c.private}
    if c.private:
        api_access |= {"privateDNSZone": "system", "enablePrivateClusterPublicFQDN": False}
        _private_endpoint(ctx, c, node_subnets[0], digits)
    if c.vnet_integration:
        assert c.api_server_subnet is not None
        api_subnet = ctx.resolve(c.api_server_subnet, "subnet")
        api_access |= {"enableVnetIntegration": True, "subnetId": api_subnet}
        _apiserver_ilb(ctx, c, api_subnet, aks_tags)
    network: dict[str, Any] = {
        "networkPlugin": c.network_plugin, "outboundType": c.outbound_type,
        "loadBalancerSku": "standard", "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10",
        "serviceCidrs": ["10.0.0.0/16"], "ipFamilies": ["IPv4"],
    }  # fmt: skip
    if c.network_plugin_mode:
        network["networkPluginMode"] = c.network_plugin_mode
    if c.network_policy:
        network["networkPolicy"] = c.network_policy
    pod_cidr = c.pod_cidr or ("10.244.0.0/16" if c.network_plugin == "kubenet"
                              or c.network_plugin_mode == "overlay" else None)  # fmt: skip
    if pod_cidr:
        network |= {"podCidr": pod_cidr, "podCidrs": [pod_cidr]}
    if lb_profile is not None:
        network["loadBalancerProfile"] = lb_profile
    if nat_profile is not None:
        network["natGatewayProfile"] = nat_profile
    fqdn = c.fqdn or (None if c.private else f"{c.name}-dns-{digits}.hcp.{c.location}.azmk8s.io")
    props: dict[str, Any] = {
        "provisioningState": "Succeeded", "powerState": {"code": "Running"},
        "maxAgentPools": 100, "kubernetesVersion": c.kubernetes_version,
        "currentKubernetesVersion": c.kubernetes_version, "dnsPrefix": f"{c.name}-dns",
        "agentPoolProfiles": profiles, "nodeResourceGroup": nrg,
        "nodeResourceGroupProfile": {"restrictionLevel": c.restriction_level},
        "enableRBAC": True, "supportPlan": "KubernetesOfficial",
        "networkProfile": network, "apiServerAccessProfile": api_access,
    }  # fmt: skip
    if fqdn:
        props |= {"fqdn": fqdn, "azurePortalFQDN": fqdn.replace(".hcp.", ".portal.hcp.")}
    if c.private:
        props["privateFQDN"] = c.private_fqdn or (
            f"{c.name}-dns-{digits}.{det_uuid(cluster_id, 'pdns')}.privatelink.{c.location}.azmk8s.io"
        )
    est.add({
        "id": cluster_id, "location": c.location, "name": c.name, "tags": c.tags,
        "type": "Microsoft.ContainerService/ManagedClusters", "eTag": det_uuid(cluster_id)[:8],
        "sku": {"name": "Base", "tier": "Free"},
        "identity": {"type": "SystemAssigned", "principalId": det_uuid(cluster_id, "p"),
                     "tenantId": "00000000-0000-0000-0000-000000000000"},
        "properties": props,
    })  # fmt: skip


_IMAGES = {"Ubuntu": "AKSUbuntu-2204gen2containerd-202410.09.0",
           "AzureLinux": "AKSAzureLinux-V3gen2-202410.09.0",
           "Windows2019": "AKSWindows-2019-containerd-17763.6293.240911",
           "Windows2022": "AKSWindows-2022-containerd-20348.2700.240911"}  # fmt: skip


def _subnet_props(ctx: SubscriptionContext, subnet_id: str, c: ClusterSpec) -> dict[str, Any]:
    doc = ctx.estate.get(subnet_id)
    if doc is None:
        raise ScenarioError(ctx.source, f"{c.path}: subnet {subnet_id} is not in the scenario")
    props: dict[str, Any] = doc["properties"]
    return props


def _pool_profile(
    ctx: SubscriptionContext, c: ClusterSpec, p: AgentPoolSpec, subnet: str | None
) -> dict[str, Any]:
    sku = p.os_sku or ("Windows2022" if p.os_type == "Windows" else "Ubuntu")
    prof: dict[str, Any] = {
        "count": p.count, "vmSize": p.vm_size, "osDiskSizeGB": 128, "osDiskType": "Managed",
        "maxPods": 30 if c.network_plugin == "azure" and not c.network_plugin_mode else 110,
        "type": p.pool_type, "mode": p.mode, "osType": p.os_type,
        "osSKU": sku,
        "orchestratorVersion": c.kubernetes_version,
        "currentOrchestratorVersion": c.kubernetes_version,
        "provisioningState": "Succeeded", "powerState": {"code": "Running"},
        "enableAutoScaling": p.min_count is not None, "enableNodePublicIP": False,
        "enableFIPS": False, "tags": p.tags,
        "nodeImageVersion": _IMAGES[sku],
    }  # fmt: skip
    if subnet:
        prof["vnetSubnetID"] = subnet
    if p.pod_subnet:
        prof["podSubnetID"] = ctx.resolve(p.pod_subnet, "subnet")
    if p.min_count is not None:
        prof |= {"minCount": p.min_count, "maxCount": p.max_count}
    if p.max_surge is not None:
        prof["upgradeSettings"] = {"maxSurge": p.max_surge}
    return prof


def _outbound_lb(
    ctx: SubscriptionContext, c: ClusterSpec, tags: dict[str, str]
) -> tuple[list[str], dict[str, Any]]:
    spec = c.load_balancer
    assert spec is not None
    lb_id = rid(ctx.sub, c.node_resource_group, "Microsoft.Network/loadBalancers", "kubernetes")
    frontends, pips = [], []
    for i, address in enumerate(spec.frontend_ips):
        name = det_uuid(lb_id, "fe", str(i))
        pip = public_ip_doc(ctx.sub, c.node_resource_group, name, c.location, address,
                            tags | {"aks-managed-type": "aks-slb-managed-outbound-ip"})  # fmt: skip
        fe_id = f"{lb_id}/frontendIPConfigurations/{name}"
        pip["properties"]["ipConfiguration"] = {"id": fe_id}
        ctx.estate.add(pip)
        pips.append({"id": pip["id"]})
        frontends.append({"name": name, "id": fe_id, "etag": f'W/"{det_uuid(lb_id)}"',
                          "type": "Microsoft.Network/loadBalancers/frontendIPConfigurations",
                          "properties": {"provisioningState": "Succeeded",
                                         "publicIPAddress": {"id": pip["id"]},
                                         "outboundRules": [{"id": f"{lb_id}/outboundRules/aksOutboundRule"}]}})  # fmt: skip
    pools = [f"{lb_id}/backendAddressPools/kubernetes",
             f"{lb_id}/backendAddressPools/aksOutboundBackendPool"]  # fmt: skip
    doc = {
        "name": "kubernetes", "id": lb_id, "etag": f'W/"{det_uuid(lb_id)}"', "location": c.location,
        "tags": tags, "type": "Microsoft.Network/loadBalancers",
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {
            "provisioningState": "Succeeded", "resourceGuid": det_uuid(lb_id, "guid"),
            "frontendIPConfigurations": frontends,
            "backendAddressPools": [
                {"name": p.rsplit("/", 1)[1], "id": p, "etag": f'W/"{det_uuid(lb_id)}"',
                 "type": "Microsoft.Network/loadBalancers/backendAddressPools",
                 "properties": {"provisioningState": "Succeeded"}} for p in pools],
            "loadBalancingRules": [], "probes": [], "inboundNatRules": [], "inboundNatPools": [],
            "outboundRules": [{
                "name": "aksOutboundRule", "id": f"{lb_id}/outboundRules/aksOutboundRule",
                "etag": f'W/"{det_uuid(lb_id)}"', "type": "Microsoft.Network/loadBalancers/outboundRules",
                "properties": {
                    "provisioningState": "Succeeded",
                    "allocatedOutboundPorts": spec.allocated_outbound_ports,
                    "protocol": "All", "enableTcpReset": True,
                    "idleTimeoutInMinutes": spec.idle_timeout,
                    "backendAddressPool": {"id": pools[1]},
                    "frontendIPConfigurations": [{"id": f["id"]} for f in frontends],
                },
            }],
        },
    }  # fmt: skip
    ctx.estate.add(doc)
    ctx.estate.metrics[norm(lb_id)] = MetricResource("Microsoft.Network/loadBalancers", c.location,
                                                     spec.metrics)  # fmt: skip
    profile = {"managedOutboundIPs": {"count": len(spec.frontend_ips)},
               "effectiveOutboundIPs": pips, "idleTimeoutInMinutes": spec.idle_timeout,
               "allocatedOutboundPorts": spec.allocated_outbound_ports,
               "backendPoolType": "nodeIPConfiguration"}  # fmt: skip
    return pools, profile


def _scale_set(
    ctx: SubscriptionContext, c: ClusterSpec, p: AgentPoolSpec, digits: str, subnet: str,
    nic_nsg: str | None, backend_pools: list[str],
) -> None:  # fmt: skip
    sub, nrg = ctx.sub, c.node_resource_group
    linux = p.os_type == "Linux"
    name = f"aks-{p.name}-{digits}-vmss" if linux else f"aks{p.name}"
    prefix = name if linux else f"aks{p.name}"
    vmss_id = rid(sub, nrg, "Microsoft.Compute/virtualMachineScaleSets", name)
    asgs = [{"id": ctx.resolve(a, "asg")} for a in p.asgs]
    ip_props: dict[str, Any] = {"primary": True, "subnet": {"id": subnet},
                                "privateIPAddressVersion": "IPv4",
                                "loadBalancerBackendAddressPools": [{"id": b} for b in backend_pools]}  # fmt: skip
    if asgs:
        ip_props["applicationSecurityGroups"] = asgs
    nic_conf: dict[str, Any] = {"primary": True, "enableAcceleratedNetworking": False,
                                "enableIPForwarding": True,
                                "ipConfigurations": [{"name": "ipconfig1", "properties": ip_props}]}  # fmt: skip
    if nic_nsg:
        nic_conf["networkSecurityGroup"] = {"id": nic_nsg}
    os_profile: dict[str, Any] = {"computerNamePrefix": prefix, "adminUsername": "azureuser"}
    if linux:
        os_profile["linuxConfiguration"] = {"disablePasswordAuthentication": True}
    else:
        os_profile["windowsConfiguration"] = {
            "provisionVMAgent": True,
            "enableAutomaticUpdates": False,
        }
    tags = {"aks-managed-poolName": p.name, "aks-managed-orchestrator": f"Kubernetes:{c.kubernetes_version}",
            "aks-managed-createOperationID": det_uuid(vmss_id, "op"),
            "aks-managed-creationSource": f"vmssclient-{name}", **p.tags}  # fmt: skip
    sku = {"name": p.vm_size, "tier": "Standard", "capacity": p.count}
    ctx.estate.add({
        "name": name, "id": vmss_id, "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": c.location, "tags": tags, "sku": sku,
        "properties": {
            "singlePlacementGroup": False, "orchestrationMode": "Uniform",
            "upgradePolicy": {"mode": "Manual"}, "provisioningState": "Succeeded",
            "overprovision": False, "doNotRunExtensionsOnOverprovisionedVMs": False,
            "uniqueId": det_uuid(vmss_id), "platformFaultDomainCount": 1,
            "virtualMachineProfile": {
                "osProfile": os_profile,
                "storageProfile": {"osDisk": {"createOption": "FromImage", "caching": "ReadOnly",
                                              "osType": p.os_type, "diskSizeGB": 128,
                                              "managedDisk": {"storageAccountType": "Premium_LRS"}}},
                "networkProfile": {"networkInterfaceConfigurations": [
                    {"name": name, "properties": nic_conf}]},
            },
        },
    })  # fmt: skip
    for i in range(p.count):
        spec = p.instances[i] if p.instances else None
        iid = str(i)
        vm_id = f"{vmss_id}/virtualMachines/{iid}"
        computer = f"{prefix}{_base36(i)}"
        nic_id = f"{vm_id}/networkInterfaces/{name}"
        ip = ctx.allocate_ip(subnet, spec.private_ip if spec else None)
        ctx.estate.add({
            "name": f"{name}_{iid}", "id": vm_id, "instanceId": iid, "location": c.location,
            "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines", "tags": tags,
            "sku": {"name": p.vm_size, "tier": "Standard"},
            "properties": {
                "latestModelApplied": True, "vmId": det_uuid(vm_id), "provisioningState": "Succeeded",
                "hardwareProfile": {"vmSize": p.vm_size},
                "osProfile": {"computerName": computer, "adminUsername": "azureuser"},
                "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]},
                "networkProfileConfiguration": {"networkInterfaceConfigurations": [
                    {"name": name, "properties": nic_conf}]},
            },
        })  # fmt: skip
        nic_ipconf = {"name": "ipconfig1", "id": f"{nic_id}/ipConfigurations/ipconfig1",
                      "etag": f'W/"{det_uuid(nic_id)}"',
                      "properties": {**ip_props, "privateIPAddress": ip,
                                     "privateIPAllocationMethod": "Dynamic",
                                     "provisioningState": "Succeeded"}}  # fmt: skip
        nic: dict[str, Any] = {
            "name": name, "id": nic_id, "etag": f'W/"{det_uuid(nic_id)}"', "location": c.location,
            "tags": tags,
            "properties": {
                "provisioningState": "Succeeded", "resourceGuid": det_uuid(nic_id, "guid"),
                "ipConfigurations": [nic_ipconf], "primary": True, "enableIPForwarding": True,
                "enableAcceleratedNetworking": False, "macAddress": _mac(nic_id),
                "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
                "virtualMachine": {"id": vm_id}, "nicType": "Standard",
            },
        }  # fmt: skip
        if nic_nsg:
            nic["properties"]["networkSecurityGroup"] = {"id": nic_nsg}
        ctx.estate.add(nic, aliases=(f"{vmss_id}/networkInterfaces",))
        ctx.estate.instances[norm(vm_id)] = InstanceState(
            subscription=sub, resource_group=nrg, vmss=name, instance_id=iid, vm_id=vm_id,
            name=f"{name}_{iid}", computer_name=computer, os_type=p.os_type,
            power_state=spec.power_state if spec else "running",
            restriction_level=c.restriction_level,
            stdout=spec.stdout if spec else "", stderr=spec.stderr if spec else "",
        )  # fmt: skip


def instance_view(state: InstanceState) -> dict[str, Any]:
    """`properties.instanceView` of a scale-set VM (returned with $expand=instanceView)."""
    statuses = [
        {"code": "ProvisioningState/succeeded", "level": "Info",
         "displayStatus": "Provisioning succeeded", "time": "2024-10-01T00:00:00+00:00"},
        {"code": f"PowerState/{state.power_state}", "level": "Info",
         "displayStatus": _POWER_TEXT[state.power_state]},
    ]  # fmt: skip
    return {"platformUpdateDomain": 0, "platformFaultDomain": 0, "computerName": state.computer_name,
            "osName": "ubuntu" if state.os_type == "Linux" else "Windows Server 2022 Datacenter",
            "vmAgent": {"vmAgentVersion": "2.11.1.12", "statuses": []},
            "statuses": statuses}  # fmt: skip


def _private_endpoint(ctx: SubscriptionContext, c: ClusterSpec, subnet: str, digits: str) -> None:
    nrg = c.node_resource_group
    pe_id = rid(ctx.sub, nrg, "Microsoft.Network/privateEndpoints", "kube-apiserver")
    nic_name = f"kube-apiserver.nic.{det_uuid(pe_id)}"
    nic_id = rid(ctx.sub, nrg, "Microsoft.Network/networkInterfaces", nic_name)
    ip = ctx.allocate_ip(subnet)
    ctx.estate.add({
        "name": nic_name, "id": nic_id, "location": c.location, "etag": f'W/"{det_uuid(nic_id)}"',
        "type": "Microsoft.Network/networkInterfaces",
        "properties": {
            "provisioningState": "Succeeded", "privateEndpoint": {"id": pe_id},
            "ipConfigurations": [{
                "name": "privateEndpointIpConfig", "id": f"{nic_id}/ipConfigurations/privateEndpointIpConfig",
                "properties": {"privateIPAddress": ip, "privateIPAllocationMethod": "Dynamic",
                               "subnet": {"id": subnet}, "primary": True,
                               "privateIPAddressVersion": "IPv4"}}],
        },
    })  # fmt: skip
    ctx.estate.add({
        "name": "kube-apiserver", "id": pe_id, "location": c.location,
        "type": "Microsoft.Network/privateEndpoints",
        "properties": {"provisioningState": "Succeeded", "subnet": {"id": subnet},
                       "networkInterfaces": [{"id": nic_id}],
                       "customDnsConfigs": [], "privateLinkServiceConnections": []},
    })  # fmt: skip


def _apiserver_ilb(
    ctx: SubscriptionContext, c: ClusterSpec, subnet: str, tags: dict[str, str]
) -> None:
    lb_id = rid(ctx.sub, c.node_resource_group, "Microsoft.Network/loadBalancers", "kube-apiserver")
    ip = ctx.allocate_ip(subnet)
    fe_id = f"{lb_id}/frontendIPConfigurations/kube-apiserver-frontend"
    ctx.estate.add({
        "name": "kube-apiserver", "id": lb_id, "location": c.location, "tags": tags,
        "etag": f'W/"{det_uuid(lb_id)}"', "type": "Microsoft.Network/loadBalancers",
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {
            "provisioningState": "Succeeded",
            "frontendIPConfigurations": [{
                "name": "kube-apiserver-frontend", "id": fe_id,
                "properties": {"privateIPAddress": ip, "privateIPAllocationMethod": "Static",
                               "subnet": {"id": subnet}, "privateIPAddressVersion": "IPv4"}}],
            "backendAddressPools": [], "loadBalancingRules": [], "probes": [],
            "outboundRules": [], "inboundNatRules": [],
        },
    })  # fmt: skip


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out.rjust(6, "0")


def _mac(seed: str) -> str:
    h = det_uuid(seed, "mac").replace("-", "")[:12].upper()
    return "-".join(h[i : i + 2] for i in range(0, 12, 2))
