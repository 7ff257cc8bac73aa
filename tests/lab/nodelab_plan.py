"""What the node lab will build, read from the simulator's Estate and a fault map (no I/O
beyond reading the lab file; nothing is created here).

One LabCluster per managed cluster with at least one running Linux scale-set instance; one
NodeSpec per such instance, with the addresses of its NIC(s) and the prefixes of their
subnets, as the estate serves them. The API server stand-in sits at the private endpoint's
address for a private cluster, the internal load balancer's for a VNet-integrated one, and
otherwise at the highest free address of the first node subnet.

The fault map is `{cluster name: {"<pool>/<instance id>" | "apiserver": [fault, ...]}}`. In a
lab file (tests/armsim_scenarios/nodelab.lab.json) it sits under "clusters", beside
"scenario", the scenario file it applies to. Every name is checked against the estate and the
fault registry (tests/lab/faults.py) before anything is built; errors name the file and key.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.armsim import Estate, load_estate
from tests.armsim.estate import InstanceState
from tests.lab.faults import API_FAULTS, NODE_FAULTS

__all__ = ["FaultMap", "LabCluster", "NodeSpec", "check_faults", "load_lab_file", "read_estate"]

FaultMap = Mapping[str, Mapping[str, Sequence[str]]]
_CLUSTER_TYPE = "microsoft.containerservice/managedclusters"


@dataclass(slots=True)
class NodeSpec:
    key: str  # cluster/pool/instance
    cluster: str
    pool: str
    subscription: str
    resource_group: str
    vmss: str
    instance_id: str
    computer_name: str
    os_sku: str  # Ubuntu | AzureLinux
    interfaces: list[str]  # address/prefix of every NIC IP configuration


@dataclass(slots=True)
class LabCluster:
    name: str
    subscription: str
    names: list[str]  # FQDN, private FQDN (what nodes resolve to the API server)
    api_address: str
    subnets: list[str]  # node subnet prefixes
    pod_cidr: str
    nodes: list[NodeSpec] = field(default_factory=list)
    # Running Windows nodes: no probe runs on them (the probe is bash), but their kubelet
    # listens on 10250 and every Linux node's triage tests it, as on a real cluster.
    windows: list[NodeSpec] = field(default_factory=list)

    @property
    def node_addresses(self) -> list[str]:
        return [i.split("/")[0] for n in self.nodes for i in n.interfaces]


def _props(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(doc.get("properties") or {}) if doc else {}


def _nic_interfaces(estate: Estate, vm_id: str) -> list[str]:
    out = []
    vm = _props(estate.get(vm_id))
    for ref in (vm.get("networkProfile") or {}).get("networkInterfaces", []):
        for conf in _props(estate.get(ref["id"])).get("ipConfigurations", []):
            p = conf.get("properties") or {}
            subnet = _props(estate.get((p.get("subnet") or {}).get("id", "")))
            ip, prefix = p.get("privateIPAddress"), subnet.get("addressPrefix")
            if ip and prefix:
                out.append(f"{ip}/{ipaddress.ip_network(prefix, strict=False).prefixlen}")
    return out


def _all_private_ips(estate: Estate) -> set[str]:
    ips = set()
    for doc in estate.docs.values():
        for conf in _props(doc).get("ipConfigurations", []) + _props(doc).get(
            "frontendIPConfigurations", []
        ):
            ip = (conf.get("properties") or {}).get("privateIPAddress")
            if ip:
                ips.add(ip)
    return ips


def _api_address(estate: Estate, cluster: dict[str, Any], subnets: list[str]) -> str:
    props = _props(cluster)
    nrg = props.get("nodeResourceGroup", "")
    sub = cluster["id"].split("/")[2]
    base = f"/subscriptions/{sub}/resourceGroups/{nrg}/providers/Microsoft.Network"
    if (props.get("apiServerAccessProfile") or {}).get("enableVnetIntegration"):
        lb = _props(estate.get(f"{base}/loadBalancers/kube-apiserver"))
        for fe in lb.get("frontendIPConfigurations", []):
            return str(fe["properties"]["privateIPAddress"])
    pe = _props(estate.get(f"{base}/privateEndpoints/kube-apiserver"))
    for nic in pe.get("networkInterfaces", []):
        for conf in _props(estate.get(nic["id"])).get("ipConfigurations", []):
            return str(conf["properties"]["privateIPAddress"])
    used = _all_private_ips(estate)
    net = ipaddress.ip_network(subnets[0], strict=False)
    for offset in range(net.num_addresses - 2, 3, -1):  # Azure keeps .0-.3 and the last
        candidate = str(net.network_address + offset)
        if candidate not in used:
            return candidate
    raise ValueError(f"no free address for the API server in {subnets[0]}")


def read_estate(estate: Estate) -> list[LabCluster]:
    """Clusters with their running Linux scale-set instances, in pool and instance order."""
    by_nrg: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in estate.docs.values():
        if str(doc.get("type", "")).lower() == _CLUSTER_TYPE:
            sub = doc["id"].split("/")[2].lower()
            by_nrg[(sub, _props(doc).get("nodeResourceGroup", "").lower())] = doc
    nodes: dict[str, list[InstanceState]] = {}
    windows: dict[str, list[InstanceState]] = {}
    for st in estate.instances.values():
        cluster = by_nrg.get((st.subscription.lower(), st.resource_group.lower()))
        if cluster is None or st.power_state != "running":
            continue
        kind = nodes if st.os_type == "Linux" else windows
        kind.setdefault(cluster["id"].lower(), []).append(st)
    out = []
    for doc in sorted(by_nrg.values(), key=lambda d: str(d["name"])):
        found = nodes.get(doc["id"].lower())
        if not found:
            continue
        props = _props(doc)
        profiles = {p["name"]: p for p in props.get("agentPoolProfiles", [])}
        order = list(profiles)
        specs = []
        for st in found + windows.get(doc["id"].lower(), []):
            vmss_id = st.vm_id.rsplit("/virtualMachines/", 1)[0]
            pool = ((estate.get(vmss_id) or {}).get("tags") or {}).get("aks-managed-poolName", "")
            specs.append(
                NodeSpec(
                    key=f"{doc['name']}/{pool}/{st.instance_id}", cluster=doc["name"], pool=pool,
                    subscription=st.subscription, resource_group=st.resource_group,
                    vmss=st.vmss, instance_id=st.instance_id, computer_name=st.computer_name,
                    os_sku=str(profiles.get(pool, {}).get("osSKU", "Ubuntu")),
                    interfaces=_nic_interfaces(estate, st.vm_id),
                )
            )  # fmt: skip
        specs.sort(
            key=lambda n: (order.index(n.pool) if n.pool in order else 99, int(n.instance_id))
        )
        win_vmss = {st.vmss for st in windows.get(doc["id"].lower(), [])}
        win_specs = [n for n in specs if n.vmss in win_vmss]
        specs = [n for n in specs if n.vmss not in win_vmss]
        subnets = list(dict.fromkeys(
            str(ipaddress.ip_interface(i).network) for n in specs for i in n.interfaces
        ))  # fmt: skip
        if not subnets:
            continue
        names = [n for n in (props.get("fqdn"), props.get("privateFQDN")) if n]
        net = props.get("networkProfile") or {}
        out.append(
            LabCluster(doc["name"], doc["id"].split("/")[2], names,
                       _api_address(estate, doc, subnets), subnets,
                       str(net.get("podCidr") or "10.244.0.0/16"), specs, win_specs)
        )  # fmt: skip
    return out


def check_faults(faults: FaultMap, clusters: Sequence[LabCluster], source: str = "faults") -> None:
    """ValueError naming the first unknown cluster, node key or fault (or a misplaced one)."""
    known = {c.name: c for c in clusters}
    for cname, entries in faults.items():
        cluster = known.get(cname)
        if cluster is None:
            raise ValueError(f"{source}: {cname}: no running Linux nodes of that cluster here")
        node_keys = {f"{n.pool}/{n.instance_id}": n for n in cluster.nodes}
        for key, names in entries.items():
            if isinstance(names, str) or not isinstance(names, Sequence):
                raise ValueError(f"{source}: {cname}.{key}: expected a list of fault names")
            registry: Mapping[str, object] = API_FAULTS if key == "apiserver" else NODE_FAULTS
            if key != "apiserver" and key not in node_keys:
                raise ValueError(
                    f"{source}: {cname}.{key}: not a running Linux node "
                    f"(known: apiserver, {', '.join(sorted(node_keys))})"
                )
            for name in names:
                if name not in registry:
                    raise ValueError(
                        f"{source}: {cname}.{key}: unknown fault {name!r} for "
                        f"{'the API server' if key == 'apiserver' else 'a node'} "
                        f"(known: {', '.join(sorted(registry))})"
                    )


def load_lab_file(path: str | Path) -> tuple[Estate, dict[str, dict[str, list[str]]]]:
    """The estate of the lab file's scenario and its fault map (checked against it)."""
    p = Path(path)
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or set(data) - {"comment", "scenario", "clusters"}:
        raise ValueError(f"{p}: expected keys comment, scenario, clusters")
    if not isinstance(data.get("scenario"), str):
        raise ValueError(f"{p}: scenario: expected the scenario file name")
    faults = data.get("clusters", {})
    if not isinstance(faults, dict) or not all(isinstance(v, dict) for v in faults.values()):
        raise ValueError(f"{p}: clusters: expected {{cluster: {{node key: [faults]}}}}")
    estate = load_estate(p.parent / data["scenario"])
    check_faults(faults, read_estate(estate), str(p))
    return estate, faults
