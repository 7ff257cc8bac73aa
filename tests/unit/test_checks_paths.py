"""The scan's NSG path checks over a hand-built estate: pairs, segments, egress, coverage."""

from __future__ import annotations

import ipaddress
from typing import Any

from shared.analysis.findings import Cause, Kind, Origin
from shared.checks.paths import PathChecker
from shared.checks.segments import nsg_boundaries, segments
from shared.inventory.model import (
    AgentPool,
    Cluster,
    Estate,
    Instance,
    NsgDocument,
    PowerState,
    Subnet,
    VirtualNetwork,
)

SUB = "00000000-0000-0000-0000-0000000000aa"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network"
VNET_ID = f"{RG}/virtualNetworks/vnet-spoke"
SYS_SUBNET = f"{VNET_ID}/subnets/snet-system"
USER_SUBNET = f"{VNET_ID}/subnets/snet-user"
POD_SUBNET = f"{VNET_ID}/subnets/snet-pods"
APISERVER_SUBNET = f"{VNET_ID}/subnets/snet-apiserver"
NSG_SUBNET = f"{RG}/networkSecurityGroups/nsg-user"
NSG_NIC = f"{RG}/networkSecurityGroups/aks-agentpool-1-nsg"


def rule(
    name: str, priority: int, access: str, direction: str = "Inbound", **props: Any
) -> dict[str, Any]:
    base = {
        "protocol": "Tcp",
        "sourcePortRange": "*",
        "destinationPortRange": "*",
        "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*",
        "access": access,
        "priority": priority,
        "direction": direction,
    }
    base.update(props)
    return {"name": name, "properties": base}


def nsg(nsg_id: str, *rules: dict[str, Any]) -> NsgDocument:
    name = nsg_id.rsplit("/", 1)[1]
    return NsgDocument(
        nsg_id, name, {"id": nsg_id, "name": name, "properties": {"securityRules": list(rules)}}
    )


def pool(
    name: str, subnet: str, os_type: str = "Linux", pod_subnet: str | None = None, count: int = 2
) -> AgentPool:
    return AgentPool(
        name=name, mode="User", os_type=os_type, pool_type="VirtualMachineScaleSets", count=count,
        min_count=None, max_count=None, max_surge="", node_subnet_id=subnet, pod_subnet_id=pod_subnet,
        nic_nsg_id=NSG_NIC,
        instances=(Instance("0", f"{name}_0", f"{name}000000", PowerState.RUNNING, ("10.1.0.4",)),),
    )  # fmt: skip


def cluster(*pools: AgentPool, **changes: Any) -> Cluster:
    fields: dict[str, Any] = dict(
        id=f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks1",
        name="aks1", subscription=SUB, resource_group="rg-aks", location="westeurope",
        node_resource_group="rg-aks-nodes", outbound_type="loadBalancer", private_cluster=False,
        vnet_integration=False, api_server_subnet_id=None, fqdn="aks1-abc.hcp.westeurope.azmk8s.io",
        private_fqdn=None, network_plugin="azure", network_plugin_mode="overlay", pod_cidr=None,
        restriction_level="Unrestricted", power_state="Running", pools=pools,
    )  # fmt: skip
    fields.update(changes)
    return Cluster(**fields)


def estate(*nsgs: NsgDocument, user_nsg: str | None = NSG_SUBNET) -> Estate:
    subnets = (
        Subnet(SYS_SUBNET, "snet-system", ("10.1.0.0/24",), None, None, None),
        Subnet(USER_SUBNET, "snet-user", ("10.1.1.0/24",), user_nsg, None, None),
        Subnet(POD_SUBNET, "snet-pods", ("10.1.64.0/18",), None, None, None),
        Subnet(APISERVER_SUBNET, "snet-apiserver", ("10.1.2.0/28",), None, None, None),
    )
    vnet = VirtualNetwork(
        VNET_ID, "vnet-spoke", "westeurope", ("10.1.0.0/16",), ("10.50.0.0/16",), subnets
    )
    return Estate(SUB, (), (vnet,), tuple(nsgs), (), ())


