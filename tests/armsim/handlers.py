"""Route bodies: paged lists, gets, service tags, metrics and the run-command LRO.

Each returns (status, JSON payload or None, extra headers). Error bodies use the ARM shape
{"error": {"code", "message"}}.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.armsim.build_cluster import instance_view
from tests.armsim.estate import norm
from tests.armsim.metrics import MetricsQueryError, query_metrics, query_metrics_batch
from tests.armsim.routes import Route

if TYPE_CHECKING:
    from tests.armsim.server import ArmSimulator

__all__ = ["handle"]

Answer = tuple[int, Any, dict[str, str]]
_DEFAULT_TAGS = (
    ("AzureCloud", ("13.64.0.0/11", "20.0.0.0/8", "40.64.0.0/10", "52.0.0.0/8")),
    ("AzureLoadBalancer", ("168.63.129.16/32",)),
    ("AzureMonitor", ("20.36.0.0/16", "40.70.0.0/16")),
)


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"error": {"code": code, "message": message}}, {}


def _q(query: dict[str, str], key: str) -> str | None:
    for k, v in query.items():
        if k.lower() == key.lower():
            return v
    return None


def handle(
    sim: ArmSimulator, method: str, path: str, query: dict[str, str], body: bytes, route: Route
) -> Answer:
    est = sim.estate
    if route.subscription and route.subscription not in est.subscriptions:
        return _error(404, "SubscriptionNotFound",
                      f"The subscription '{route.subscription}' could not be found.")  # fmt: skip
    if route.kind in ("list", "emptyList"):
        return _list(sim, path, query, route)
    if route.kind == "get":
        doc = est.docs[route.key]
        return 200, _expand(sim, doc, query), {}
    if route.kind == "serviceTags":
        return 200, _service_tags(sim, route), {}
    if route.kind == "metrics":
        res = est.metrics.get(route.key)
        if res is None:
            return _not_found(route.key)
        try:
            doc = est.docs[route.key]
            payload = query_metrics(doc["id"], res, query, sim.now(), est.metrics_lag_minutes)
        except MetricsQueryError as e:
            return _error(400, "BadRequest", str(e))
        return 200, payload, {}
    if route.kind == "metricsBatch":
        return _metrics_batch(sim, query, body, route)
    if route.kind == "runCommand":
        return _run_command(sim, query, body, route)
    if route.kind == "lro":
        return _lro(sim, query, route)
    return _not_found(route.key)


def _metrics_batch(sim: ArmSimulator, query: dict[str, str], body: bytes, route: Route) -> Answer:
    sim.record_batch_request(query, body)
    est = sim.estate
    written = {k: est.docs[k]["id"] for k in est.metrics if k in est.docs}
    try:
        payload = query_metrics_batch(
            est.subscriptions[route.subscription], body, query, est.metrics, written, sim.now(),
            est.metrics_lag_minutes,
        )  # fmt: skip
    except MetricsQueryError as e:
        return _error(400, "BadRequest", str(e))
    return 200, payload, {}


def _not_found(key: str) -> Answer:
    parts = key.strip("/").split("/")
    rg = parts[3] if len(parts) > 3 and parts[2] == "resourcegroups" else ""
    if "providers" in parts:
        p = parts.index("providers")
        what = "/".join(parts[p + 1 :])
    else:
        what = key
    return _error(404, "ResourceNotFound",
                  f"The Resource '{what}' under resource group '{rg}' was not found. For more "
                  "details please go to https://aka.ms/ARMResourceNotFoundFix")  # fmt: skip


def _expand(sim: ArmSimulator, doc: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    expand = (_q(query, "$expand") or "").lower()
    if "instanceview" not in expand:
        return doc
    state = sim.estate.instances.get(norm(doc["id"]))
    if state is None:
        return doc
    out = copy.deepcopy(doc)
    out["properties"]["instanceView"] = instance_view(state)
    return out


def _list(sim: ArmSimulator, path: str, query: dict[str, str], route: Route) -> Answer:
    from tests.armsim.server import next_link

    items = sim.estate.lists.get(route.key, []) if route.kind == "list" else []
    size = max(1, sim.page_size_by_operation.get(route.operation, sim.page_size))
    token = _q(query, "$skipToken")
    try:
        offset = int(token) if token is not None else 0
    except ValueError:
        return _error(400, "InvalidSkipToken", f"The skip token '{token}' is not valid.")
    page = [_expand(sim, d, query) for d in items[offset : offset + size]]
    payload: dict[str, Any] = {"value": page}
    if offset + size < len(items):
        payload["nextLink"] = next_link(sim.endpoint, path, query, offset + size)
    return 200, payload, {}


def _service_tags(sim: ArmSimulator, route: Route) -> dict[str, Any]:
    sub = sim.estate.subscriptions[route.subscription]
    loc = route.key
    tags = sim.estate.service_tags.get((route.subscription, loc))
    if tags is None:
        tags = [*_DEFAULT_TAGS, (f"AzureCloud.{loc}", ("20.40.0.0/16",))]
    values = []
    for name, prefixes in tags:
        region = name.split(".", 1)[1].lower() if "." in name else ""
        values.append({
            "name": name, "id": name, "serviceTagChangeNumber": "1",
            "properties": {"changeNumber": "1", "region": region,
                           "systemService": name.split(".", 1)[0],
                           "addressPrefixes": list(prefixes), "state": "GA"},
        })  # fmt: skip
    return {"name": "Public", "id": f"/subscriptions/{sub}/providers/Microsoft.Network/serviceTags/Public",
            "type": "Microsoft.Network/serviceTags", "changeNumber": "1", "cloud": "Public",
            "values": values}  # fmt: skip


def _lockdown(sim: ArmSimulator, vm_id: str, rg: str, sub: str) -> Answer:
    action = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action"
    if sim.lockdown_error == "policy":
        return _error(403, "RequestDisallowedByPolicy",
                      f"Resource '{vm_id.rsplit('/', 1)[-1]}' was disallowed by policy. "
                      "(armsim: node resource group lockdown, restrictionLevel ReadOnly)")  # fmt: skip
    return _error(403, "AuthorizationFailed",
                  f"The client 'armsim' with object id '00000000-0000-0000-0000-000000000001' has "
                  f"permission to perform action '{action}' on scope '{vm_id}'; however, the "
                  "access is denied because of the deny assignment with name 'AKS node resource "
                  f"group lockdown' at scope '/subscriptions/{sub}/resourceGroups/{rg}'.")  # fmt: skip


def _run_command(sim: ArmSimulator, query: dict[str, str], body: bytes, route: Route) -> Answer:
    state = sim.estate.instances.get(route.key)
    if state is None:
        return _not_found(route.key)
    try:
        request = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        request = None
    if not isinstance(request, dict) or not request.get("commandId"):
        return _error(400, "InvalidParameter", "Required parameter 'commandId' is missing (null).")
    if state.restriction_level == "ReadOnly":
        return _lockdown(sim, state.vm_id, state.resource_group, state.subscription)
    if state.power_state != "running":
        return _error(409, "OperationNotAllowed",
                      f"Operation 'RunCommand' is not allowed on VM '{state.name}' since the VM "
                      f"is {state.power_state}.")  # fmt: skip
    op_id = sim.run_commands.start(state, request)
    if op_id is None:
        return _error(409, "Conflict",
                      "Run command extension execution is in progress. Please wait for "
                      "completion before invoking a run command.")  # fmt: skip
    version = _q(query, "api-version") or ""
    loc = sim.estate.docs[route.key]["location"]
    base = f"{sim.endpoint}/subscriptions/{state.subscription}/providers/Microsoft.Compute/locations/{loc}/operations/{op_id}"
    return 202, None, {
        "Azure-AsyncOperation": f"{base}?api-version={version}",
        "Location": f"{base}?monitor=true&api-version={version}",
        "retry-after-ms": str(sim.poll_delay_ms),
    }  # fmt: skip


def _lro(sim: ArmSimulator, query: dict[str, str], route: Route) -> Answer:
    polled = sim.run_commands.poll(route.key)
    if polled is None:
        return _error(404, "NotFound", f"The operation '{route.key}' was not found.")
    status, result, error = polled
    delay = {"retry-after-ms": str(sim.poll_delay_ms)}
    start = datetime.now(UTC).isoformat()
    if (_q(query, "monitor") or "").lower() == "true":  # the Location URL
        if status == "InProgress":
            return 202, None, {"Location": _self_url(sim, route, query), **delay}
        if error is not None:
            return _error(500, "VMExtensionProvisioningError", error)
        return 200, result, {}
    doc: dict[str, Any] = {"startTime": start, "status": status, "name": route.key}
    if status == "InProgress":
        return 200, doc, delay
    doc["endTime"] = datetime.now(UTC).isoformat()
    if error is not None:
        doc["error"] = {"code": "VMExtensionProvisioningError", "message": error}
    else:
        doc["properties"] = {"output": result}
    return 200, doc, {}


def _self_url(sim: ArmSimulator, route: Route, query: dict[str, str]) -> str:
    from urllib.parse import urlencode

    sub = sim.estate.subscriptions.get(route.subscription, route.subscription)
    return (f"{sim.endpoint}/subscriptions/{sub}/providers/Microsoft.Compute/locations/"
            f"armsim/operations/{route.key}?{urlencode(query)}")  # fmt: skip
