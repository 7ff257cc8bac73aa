"""The estate the simulator serves: ARM resource documents indexed the way ARM addresses them.

Every document is stored under its lower-cased id (ARM ids are case-insensitive) and under the
list URLs that return it: the subscription-wide and resource-group lists of a top-level
resource, the parent's collection of a child resource, plus explicit aliases (a scale set's NICs
are listed under the scale set). The server therefore needs no per-type code for reads: a
normalised request path is either a document id or a list key. Scale-set instances, service
tags and metric series are kept beside the documents because their responses are computed per
request (instance view, filters, time windows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.armsim.scenario import MetricSeries

__all__ = ["Estate", "InstanceState", "MetricResource", "list_keys_for", "norm"]


def norm(path: str) -> str:
    """The comparable form of an ARM path: lower case, single slashes, no trailing slash."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts).lower()


def list_keys_for(resource_id: str) -> tuple[str, ...]:
    """The list URLs (normalised) under which ARM returns the resource with this id."""
    parts = norm(resource_id).strip("/").split("/")
    # subscriptions/S/resourcegroups/RG/providers/NS/T/N[/C/M]...
    if len(parts) < 8 or parts[0] != "subscriptions" or parts[4] != "providers":
        raise ValueError(f"not a resource id: {resource_id}")
    sub, ns, typ = parts[1], parts[5], parts[6]
    if len(parts) == 8:
        return (
            f"/subscriptions/{sub}/providers/{ns}/{typ}",
            f"/subscriptions/{sub}/resourcegroups/{parts[3]}/providers/{ns}/{typ}",
        )
    return ("/" + "/".join(parts[:-1]),)


@dataclass(slots=True)
class InstanceState:
    """A scale-set VM as run command and the instance view see it."""

    subscription: str
    resource_group: str
    vmss: str
    instance_id: str
    vm_id: str
    name: str
    computer_name: str
    os_type: str
    power_state: str
    restriction_level: str
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True, slots=True)
class MetricResource:
    namespace: str  # Microsoft.Network/loadBalancers
    location: str
    series: tuple[MetricSeries, ...]


@dataclass(slots=True)
class Estate:
    """Documents and lists by normalised path; build it with tests.armsim.build."""

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    subscriptions: dict[str, str] = field(default_factory=dict)  # lower -> as written
    instances: dict[str, InstanceState] = field(default_factory=dict)  # lower VM id
    service_tags: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = field(
        default_factory=dict
    )
    metrics: dict[str, MetricResource] = field(default_factory=dict)  # lower resource id
    metrics_lag_minutes: int = 0

    def add(self, doc: dict[str, Any], *, aliases: tuple[str, ...] = ()) -> dict[str, Any]:
        key = norm(doc["id"])
        if key in self.docs:
            raise ValueError(f"duplicate resource id {doc['id']}")
        self.docs[key] = doc
        for lk in (*list_keys_for(doc["id"]), *(norm(a) for a in aliases)):
            self.lists.setdefault(lk, []).append(doc)
        return doc

    def get(self, resource_id: str) -> dict[str, Any] | None:
        return self.docs.get(norm(resource_id))

    def count(self, namespace_type: str) -> int:
        """How many documents of a top-level type the estate holds (e.g. for benchmarks)."""
        suffix = "/providers/" + namespace_type.lower()
        return sum(
            len(v)
            for k, v in self.lists.items()
            if k.endswith(suffix) and "/resourcegroups/" not in k
        )