SYSTEM = pool("system", SYS_SUBNET)
USER = pool("user", USER_SUBNET)
API_IP = ["20.61.14.2"]


def test_healthy_estate_has_no_findings() -> None:
    e = estate(nsg(NSG_SUBNET), nsg(NSG_NIC))
    result = PathChecker(e).check(cluster(SYSTEM, USER), API_IP)
    assert result.findings == []
    # system->system, system->user, user->system, user->user: out+in each; plus 2 egress
    assert result.flows_evaluated == 4 * 2 + 2


def test_subnet_nsg_denying_10250_from_the_other_pool() -> None:
    deny = rule(
        "deny-kubelet", 200, "Deny", destinationPortRange="10250", sourceAddressPrefix="10.1.0.0/24"
    )
    allow = rule("allow-kubelet", 300, "Allow", destinationPortRange="10250")
    e = estate(nsg(NSG_SUBNET, deny, allow), nsg(NSG_NIC))
    result = PathChecker(e).check(cluster(SYSTEM, USER), API_IP)
    assert len(result.findings) == 1
    f = result.findings[0]
    assert f.cause is Cause.NSG
    assert f.kind is Kind.PROBLEM
    assert f.subject.node_pool == "user"
    assert f.subject.resource == NSG_SUBNET
    command = f.remediation.commands[0] if f.remediation else ""
    assert "--priority 199" in command
    assert "--source-address-prefixes 10.1.0.0/24" in command  # the source subnet, not *
    assert "--destination-address-prefixes 10.1.1.0/24" in command
    assert any("pool system nodes" in line and "pool user nodes" in line for line in f.evidence)


def test_a_single_address_deny_inside_a_subnet_is_found() -> None:
    # Only one source address is denied; a check that took one address per subnet would miss it.
    deny = rule(
        "deny-one-host", 150, "Deny", destinationPortRange="10250", sourceAddressPrefix="10.1.0.77"
    )
    e = estate(nsg(NSG_SUBNET, deny), nsg(NSG_NIC))
    result = PathChecker(e).check(cluster(SYSTEM, USER), API_IP)
    assert [f.subject.node_pool for f in result.findings] == ["user"]
    assert any("10.1.0.77" in line for line in result.findings[0].evidence)


def test_nic_nsg_denying_egress_443_is_our_cause_4() -> None:
    deny = rule("deny-internet-443", 400, "Deny", "Outbound", destinationPortRange="443",
                destinationAddressPrefix="Internet")  # fmt: skip
    e = estate(nsg(NSG_SUBNET), nsg(NSG_NIC, deny))
    result = PathChecker(e).check(cluster(SYSTEM, USER), API_IP)
    assert {f.cause for f in result.findings} == {Cause.EGRESS}
    assert {f.origin for f in result.findings} == {Origin.TUNNELWATCH}
    assert {f.subject.node_pool for f in result.findings} == {"system", "user"}
    assert all("--destination-address-prefixes 20.61.14.2/32" in f.remediation.commands[0]
               for f in result.findings if f.remediation)  # fmt: skip


def test_legacy_ports_only_when_asked() -> None:
    deny = rule("deny-9000", 400, "Deny", "Outbound", destinationPortRange="9000")
    e = estate(nsg(NSG_SUBNET), nsg(NSG_NIC, deny))
    assert PathChecker(e).check(cluster(SYSTEM), API_IP).findings == []
    found = PathChecker(e, check_legacy_ports=True).check(cluster(SYSTEM), API_IP).findings
    assert [f.origin for f in found] == [Origin.ARTICLE]
    assert "9000" in found[0].title


