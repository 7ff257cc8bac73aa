"""Microsoft.ContainerService managed clusters -> Cluster and AgentPool.

Agent pools come inline with the cluster list (`properties.agentPoolProfiles`), so the
inventory never lists agent pools per cluster. Absent fields keep the REST API's documented
default where it has one (pool type VirtualMachineScaleSets, os type Linux, restriction level
Unrestricted); otherwise they stay empty ("" / None) so the checks can say "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.adapters.arm_documents.rest import docs, integer, obj, props, text
from shared.adapters.arm_documents.scalesets import ScaleSetInfo
from shared.inventory.model import AgentPool, Cluster, Instance, resource_group_of

__all__ = ["VMSS_POOL", "load_balancer_ip_count", "map_cluster", "map_pool", "pool_profiles"]

VMSS_POOL = "VirtualMachineScaleSets"


def _str_tags(value: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def pool_profiles(cluster_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return docs(props(cluster_doc), "agentPoolProfiles")


def map_pool(
    profile: Mapping[str, Any],
    scale_set: ScaleSetInfo | None = None,
    instances: tuple[Instance, ...] = (),
) -> AgentPool:
    """One agent pool; `scale_set` fills the node subnet of AKS-managed VNets, NIC NSG, ASGs."""
    node_subnet = text(profile, "vnetSubnetID") or None
    if node_subnet is None and scale_set is not None and scale_set.subnet_ids:
        node_subnet = scale_set.subnet_ids[0]
    return AgentPool(
        name=text(profile, "name") or "",
        mode=text(profile, "mode") or "",
        os_type=text(profile, "osType") or "Linux",
        pool_type=text(profile, "type") or VMSS_POOL,
        count=integer(profile, "count") or 0,
        min_count=integer(profile, "minCount"),
        max_count=integer(profile, "maxCount"),
        max_surge=text(profile, "upgradeSettings", "maxSurge") or "",
        node_subnet_id=node_subnet,
        pod_subnet_id=text(profile, "podSubnetID") or None,
        tags=_str_tags(obj(profile, "tags")),
        vmss_id=scale_set.id if scale_set else None,
        vmss_name=scale_set.name if scale_set else None,
        nic_nsg_id=scale_set.nic_nsg_id if scale_set else None,
        asg_ids=scale_set.asg_ids if scale_set else (),
        instances=instances,
    )


def load_balancer_ip_count(lb_profile: Mapping[str, Any]) -> int | None:
    """Outbound IPs of the cluster's load balancer profile; None when it cannot be told.

    effectiveOutboundIPs is what AKS actually attached; before it is filled, the managed
    count or the list of customer IPs says the same. Customer IP *prefixes* hold an unknown
    number of addresses without reading each prefix, hence None.
    """
    effective = docs(lb_profile, "effectiveOutboundIPs")
    if effective:
        return len(effective)
    managed = integer(lb_profile, "managedOutboundIPs", "count")
    if managed is not None:
        return managed
    public = docs(lb_profile, "outboundIPs", "publicIPs")
    if public:
        return len(public)
    return None


def map_cluster(doc: Mapping[str, Any], subscription: str, pools: tuple[AgentPool, ...]) -> Cluster:
    p = props(doc)
    network = obj(p, "networkProfile")
    api = obj(p, "apiServerAccessProfile")
    lb_profile = obj(network, "loadBalancerProfile")
    resource_id = text(doc, "id") or ""
    return Cluster(
        id=resource_id,
        name=text(doc, "name") or resource_id.rsplit("/", 1)[-1],
        subscription=subscription,
        resource_group=resource_group_of(resource_id),
        location=text(doc, "location") or "",
        node_resource_group=text(p, "nodeResourceGroup") or "",
        outbound_type=text(network, "outboundType") or "",
        private_cluster=api.get("enablePrivateCluster") is True,
        vnet_integration=api.get("enableVnetIntegration") is True,
        api_server_subnet_id=text(api, "subnetId") or None,
        fqdn=text(p, "fqdn") or None,
        private_fqdn=text(p, "privateFQDN") or None,
        network_plugin=text(network, "networkPlugin") or "",
        network_plugin_mode=text(network, "networkPluginMode") or "",
        pod_cidr=text(network, "podCidr") or None,
        restriction_level=text(p, "nodeResourceGroupProfile", "restrictionLevel") or "Unrestricted",
        power_state=text(p, "powerState", "code") or "",
        pools=pools,
        tags=_str_tags(obj(doc, "tags")),
        load_balancer_outbound_ports=integer(lb_profile, "allocatedOutboundPorts"),
        load_balancer_outbound_ip_count=load_balancer_ip_count(lb_profile) if lb_profile else None,
    )
