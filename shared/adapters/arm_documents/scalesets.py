"""Microsoft.Compute scale sets, their instances and their NICs -> inventory data.

A scale set belongs to an agent pool through two facts AKS writes: it lives in the cluster's
node resource group (read from the cluster, compared case-insensitively) and carries the tag
`aks-managed-poolName`. Instances come from the scale set's VM list with the instance view
(power state); private IPs and the NIC's own NSG come from the scale set's NIC list, because
`networkInterfaces.list_all` does not return scale-set NICs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.adapters.arm_documents.rest import docs, obj, props, ref_id, text
from shared.inventory.model import Instance, PowerState, id_key, resource_group_of

__all__ = ["POOL_TAG", "ScaleSetInfo", "map_instances", "map_scale_set", "power_state_of"]

POOL_TAG = "aks-managed-poolName"


@dataclass(frozen=True, slots=True)
class ScaleSetInfo:
    """What the inventory needs from a scale set document."""

    id: str
    name: str
    resource_group: str
    pool_name: str | None  # the aks-managed-poolName tag; None: not an AKS pool
    subnet_ids: tuple[str, ...]  # of the IP configurations, primary first
    nic_nsg_id: str | None
    asg_ids: tuple[str, ...]


def _tag(doc: Mapping[str, Any], name: str) -> str | None:
    tags = obj(doc, "tags")
    for key, value in tags.items():
        # tag names are case-insensitive in ARM
        if key.lower() == name.lower() and isinstance(value, str):
            return value
    return None


def _primary_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable order with the entry whose properties say primary=true first."""
    return sorted(items, key=lambda d: props(d).get("primary") is not True)


def map_scale_set(doc: Mapping[str, Any]) -> ScaleSetInfo:
    resource_id = text(doc, "id") or ""
    profile = obj(props(doc), "virtualMachineProfile", "networkProfile")
    nic_configs = _primary_first(docs(profile, "networkInterfaceConfigurations"))
    subnets: list[str] = []
    asgs: list[str] = []
    nsg: str | None = None
    for i, conf in enumerate(nic_configs):
        conf_props = props(conf)
        if i == 0:
            # the node's address (and the NSG the checks apply) is on the primary NIC
            nsg = ref_id(conf_props, "networkSecurityGroup")
        for ip_conf in _primary_first(docs(conf_props, "ipConfigurations")):
            ip_props = props(ip_conf)
            subnet = ref_id(ip_props, "subnet")
            if subnet:
                subnets.append(subnet)
            asgs.extend(
                a for a in (text(x, "id") for x in docs(ip_props, "applicationSecurityGroups")) if a
            )
    return ScaleSetInfo(
        id=resource_id,
        name=text(doc, "name") or resource_id.rsplit("/", 1)[-1],
        resource_group=resource_group_of(resource_id),
        pool_name=_tag(doc, POOL_TAG),
        subnet_ids=_dedupe_ids(subnets),
        nic_nsg_id=nsg,
        asg_ids=_dedupe_ids(asgs),
    )


def _dedupe_ids(ids: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for resource_id in ids:
        seen.setdefault(id_key(resource_id), resource_id)
    return tuple(seen.values())


def power_state_of(vm_doc: Mapping[str, Any]) -> PowerState:
    """`PowerState/<state>` from the instance view; UNKNOWN when absent or unrecognised."""
    view = obj(props(vm_doc), "instanceView")
    for status in docs(view, "statuses"):
        code = text(status, "code") or ""
        if code.lower().startswith("powerstate/"):
            try:
                return PowerState(code.split("/", 1)[1].lower())
            except ValueError:
                return PowerState.UNKNOWN
    return PowerState.UNKNOWN


@dataclass(frozen=True, slots=True)
class _Nic:
    id: str
    vm_id: str | None
    primary: bool
    ips: tuple[str, ...]
    nsg_id: str | None


def _nic(doc: Mapping[str, Any]) -> _Nic:
    p = props(doc)
    ips = tuple(
        ip
        for ip in (
            text(props(c), "privateIPAddress") for c in _primary_first(docs(p, "ipConfigurations"))
        )
        if ip
    )
    return _Nic(
        id=text(doc, "id") or "",
        vm_id=ref_id(p, "virtualMachine"),
        primary=p.get("primary") is True,
        ips=ips,
        nsg_id=ref_id(p, "networkSecurityGroup"),
    )


def map_instances(
    vm_docs: Iterable[Mapping[str, Any]], nic_docs: Iterable[Mapping[str, Any]] | None
) -> tuple[Instance, ...]:
    """Instances with power state and, when the NIC list was read, private IPs and NIC NSG.

    A NIC belongs to an instance when the instance's network profile names it, or when the
    NIC's `virtualMachine` reference names the instance (either side may be missing).
    """
    nics = [_nic(d) for d in (nic_docs or ())]
    by_nic_id = {id_key(n.id): n for n in nics if n.id}
    by_vm: dict[str, list[_Nic]] = {}
    for n in nics:
        if n.vm_id:
            by_vm.setdefault(id_key(n.vm_id), []).append(n)
    out: list[Instance] = []
    for vm in vm_docs:
        p = props(vm)
        vm_id = text(vm, "id") or ""
        mine: dict[str, _Nic] = {}
        for ref in docs(obj(p, "networkProfile"), "networkInterfaces"):
            found = by_nic_id.get(id_key(text(ref, "id") or ""))
            if found is not None:
                mine[id_key(found.id)] = found
        for found in by_vm.get(id_key(vm_id), []) if vm_id else []:
            mine.setdefault(id_key(found.id), found)
        ordered = sorted(mine.values(), key=lambda n: not n.primary)
        ips = tuple(dict.fromkeys(ip for n in ordered for ip in n.ips))
        computer = text(p, "osProfile", "computerName") or text(p, "instanceView", "computerName")
        out.append(
            Instance(
                instance_id=text(vm, "instanceId") or vm_id.rsplit("/", 1)[-1],
                name=text(vm, "name") or "",
                computer_name=computer or "",
                power_state=power_state_of(vm),
                private_ips=ips,
                nic_nsg_id=ordered[0].nsg_id if ordered else None,
            )
        )
    return tuple(sorted(out, key=_instance_order))


def _instance_order(instance: Instance) -> tuple[int, str]:
    # numeric instance ids sort as numbers ("10" after "9")
    iid = instance.instance_id
    # isascii: str.isdigit accepts "²", which int() refuses
    return (int(iid), "") if iid.isascii() and iid.isdigit() else (1 << 62, iid)