def test_windows_pools_are_destinations_not_sources() -> None:
    win = pool("win", USER_SUBNET, os_type="Windows")
    deny_from_user = rule("deny-from-user", 200, "Deny", destinationPortRange="10250",
                          sourceAddressPrefix="10.1.1.0/24")  # fmt: skip
    e = estate(nsg(NSG_SUBNET, deny_from_user), nsg(NSG_NIC))
    # The deny only hits traffic from the user subnet, where only a Windows pool lives: no agent.
    assert PathChecker(e).check(cluster(SYSTEM, win), API_IP).findings == []


def test_pod_subnet_is_a_source_with_azure_cni_pod_subnet() -> None:
    deny = rule(
        "deny-pods", 200, "Deny", destinationPortRange="10250", sourceAddressPrefix="10.1.64.0/18"
    )
    e = estate(nsg(NSG_SUBNET, deny), nsg(NSG_NIC))
    podded = pool("system", SYS_SUBNET, pod_subnet=POD_SUBNET)
    overlay = PathChecker(e).check(cluster(podded, USER), API_IP).findings
    assert overlay == []  # overlay: pod traffic leaves with the node address
    dynamic = PathChecker(e).check(cluster(podded, USER, network_plugin_mode=""), API_IP).findings
    assert len(dynamic) == 1
    assert any("pool system pods" in line for line in dynamic[0].evidence)


def test_vnet_integration_checks_the_api_server_subnet_instead() -> None:
    deny = rule(
        "deny-apisubnet",
        200,
        "Deny",
        destinationPortRange="10250",
        sourceAddressPrefix="10.1.2.0/28",
    )
    e = estate(nsg(NSG_SUBNET, deny), nsg(NSG_NIC))
    integrated = cluster(SYSTEM, USER, vnet_integration=True, api_server_subnet_id=APISERVER_SUBNET)
    found = PathChecker(e).check(integrated, ["10.1.2.4"]).findings
    assert len(found) == 1
    assert any("API server subnet" in line for line in found[0].evidence)
    # ... and node-to-node traffic is no longer a tunnel path
    deny_nodes = rule(
        "deny-nodes", 200, "Deny", destinationPortRange="10250", sourceAddressPrefix="10.1.0.0/24"
    )
    e2 = estate(nsg(NSG_SUBNET, deny_nodes), nsg(NSG_NIC))
    assert PathChecker(e2).check(integrated, ["10.1.2.4"]).findings == []


def test_coverage_and_unknown_api_address() -> None:
    lost = pool("lost", f"{VNET_ID}/subnets/does-not-exist")
    e = estate(nsg(NSG_SUBNET), nsg(NSG_NIC))
    found = PathChecker(e).check(cluster(SYSTEM, lost), [])
    kinds = sorted((f.kind.value, f.check) for f in found.findings)
    assert kinds == [("coverage", "nsg.coverage"), ("inconclusive", "nsg.outbound")]


def test_nsg_missing_from_the_estate_is_inconclusive_not_a_crash() -> None:
    e = estate(nsg(NSG_NIC))  # the subnet NSG is referenced but was not listed
    found = PathChecker(e).check(cluster(SYSTEM, USER), API_IP).findings
    assert found
    assert all(f.kind is Kind.INCONCLUSIVE for f in found)
    assert any(NSG_SUBNET in line for f in found for line in f.evidence)


def test_segments_cut_exactly_at_rule_boundaries() -> None:
    subnet = ipaddress.ip_network("10.1.0.0/24")
    cuts = nsg_boundaries(
        [], [ipaddress.ip_network("10.1.0.64/26"), ipaddress.ip_network("10.9.0.0/16")]
    )
    segs, capped = segments(subnet, cuts)
    assert not capped
    assert [s.label() for s in segs] == [
        "10.1.0.0-10.1.0.63",
        "10.1.0.64-10.1.0.127",
        "10.1.0.128-10.1.0.255",
    ]
    assert str(segs[0].representative) == "10.1.0.4"
    many = nsg_boundaries([], [ipaddress.ip_network(f"10.1.0.{i}/32") for i in range(200)])
    segs, capped = segments(subnet, many)
    assert capped
    assert len(segs) <= 64
