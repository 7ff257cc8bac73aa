"""In-memory fakes of the ARM-side ports (shared/jobs/ports.py), for job tests without HTTP.

`FakeArm` serves one simulator estate (tests/armsim: a scenario file built by the same builder
the HTTPS simulator uses) to the ports a scan and the probe worker take:

    arm.inventory(sub)                         Inventory
    arm.service_tags(sub, location)            ServiceTagSource
    arm.snat_metrics(sub, targets, now=, ...)  SnatMetricsSource
    arm.calls(sub)                             ArmCallCounts
    arm.runner_for(sub).run(...)               RunCommandFor / RunCommand

The estate is mapped by the production mapping (`read_estate`) over in-memory list calls, so a
fake estate is the one the real adapter reads from the simulator (tests/contracts holds them
to it). Failures on demand use the simulator's own rules: `arm.faults.failures.append(
Failure("loadBalancers.listAll", 500))` fails the same call here and in the simulator, and
becomes what the real adapter makes of it (a ReadError, an ArmError, a RunOutcome failure).
Each call is counted by the simulator's operation name in `arm.operations`, and by the ARM
operation name the real clients' counter uses in `arm.calls(sub)`.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from azure.core.exceptions import HttpResponseError, ODataV4Format

from shared.adapters.arm_inventory import read_estate
from shared.adapters.callcount import CallCounter, CallCounts, operation_name
from shared.adapters.clients import ArmClients
from shared.adapters.metrics import LATE_MINUTES, MetricsRead, MetricsTarget
from shared.adapters.runcommand import Failure, RunOutcome
from shared.analysis.nsg import ServiceTags, load_service_tags
from shared.analysis.runcommand import split_result
from shared.errors import ArmError
from shared.inventory.model import Estate, id_key
from shared.probe.params import rendered_preamble
from tests.armsim import SCENARIOS, Faults, load_estate
from tests.armsim import Estate as SimEstate
from tests.armsim.build_cluster import instance_view
from tests.armsim.estate import InstanceState, MetricResource, norm
from tests.armsim.faults import Injected
from tests.armsim.metrics import query_metrics
from tests.armsim.routes import resolve
from tests.armsim.runcommand import format_result

__all__ = ["DEMO_SUB", "FakeArm", "FakeRunCommand", "demo_arm"]

DEMO_SUB = "11111111-1111-1111-1111-111111111111"

# What the simulator answers a location's service tags with, unless the scenario names them.
_DEFAULT_TAGS = (
    ("AzureCloud", ("13.64.0.0/11", "20.0.0.0/8", "40.64.0.0/10", "52.0.0.0/8")),
    ("AzureLoadBalancer", ("168.63.129.16/32",)),
    ("AzureMonitor", ("20.36.0.0/16", "40.70.0.0/16")),
)
# The queries the metrics adapter makes (metric names, aggregation, dimension filter).
_LB_QUERIES = (
    ("SnatConnectionCount", "Total", "ConnectionState eq '*'"),
    ("AllocatedSnatPorts,UsedSnatPorts", "Average", "BackendIPAddress eq '*'"),
)
_NAT_QUERIES = (
    ("SNATConnectionCount", "Total", "ConnectionState eq '*'"),
    ("PacketDropCount", "Total", None),
)


def _http_error(hit: Injected) -> HttpResponseError:
    """The SDK's error for an injected answer, as the real clients would raise it."""
    error = HttpResponseError(message=f"({hit.code}) {hit.message}")
    error.status_code = hit.status
    error.error = ODataV4Format({"error": {"code": hit.code, "message": hit.message}})
    return error


