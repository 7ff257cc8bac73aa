"""Property: the inventory mappings never raise on arbitrary documents, and keep their types.

ARM adds fields, drops optional ones and (in the simulator or a proxy) may send odd values; a
mapping must turn any of that into "absent/unknown", never an exception, since one odd
resource would otherwise lose the whole subscription's scan.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.arm_documents import (
    map_cluster,
    map_instances,
    map_load_balancer,
    map_nat_gateway,
    map_nsg,
    map_pool,
    map_scale_set,
    map_vnet,
)
from shared.inventory.model import Cluster, Instance, PowerState
from tests.adapters.test_inventory_mapping import (
    SUB,
    _cluster_doc,
    _nic,
    _vm,
    _vmss_doc,
)

_KEYS = st.sampled_from([
    "id", "name", "properties", "tags", "location", "instanceId", "agentPoolProfiles",
    "networkProfile", "apiServerAccessProfile", "nodeResourceGroup", "count", "type",
    "subnets", "addressSpace", "addressPrefixes", "addressPrefix", "virtualNetworkPeerings",
    "peeringState", "remoteAddressSpace", "frontendIPConfigurations", "outboundRules",
    "ipConfigurations", "privateIPAddress", "primary", "virtualMachine", "instanceView",
    "statuses", "code", "networkInterfaceConfigurations", "virtualMachineProfile",
    "loadBalancerProfile", "effectiveOutboundIPs", "managedOutboundIPs", "publicIpAddresses",
]) | st.text(max_size=8)  # fmt: skip

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(_JSON)
def test_every_mapping_survives_random_documents(doc: Any) -> None:
    d = doc if isinstance(doc, dict) else {"properties": doc}
    assert isinstance(map_cluster(d, SUB, ()), Cluster)
    pool = map_pool(d)
    assert isinstance(pool.count, int) and isinstance(pool.max_surge, str)
    vnet = map_vnet(d)
    assert all(isinstance(p, str) for p in (*vnet.address_prefixes, *vnet.peered_prefixes))
    lb = map_load_balancer(d)
    assert all(isinstance(r.allocated_outbound_ports, int) for r in lb.outbound_rules)
    assert isinstance(map_nat_gateway(d).public_ip_count, int)
    assert isinstance(map_nsg(d).document, dict)
    assert isinstance(map_scale_set(d).asg_ids, tuple)
    for inst in map_instances([d, d], [d]):
        assert isinstance(inst, Instance) and isinstance(inst.power_state, PowerState)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    clone = copy.deepcopy(doc)
    target = clone
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return clone


_VALID = {
    "cluster": _cluster_doc(["np1", "np2"]),
    "vmss": _vmss_doc(),
    "vm": _vm("1", "running", nic="/nic/1"),
    "nic": _nic("/nic/1", None, ["10.0.0.4"]),
}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(_VALID)), st.data(), _JSON)
def test_mutations_of_valid_documents(kind: str, data: st.DataObject, value: Any) -> None:
    doc = _VALID[kind]
    path = data.draw(st.sampled_from(_paths(doc)))
    mutated = _mutate(doc, path, value)
    d = mutated if isinstance(mutated, dict) else {}
    if kind == "cluster":
        from shared.adapters.arm_documents import pool_profiles

        pools = tuple(map_pool(p) for p in pool_profiles(d))
        assert isinstance(map_cluster(d, SUB, pools), Cluster)
    elif kind == "vmss":
        ss = map_scale_set(d)
        assert all(isinstance(s, str) for s in (*ss.subnet_ids, *ss.asg_ids))
    else:
        vms = [d] if kind == "vm" else [_VALID["vm"]]
        nics = [d] if kind == "nic" else [_VALID["nic"]]
        (inst,) = map_instances(vms, nics)
        assert all(isinstance(ip, str) for ip in inst.private_ips)
