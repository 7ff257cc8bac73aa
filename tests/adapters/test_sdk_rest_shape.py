"""The installed Azure SDKs give the REST shape the inventory reads (requirements.txt floors).

shared/adapters/arm_documents reads REST names (`properties.nodeResourceGroup`,
`properties.agentPoolProfiles`) from `as_doc(model)`, which relies on `as_dict()` returning the
raw REST JSON. Only the typespec-generated SDKs do that: azure-mgmt-containerservice >= 41,
azure-mgmt-compute >= 38, azure-mgmt-network >= 31. The older (msrest) models give flattened
snake_case dicts (`node_resource_group`), and a cluster then maps with no node resource group and
no pools: an empty inventory without any error. These tests fail when such an SDK is installed
(checked with containerservice 40.2.0, compute 37.2.0 and network 30.0.0 on the path).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.compute import models as cm
from azure.mgmt.containerservice import models as csm
from azure.mgmt.network import models as nm

from shared.adapters.arm_documents import as_doc, map_cluster, pool_profiles

ROOT = Path(__file__).resolve().parents[2]
SUB = "00000000-0000-0000-0000-000000000001"
CLUSTER_ID = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1"


def _model(cls: Any, rest: dict[str, Any]) -> object:
    """An SDK model holding the REST document `rest`, the way the SDK's own deserializer makes
    it: typespec models take the JSON mapping, msrest models have `deserialize`."""
    deserialize = getattr(cls, "deserialize", None)
    return deserialize(rest) if callable(deserialize) else cls(rest)


CLUSTER = {
    "id": CLUSTER_ID,
    "name": "c1",
    "location": "westeurope",
    "properties": {
        "nodeResourceGroup": "MC_rg_c1_westeurope",
        "agentPoolProfiles": [{"name": "nodepool1", "count": 2, "vmSize": "Standard_D2s_v5"}],
        "networkProfile": {"networkPlugin": "azure", "outboundType": "loadBalancer"},
    },
}
SCALE_SET = {
    "location": "westeurope",
    "properties": {
        "virtualMachineProfile": {
            "networkProfile": {
                "networkInterfaceConfigurations": [{"name": "nic", "properties": {"primary": True}}]
            }
        }
    },
}
NSG = {
    "location": "westeurope",
    "properties": {
        "securityRules": [
            {"name": "deny-443", "properties": {"destinationPortRange": "443", "access": "Deny"}}
        ]
    },
}


@pytest.mark.parametrize(
    ("cls", "rest"),
    [
        (csm.ManagedCluster, CLUSTER),
        (cm.VirtualMachineScaleSet, SCALE_SET),
        (nm.NetworkSecurityGroup, NSG),
    ],
    ids=["containerservice", "compute", "network"],
)
def test_as_doc_of_an_sdk_model_is_the_rest_document(cls: Any, rest: dict[str, Any]) -> None:
    doc = as_doc(_model(cls, rest))
    assert doc == rest, (
        f"{cls.__module__} returns {sorted(doc)} from as_dict(), not the REST shape: "
        "requirements.txt's floor for this SDK is too low"
    )


def test_a_cluster_model_maps_with_its_node_resource_group_and_pools() -> None:
    doc = as_doc(_model(csm.ManagedCluster, CLUSTER))
    assert [p["name"] for p in pool_profiles(doc)] == ["nodepool1"]
    cluster = map_cluster(doc, SUB, ())
    assert cluster.node_resource_group == "MC_rg_c1_westeurope"


def _requirements() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
            found[name.lower()] = line[len(name) :].strip()
    return found


def test_requirements_floor_the_rest_shape_sdks_and_bound_every_package() -> None:
    reqs = _requirements()
    assert "azure-core" in reqs  # imported directly (exceptions, credentials, pipeline)
    floors = {
        "azure-mgmt-containerservice": (41,),
        "azure-mgmt-compute": (38,),
        "azure-mgmt-network": (31,),
        "azure-storage-queue": (12, 15),  # 12.12-12.14 refuse UseDevelopmentStorage=true
    }
    for name, spec in reqs.items():
        floor = re.search(r">=\s*([0-9.]+)", spec)
        bound = re.search(r"<\s*([0-9.]+)", spec)
        assert floor and bound, f"requirements.txt: {name} needs a floor and an upper bound"
        if name in floors:
            low = tuple(int(part) for part in floor.group(1).split("."))
            assert low >= floors[name], f"requirements.txt: {name} floor {floor.group(1)}"