class _List:
    """One list call of the in-memory clients: the estate's documents under a list path."""

    def __init__(self, arm: FakeArm, sub: str) -> None:
        self._arm = arm
        self._sub = sub

    def items(self, path: str, *, expand: bool = False) -> Iterator[dict[str, Any]]:
        self._arm.answer("GET", path)
        for doc in self._arm.estate.lists.get(norm(path), []):
            state = self._arm.estate.instances.get(norm(doc["id"])) if expand else None
            if state is None:
                yield copy.deepcopy(doc)
            else:
                out = copy.deepcopy(doc)
                out["properties"]["instanceView"] = instance_view(state)
                yield out

    def subscription_list(self, namespace_type: str) -> Iterator[dict[str, Any]]:
        return self.items(f"/subscriptions/{self._sub}/providers/{namespace_type}")


class _Ops:
    """Attribute access of the SDK clients read_estate uses (container, compute, network)."""

    def __init__(self, lists: _List, sub: str) -> None:
        self._lists = lists
        self._sub = sub

    def _all(self, namespace_type: str) -> Any:
        return lambda: self._lists.subscription_list(namespace_type)

    # container.managed_clusters.list()
    @property
    def managed_clusters(self) -> Any:
        return _Attrs(list=self._all("Microsoft.ContainerService/managedClusters"))

    # compute.*
    @property
    def virtual_machine_scale_sets(self) -> Any:
        return _Attrs(list_all=self._all("Microsoft.Compute/virtualMachineScaleSets"))

    @property
    def virtual_machine_scale_set_vms(self) -> Any:
        def vms(rg: str, name: str, expand: str = "") -> Iterator[dict[str, Any]]:
            path = (
                f"/subscriptions/{self._sub}/resourceGroups/{rg}/providers/"
                f"Microsoft.Compute/virtualMachineScaleSets/{name}/virtualMachines"
            )
            return self._lists.items(path, expand="instanceview" in expand.lower())

        return _Attrs(list=vms)

    # network.*
    @property
    def virtual_networks(self) -> Any:
        return _Attrs(list_all=self._all("Microsoft.Network/virtualNetworks"))

    @property
    def network_security_groups(self) -> Any:
        return _Attrs(list_all=self._all("Microsoft.Network/networkSecurityGroups"))

    @property
    def load_balancers(self) -> Any:
        return _Attrs(list_all=self._all("Microsoft.Network/loadBalancers"))

    @property
    def nat_gateways(self) -> Any:
        return _Attrs(list_all=self._all("Microsoft.Network/natGateways"))

    @property
    def network_interfaces(self) -> Any:
        def of_scale_set(rg: str, name: str) -> Iterator[dict[str, Any]]:
            path = (
                f"/subscriptions/{self._sub}/resourceGroups/{rg}/providers/"
                f"Microsoft.Compute/virtualMachineScaleSets/{name}/networkInterfaces"
            )
            return self._lists.items(path)

        return _Attrs(
            list_all=self._all("Microsoft.Network/networkInterfaces"),
            list_virtual_machine_scale_set_network_interfaces=of_scale_set,
        )


class _Attrs:
    def __init__(self, **calls: Any) -> None:
        self.__dict__.update(calls)


class FakeRunCommand:
    """RunCommand of one subscription over the estate's instances: the simulator's answers
    (403 on a locked-down node resource group, 409 on a stopped VM or one already running a
    command, 404 on an unknown one) as the real runner's RunOutcome values."""

    def __init__(self, arm: FakeArm, subscription: str) -> None:
        self._arm = arm
        self._sub = subscription

    def run(
        self,
        node_resource_group: str,
        vmss: str,
        instance_id: str,
        script: str,
        parameters: Sequence[tuple[str, str]],
    ) -> RunOutcome:
        rendered_preamble(parameters)  # InputError for shell code, as the real one
        vm_id = (
            f"/subscriptions/{self._sub}/resourceGroups/{node_resource_group}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{instance_id}"
        )
        try:
            self._arm.answer("POST", f"{vm_id}/runCommand")
        except HttpResponseError as exc:
            hit = _injected(exc)
            return _refused(hit.status, hit.code, hit.message)
        state = self._arm.estate.instances.get(norm(vm_id))
        if state is None:
            return _refused(404, "ResourceNotFound", f"The Resource '{vm_id}' was not found.")
        if state.restriction_level == "ReadOnly":
            return _refused(
                403, "AuthorizationFailed", "denied by the node resource group lockdown"
            )
        if state.power_state != "running":
            return _refused(409, "OperationNotAllowed", f"the VM is {state.power_state}")
        if id_key(vm_id) in self._arm.busy:
            return _refused(409, "Conflict", "Run command extension execution is in progress.")
        self._arm.run_commands.append((self._sub, node_resource_group, vmss, instance_id, script,
                                       tuple(parameters)))  # fmt: skip
        doc = format_result(state.os_type, state.stdout, state.stderr)
        return RunOutcome(output=split_result(doc, f"run command on {vm_id}"))


