"""REST document shapes shared by the builders: ids, NSGs with their default rules, public IPs.

Shapes follow the azure-rest-api-specs examples (see /work/shared/reference/arm-examples) and
the field names the azure-mgmt-* models deserialise.
"""

from __future__ import annotations

import uuid
import zlib
from typing import Any

__all__ = [
    "DEFAULT_RULES",
    "det_uuid",
    "nsg_doc",
    "public_ip_doc",
    "rid",
    "stable_digits",
]


def rid(sub: str, rg: str, type_path: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{type_path}/{name}"


def stable_digits(text: str) -> str:
    """AKS-style 8 digits (aks-nodepool1-12345678-vmss), stable for a given cluster id."""
    return f"{zlib.crc32(text.lower().encode()) % 10**8:08d}"


def det_uuid(*parts: str) -> str:
    """A deterministic GUID so that repeated builds of one scenario give identical documents."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "armsim:" + ":".join(p.lower() for p in parts)))


# The six default rules every NSG carries (NetworkSecurityGroupGet example).
DEFAULT_RULES: tuple[tuple[str, str, str, str, str, int, str], ...] = (
    ("AllowVnetInBound", "Allow inbound traffic from all VMs in VNET", "VirtualNetwork",
     "VirtualNetwork", "Allow", 65000, "Inbound"),
    ("AllowAzureLoadBalancerInBound", "Allow inbound traffic from azure load balancer",
     "AzureLoadBalancer", "*", "Allow", 65001, "Inbound"),
    ("DenyAllInBound", "Deny all inbound traffic", "*", "*", "Deny", 65500, "Inbound"),
    ("AllowVnetOutBound", "Allow outbound traffic from all VMs to all VMs in VNET",
     "VirtualNetwork", "VirtualNetwork", "Allow", 65000, "Outbound"),
    ("AllowInternetOutBound", "Allow outbound traffic from all VMs to Internet", "*", "Internet",
     "Allow", 65001, "Outbound"),
    ("DenyAllOutBound", "Deny all outbound traffic", "*", "*", "Deny", 65500, "Outbound"),
)  # fmt: skip


def nsg_doc(
    sub: str, rg: str, name: str, location: str, rules: tuple[dict[str, Any], ...]
) -> dict[str, Any]:
    nsg_id = rid(sub, rg, "Microsoft.Network/networkSecurityGroups", name)
    security_rules = []
    for r in rules:
        props = {"provisioningState": "Succeeded", "sourcePortRange": "*", **r["properties"]}
        security_rules.append({
            "name": r["name"], "id": f"{nsg_id}/securityRules/{r['name']}",
            "etag": f'W/"{det_uuid(nsg_id, r["name"])}"',
            "type": "Microsoft.Network/networkSecurityGroups/securityRules",
            "properties": props,
        })  # fmt: skip
    defaults = [
        {
            "name": n, "id": f"{nsg_id}/defaultSecurityRules/{n}",
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {
                "provisioningState": "Succeeded", "description": d, "protocol": "*",
                "sourcePortRange": "*", "destinationPortRange": "*", "sourceAddressPrefix": s,
                "destinationAddressPrefix": dst, "access": a, "priority": p, "direction": dr,
                "sourcePortRanges": [], "destinationPortRanges": [],
                "sourceAddressPrefixes": [], "destinationAddressPrefixes": [],
            },
        }
        for n, d, s, dst, a, p, dr in DEFAULT_RULES
    ]  # fmt: skip
    return {
        "name": name, "id": nsg_id, "etag": f'W/"{det_uuid(nsg_id)}"',
        "type": "Microsoft.Network/networkSecurityGroups", "location": location,
        "properties": {
            "provisioningState": "Succeeded", "resourceGuid": det_uuid(nsg_id, "guid"),
            "securityRules": security_rules, "defaultSecurityRules": defaults,
            "subnets": [], "networkInterfaces": [],
        },
    }  # fmt: skip


def public_ip_doc(
    sub: str, rg: str, name: str, location: str, address: str, tags: dict[str, str]
) -> dict[str, Any]:
    pip_id = rid(sub, rg, "Microsoft.Network/publicIPAddresses", name)
    return {
        "name": name, "id": pip_id, "etag": f'W/"{det_uuid(pip_id)}"', "location": location,
        "tags": tags, "type": "Microsoft.Network/publicIPAddresses",
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {
            "provisioningState": "Succeeded", "resourceGuid": det_uuid(pip_id, "guid"),
            "ipAddress": address, "publicIPAddressVersion": "IPv4",
            "publicIPAllocationMethod": "Static", "idleTimeoutInMinutes": 4, "ipTags": [],
        },
    }  # fmt: skip
