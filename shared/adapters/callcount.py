"""Counting ARM calls: an azure-core pipeline policy and the counter it feeds.

clients.py adds one `CountingPolicy` to every SDK client it builds, after the RetryPolicy, so
each HTTP attempt is seen: a page fetched through `nextLink` is one request, a 429 that the
RetryPolicy retries is two (and the 429 is also counted under `throttled`). Requests are
counted under a stable operation name derived from the method and the URL template, never from
names or ids:

    GET sub:managedClusters                                   subscription-wide list
    GET rg:managedClusters/{}                                 one cluster (a get)
    GET rg:virtualMachineScaleSets/{}/virtualMachines         one scale set's instances
    GET rg:virtualMachineScaleSets/{}/networkInterfaces       one scale set's NICs

`sub:` operations do not name a resource group: their number does not grow with the estate
(apart from paging); `rg:` ones are per resource. The scan stores `CallCounts.to_json()` with
its record; the benchmark prints `subscription_wide` and `per_resource`.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from shared.core.arm_calls import CallCounts

__all__ = ["CallCounter", "CallCounts", "CountingPolicy", "operation_name"]

# ARM paths are case-insensitive and nextLinks may come back in another casing than the SDK
# wrote: the operation name uses one canonical spelling per known segment.
_CANONICAL = {
    word.lower(): word
    for word in (
        "managedClusters",
        "agentPools",
        "virtualMachineScaleSets",
        "virtualMachines",
        "networkInterfaces",
        "ipConfigurations",
        "virtualNetworks",
        "subnets",
        "virtualNetworkPeerings",
        "networkSecurityGroups",
        "applicationSecurityGroups",
        "loadBalancers",
        "natGateways",
        "publicIPAddresses",
        "publicIPPrefixes",
        "routeTables",
        "privateEndpoints",
        "locations",
        "serviceTags",
        "operations",
        "runCommand",
        "metrics",
        "metrics:getBatch",
        "metricDefinitions",
        "resourceGroups",
    )
}


def _canon(segment: str) -> str:
    return _CANONICAL.get(segment.lower(), segment.lower())


def operation_name(method: str, url: str) -> str:
    """The stable name of an ARM request: method, scope and resource-type chain.

    Names after a type become `{}`; provider namespaces are dropped (the type says enough);
    the query string (api-version, $skipToken, $expand) is ignored, so every page of one list
    has the same name. Paths that are not ARM resource paths keep their first segment.
    """
    parts = [p for p in urlsplit(url).path.split("/") if p]
    lowered = [p.lower() for p in parts]
    if len(parts) < 2 or lowered[0] != "subscriptions":
        head = lowered[0] if parts else ""
        return f"{method.upper()} other:{head}"
    rest = parts[2:]
    scope = "sub"
    if len(rest) >= 2 and rest[0].lower() == "resourcegroups":
        scope = "rg"
        rest = rest[2:]
    chain: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i].lower() == "providers":
            i += 2  # skip "providers/<Namespace>"; a nested one (metrics) too
            continue
        chain.append(_canon(rest[i]))
        if i + 1 < len(rest) and rest[i + 1].lower() != "providers":
            chain.append("{}")
            i += 2
        else:
            i += 1
    return f"{method.upper()} {scope}:{'/'.join(chain)}"


class CallCounter:
    """Thread-safe: the inventory reads scale sets from a thread pool through shared clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._throttled: Counter[str] = Counter()

    def record_request(self, operation: str) -> None:
        with self._lock:
            self._requests[operation] += 1

    def record_throttled(self, operation: str) -> None:
        with self._lock:
            self._throttled[operation] += 1

    def snapshot(self) -> CallCounts:
        with self._lock:
            return CallCounts(dict(self._requests), dict(self._throttled))

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._throttled.clear()


class CountingPolicy(SansIOHTTPPolicy[Any, Any]):
    """Counts every HTTP attempt (place it after the RetryPolicy) and every 429 answer."""

    def __init__(self, counter: CallCounter) -> None:
        self.counter = counter

    def on_request(self, request: PipelineRequest[Any]) -> None:
        http = request.http_request
        self.counter.record_request(operation_name(http.method, http.url))

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        if response.http_response.status_code == 429:
            http = request.http_request
            self.counter.record_throttled(operation_name(http.method, http.url))
