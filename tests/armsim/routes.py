"""Request path -> route kind and a stable operation name (the SDK's operation group and method).

Names follow the SDK: `managedClusters.list` (subscription-wide), `virtualMachineScaleSets.listAll`,
`virtualMachineScaleSetVMs.list`, `networkInterfaces.listVirtualMachineScaleSetNetworkInterfaces`,
`networkSecurityGroups.listAll`, `serviceTags.list`, `metrics.list`, `metrics.getBatch` (the
Azure Monitor data-plane batch, POST /subscriptions/{sub}/metrics:getBatch, served on the same
endpoint for every region), `virtualMachineScaleSetVMs.runCommand`, `runCommand.status` /
`runCommand.result` for the LRO.
Matching is case-insensitive, like ARM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.armsim.estate import Estate, norm

__all__ = ["Route", "resolve"]

_CANON = {
    t.lower(): t
    for t in (
        "managedClusters", "agentPools", "virtualMachineScaleSets", "networkSecurityGroups",
        "virtualNetworks", "subnets", "virtualNetworkPeerings", "loadBalancers", "natGateways",
        "applicationSecurityGroups", "publicIPAddresses", "routeTables", "networkInterfaces",
        "privateEndpoints",
    )
}  # fmt: skip
_CHILD = {
    ("virtualmachinescalesets", "virtualmachines"): "virtualMachineScaleSetVMs",
    ("virtualmachinescalesets", "networkinterfaces"): "networkInterfaces",
    ("virtualmachines", "networkinterfaces"): "networkInterfaces",
}
_CHILD_LIST = {
    ("virtualmachinescalesets", "networkinterfaces"):
        "networkInterfaces.listVirtualMachineScaleSetNetworkInterfaces",
    ("virtualmachines", "networkinterfaces"):
        "networkInterfaces.listVirtualMachineScaleSetVMNetworkInterfaces",
}  # fmt: skip
_SERVICE_TAGS = re.compile(
    r"^/subscriptions/([^/]+)/providers/microsoft\.network/locations/([^/]+)/servicetags$"
)
_LRO = re.compile(
    r"^/subscriptions/([^/]+)/providers/microsoft\.compute/locations/([^/]+)/operations/([^/]+)$"
)
_RUN = re.compile(r"^(/subscriptions/([^/]+)/resourcegroups/[^/]+/providers/microsoft\.compute/"
                  r"virtualmachinescalesets/[^/]+/virtualmachines/[^/]+)/runcommand$")  # fmt: skip
_METRICS = "/providers/microsoft.insights/metrics"
_METRICS_BATCH = re.compile(r"^/subscriptions/([^/]+)/metrics:getbatch$")


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # list | get | serviceTags | metrics | metricsBatch | runCommand | lro | notFound
    operation: str
    subscription: str  # lower, "" when the path names none
    key: str  # normalised path, or the resource id / location the route is about
    extra: str = ""


def _sub_of(path: str) -> str:
    m = re.match(r"^/subscriptions/([^/]+)", path)
    return m.group(1) if m else ""


def _name(kind: str, parts: list[str]) -> str:
    """Operation name for a list/get on a normalised path split into segments."""
    # parts: subscriptions S [resourcegroups RG] providers NS T [N C [M ...]]
    try:
        p = parts.index("providers")
    except ValueError:
        return f"unknown.{kind}"
    tail = parts[p + 2 :]  # T, N, C, M, ...
    if kind == "list" and len(tail) == 1:
        t = tail[0]
        canon = _CANON.get(t, t)
        rg_level = "resourcegroups" in parts[:p]
        if t == "managedclusters":
            return f"{canon}.{'listByResourceGroup' if rg_level else 'list'}"
        return f"{canon}.{'list' if rg_level else 'listAll'}"
    types = tail[0::2]
    if kind == "list":
        pair = (types[-2], types[-1])
        if pair in _CHILD_LIST:
            return _CHILD_LIST[pair]
        return f"{_CHILD.get(pair, _CANON.get(types[-1], types[-1]))}.list"
    if len(types) == 1:
        return f"{_CANON.get(types[0], types[0])}.get"
    pair = (types[-2], types[-1])
    return f"{_CHILD.get(pair, _CANON.get(types[-1], types[-1]))}.get"


def resolve(method: str, raw_path: str, estate: Estate) -> Route:
    path = norm(raw_path)
    sub = _sub_of(path)
    if path.endswith(_METRICS) and method == "GET":
        resource = path[: -len(_METRICS)]
        return Route("metrics", "metrics.list", _sub_of(resource), resource)
    if method == "POST" and (m := _METRICS_BATCH.match(path)):
        return Route("metricsBatch", "metrics.getBatch", m.group(1), m.group(1))
    if method == "GET" and (m := _SERVICE_TAGS.match(path)):
        return Route("serviceTags", "serviceTags.list", sub, m.group(2))
    if method == "GET" and (m := _LRO.match(path)):
        return Route("lro", "runCommand.status", sub, m.group(3))
    if method == "POST" and (m := _RUN.match(path)):
        return Route("runCommand", "virtualMachineScaleSetVMs.runCommand", sub, m.group(1))
    parts = path.strip("/").split("/")
    if method == "GET" and path in estate.lists:
        return Route("list", _name("list", parts), sub, path)
    if method == "GET" and path in estate.docs:
        return Route("get", _name("get", parts), sub, path)
    if method == "GET" and "providers" in parts:
        # An empty list is still a list when its parent exists (or it is subscription/RG-wide).
        p = parts.index("providers")
        tail = parts[p + 2 :]
        parent = "/" + "/".join(parts[:-1])
        if len(tail) == 1 or (len(tail) % 2 == 1 and parent in estate.docs):
            return Route("emptyList", _name("list", parts), sub, path)
        return Route("notFound", _name("get", parts), sub, path)
    return Route("notFound", f"unknown.{method.lower()}", sub, path)