def _injected(exc: HttpResponseError) -> Injected:
    code = (exc.error.code if exc.error is not None else "") or ""
    message = (exc.error.message if exc.error is not None else "") or ""
    return Injected(exc.status_code or 500, code, message)


_DENIED = {"AuthorizationFailed", "LinkedAuthorizationFailed", "RequestDisallowedByPolicy",
           "DenyAssignmentAuthorizationFailed", "ScopeLocked"}  # fmt: skip


def _refused(status: int, code: str, message: str) -> RunOutcome:
    """The documented classification (shared/adapters/runcommand.py)."""
    if status == 403 or code in _DENIED:
        failure = Failure.DENIED
    elif status == 409:
        failure = Failure.NOT_RUNNING if code == "OperationNotAllowed" else Failure.BUSY
    elif status == 429:
        failure = Failure.THROTTLED
    elif status == 404:
        failure = Failure.NOT_FOUND
    else:
        failure = Failure.FAILED
    return RunOutcome(failure=failure, status=status, code=code, message=message[:500])


class FakeArm:
    """The ARM-side ports over one simulator estate, in memory (see the module docstring)."""

    def __init__(self, estate: SimEstate, faults: Faults | None = None) -> None:
        self.estate = estate
        self.faults = faults or Faults()
        self.operations: Counter[str] = Counter()  # simulator operation name -> calls
        self.busy: set[str] = set()  # id_key of VMs already running a command
        self.run_commands: list[tuple[str, str, str, str, str, tuple[tuple[str, str], ...]]] = []
        self._counters: dict[str, CallCounter] = {}
        self._lock = threading.Lock()

    # -- what every call goes through -----------------------------------------------------
    def answer(self, method: str, path: str) -> None:
        """Count the call; raise the SDK's error when a fault rule fires for it."""
        route = resolve(method, path, self.estate)
        sub = route.subscription or path.strip("/").split("/")[1].lower()
        with self._lock:
            self.operations[route.operation] += 1
            counter = self._counters.setdefault(sub, CallCounter())
        counter.record_request(operation_name(method, path))
        hit = self.faults.check(route.operation, norm(path))
        if hit is not None:
            if hit.status == 429:
                counter.record_throttled(operation_name(method, path))
            raise _http_error(hit)

    # -- the ports ------------------------------------------------------------------------
    def inventory(self, subscription: str, /) -> Estate:
        clients = _Attrs(subscription=subscription, counter=CallCounter())
        lists = _List(self, subscription.lower())
        ops = _Ops(lists, subscription.lower())
        clients.container = clients.compute = clients.network = ops
        try:
            return read_estate(cast(ArmClients, clients), subscription, max_workers=1)
        except HttpResponseError as exc:
            hit = _injected(exc)
            message = f"HTTP {hit.status} {hit.code}: {hit.message}"
            raise ArmError(f"subscription {subscription}: cluster list", message,
                           kind="HttpResponseError") from None  # fmt: skip

    def service_tags(self, subscription: str, location: str, /) -> ServiceTags:
        path = (
            f"/subscriptions/{subscription}/providers/Microsoft.Network/locations/{location}/"
            "serviceTags"
        )
        try:
            self.answer("GET", path)
        except HttpResponseError as exc:
            hit = _injected(exc)
            raise ArmError(f"service tags {location}", f"HTTP {hit.status} {hit.code}: "
                           f"{hit.message}", kind="HttpResponseError") from None  # fmt: skip
        loc = location.lower()
        tags = self.estate.service_tags.get((subscription.lower(), loc))
        if tags is None:
            tags = [*_DEFAULT_TAGS, (f"AzureCloud.{loc}", ("20.40.0.0/16",))]
        values = [
            {"name": name, "id": name,
             "properties": {"region": name.split(".", 1)[1].lower() if "." in name else "",
                            "systemService": name.split(".", 1)[0],
                            "addressPrefixes": list(prefixes)}}
            for name, prefixes in tags
        ]  # fmt: skip
        return load_service_tags({"values": values}, f"service tags {location}")

    def snat_metrics(
        self,
        subscription: str,
        targets: Sequence[MetricsTarget],
        /,
        *,
        now: datetime,
        window_minutes: int,
    ) -> MetricsRead:
        end = now.replace(second=0, microsecond=0)
        start = end - timedelta(minutes=window_minutes + LATE_MINUTES)
        timespan = f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
        metrics: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for t in targets:
            key = id_key(t.resource_id)
            try:
                self.answer("GET", f"{t.resource_id}/providers/Microsoft.Insights/metrics")
            except HttpResponseError as exc:
                hit = _injected(exc)
                errors[key] = f"metrics unreadable: ({hit.code}) {hit.message}"[:320]
                continue
            namespace = "Microsoft.Network/" + ("natGateways" if t.nat_gateway else "loadBalancers")
            res = self.estate.metrics.get(norm(t.resource_id)) or MetricResource(
                namespace, t.region, ()
            )
            body: dict[str, Any] = {"timespan": timespan, "interval": "PT1M", "value": []}
            for names, aggregation, dim_filter in _NAT_QUERIES if t.nat_gateway else _LB_QUERIES:
                params = {"metricnames": names, "aggregation": aggregation,
                          "timespan": timespan, "interval": "PT1M", "top": "5000"}  # fmt: skip
                if dim_filter:
                    params["$filter"] = dim_filter
                answer = query_metrics(t.resource_id, res, params, now, 0)
                body["value"].extend(answer["value"])
            metrics[key] = body
        return MetricsRead(metrics, errors)

    def calls(self, subscription: str, /) -> CallCounts:
        with self._lock:
            counter = self._counters.setdefault(subscription.lower(), CallCounter())
        return counter.snapshot()

    def runner_for(self, subscription: str, /) -> FakeRunCommand:
        return FakeRunCommand(self, subscription)

    # -- changing the estate --------------------------------------------------------------
    def instance(self, cluster: str, pool: str, index: int = 0) -> InstanceState:
        """The `index`-th instance (by instance id) of a cluster's pool, by names."""
        node_rg = ""
        for doc in self.estate.docs.values():
            kind = str(doc.get("type", "")).lower()
            if kind == "microsoft.containerservice/managedclusters" and doc["name"] == cluster:
                node_rg = str(doc["properties"].get("nodeResourceGroup", "")).lower()
        found = sorted(
            (s for s in self.estate.instances.values()
             if s.resource_group.lower() == node_rg
             and s.vmss.lower().startswith(f"aks-{pool.lower()}-")),
            key=lambda s: int(s.instance_id),
        )  # fmt: skip
        if not found:
            raise KeyError(f"no instance of pool {pool} in cluster {cluster}")
        return found[index]


def demo_arm(scenario: str | Path = SCENARIOS / "demo.json") -> FakeArm:
    """A FakeArm over a scenario file (the demo estate unless told otherwise)."""
    return FakeArm(load_estate(scenario))
