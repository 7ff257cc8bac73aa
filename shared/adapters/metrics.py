"""SNAT metrics from Azure Monitor, returned in the REST shape shared.analysis.snat.parse_metrics
reads: `{"timespan", "interval", "namespace", "resourceregion", "value": [metric, ...]}`.

Two ways in, the same queries and the same result:

- `read_snat_metrics`: one resource through ARM (azure-mgmt-monitor `metrics.list`), two calls.
- `read_snat_metrics_batch`: many resources through the data-plane batch API
  (azure-monitor-querymetrics' MetricsClient, `POST {region endpoint}/subscriptions/{sub}/
  metrics:getBatch`, api-version 2024-02-01, body `{"resourceids": [...]}`, answer
  `{"values": [{"resourceid", "starttime", "endtime", "interval", "namespace",
  "resourceregion", "value": [metric, ...]}]}`). One call takes up to 50 resources of one
  subscription, region and resource type, so resources are grouped by those three and chunked
  by 50: a subscription's SNAT reads cost 2 calls per chunk instead of 2 per cluster, and they
  are not ARM reads (no share of ARM's read bucket). The plane throttles with 429 or 529; the
  client (clients.py) retries both, honouring Retry-After, within bounds.

Each resource costs two queries: the connection counts split by ConnectionState, and the port
(load balancer) or drop (NAT gateway) metrics, because a filter may only name dimensions every
requested metric has. `top` is set whenever a filter splits series: the service returns only 10
series by default, which would hide most nodes of a large pool (the batch API applies `top`
per resource). The batch API names its filter `filter`, not `$filter`.

The batch request goes through the client's `send_request` (its raw-request path) rather than
`query_resources`: the latter turns the answer into objects without `resourceid`, and nothing
documents that `values` follows the request's order.

Never a silent pass: a chunk whose batch call fails (unreachable, denied, throttled past the
retry budget, an answer of the wrong shape) is read per resource through ARM and the fallback
is reported in `notes`; a resource missing from a batch answer is read per resource too; a
resource that cannot be read either way is reported in `errors` and has no metrics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from shared.core.metrics import MetricsRead, MetricsTarget
from shared.inventory.model import id_key

__all__ = [
    "BATCH_API_VERSION",
    "BATCH_LIMIT",
    "LATE_MINUTES",
    "BadAnswer",
    "BatchClientFor",
    "MetricsRead",
    "MetricsTarget",
    "parse_batch_answer",
    "read_snat_metrics",
    "read_snat_metrics_batch",
]

log = logging.getLogger(__name__)
LATE_MINUTES = 3  # metrics arrive 1-3 minutes late: ask for that much more than the window
MAX_SERIES = 5000  # one series per backend IP; AKS allows 5,000 nodes per cluster
BATCH_LIMIT = 50  # resource ids per metrics:getBatch call (the API's limit)
BATCH_API_VERSION = "2024-02-01"  # what azure-monitor-querymetrics 1.0 sends

_LB_NAMESPACE = "Microsoft.Network/loadBalancers"
_NAT_NAMESPACE = "Microsoft.Network/natGateways"
_LB_QUERIES = (
    ("SnatConnectionCount", "Total", "ConnectionState eq '*'"),
    ("AllocatedSnatPorts,UsedSnatPorts", "Average", "BackendIPAddress eq '*'"),
)
_NAT_QUERIES = (
    ("SNATConnectionCount", "Total", "ConnectionState eq '*'"),
    ("PacketDropCount", "Total", None),
)

# (subscription, region) -> the batch client for that region, or None: read per resource
BatchClientFor = Callable[[str, str], MetricsClient | None]


class BadAnswer(Exception):
    """A metrics:getBatch answer that is not the documented shape."""


def _window(now: datetime, window_minutes: int) -> tuple[datetime, datetime]:
    end = now.replace(second=0, microsecond=0)
    return end - timedelta(minutes=window_minutes + LATE_MINUTES), end


def _queries(nat_gateway: bool) -> tuple[tuple[str, str, str | None], ...]:
    return _NAT_QUERIES if nat_gateway else _LB_QUERIES


def read_snat_metrics(
    monitor: MonitorManagementClient,
    resource_id: str,
    *,
    nat_gateway: bool,
    now: datetime,
    window_minutes: int,
) -> dict[str, Any]:
    """The last `window_minutes` (+ lateness) of per-minute SNAT metrics of one resource."""
    start, end = _window(now, window_minutes)
    timespan = f"{start.isoformat()}/{end.isoformat()}"
    merged: dict[str, Any] = {"timespan": timespan, "interval": "PT1M", "value": []}
    for names, aggregation, dim_filter in _queries(nat_gateway):
        response = monitor.metrics.list(
            resource_id,
            timespan=timespan,
            interval="PT1M",
            metricnames=names,
            aggregation=aggregation,
            filter=dim_filter,
            top=MAX_SERIES,
        )
        doc = response.serialize(keep_readonly=True)
        merged["value"].extend(doc.get("value") or [])
        for key in ("namespace", "resourceregion"):
            if doc.get(key):
                merged[key] = doc[key]
    log.debug("read %d SNAT metrics of %s", len(merged["value"]), resource_id)
    return merged


def _subscription_of(resource_id: str) -> str:
    parts = [p for p in resource_id.split("/") if p]
    return parts[1] if len(parts) > 1 and parts[0].lower() == "subscriptions" else ""


def _chunks(items: Sequence[MetricsTarget], size: int) -> Iterable[Sequence[MetricsTarget]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _batch_query(
    client: MetricsClient,
    subscription: str,
    ids: Sequence[str],
    namespace: str,
    query: tuple[str, str, str | None],
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """One metrics:getBatch call; the `values` elements of its answer."""
    names, aggregation, dim_filter = query
    params: dict[str, Any] = {
        "api-version": BATCH_API_VERSION,
        "metricnamespace": namespace,
        "metricnames": names,
        "starttime": _utc(start),
        "endtime": _utc(end),
        "interval": "PT1M",
        "aggregation": aggregation,
    }
    if dim_filter:
        params["filter"] = dim_filter
        params["top"] = MAX_SERIES
    request = HttpRequest(
        "POST",
        f"/subscriptions/{quote(subscription, safe='')}/metrics:getBatch",
        params=params,
        json={"resourceids": list(ids)},
    )
    response = client.send_request(request)
    response.raise_for_status()
    return parse_batch_answer(response.text())


def parse_batch_answer(text: str) -> list[dict[str, Any]]:
    """The `values` of a metrics:getBatch answer, each with a string `resourceid` and a `value`
    list (and `starttime`, `endtime`, `interval`, when present, strings). Raises BadAnswer
    only: the metrics inside are checked later by parse_metrics."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadAnswer(f"answer is not JSON: {str(exc)[:100]}") from None
    values = doc.get("values") if isinstance(doc, dict) else None
    if not isinstance(values, list):
        raise BadAnswer("answer has no 'values' list")
    for i, item in enumerate(values):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("resourceid"), str)
            or not isinstance(item.get("value"), list)
        ):
            raise BadAnswer(f"values[{i}] has no 'resourceid' and 'value' list")
        for key in ("starttime", "endtime", "interval", "namespace", "resourceregion"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise BadAnswer(f"values[{i}].{key} is not a string")
    return values


def _read_chunk(
    client: MetricsClient,
    subscription: str,
    chunk: Sequence[MetricsTarget],
    nat_gateway: bool,
    start: datetime,
    end: datetime,
) -> dict[str, dict[str, Any]]:
    """The chunk's bodies by id_key, holding only resources every query answered for."""
    wanted = {id_key(t.resource_id) for t in chunk}
    bodies: dict[str, dict[str, Any]] = {}
    answered: dict[str, int] = {}
    namespace = _NAT_NAMESPACE if nat_gateway else _LB_NAMESPACE
    queries = _queries(nat_gateway)
    for query in queries:
        ids = [t.resource_id for t in chunk]
        for item in _batch_query(client, subscription, ids, namespace, query, start, end):
            key = id_key(item["resourceid"])
            if key not in wanted:
                continue  # not asked for: never attribute it to another resource
            body = bodies.setdefault(key, {"interval": item.get("interval") or "PT1M", "value": []})
            if item.get("starttime") and item.get("endtime"):
                body["timespan"] = f"{item['starttime']}/{item['endtime']}"
            for k in ("namespace", "resourceregion", "resourceid"):
                if item.get(k):
                    body[k] = item[k]
            body["value"].extend(item["value"])
            answered[key] = answered.get(key, 0) + 1
    return {k: b for k, b in bodies.items() if answered.get(k) == len(queries)}


def read_snat_metrics_batch(
    targets: Iterable[MetricsTarget],
    *,
    batch_client_for: BatchClientFor,
    monitor: MonitorManagementClient | None,
    now: datetime,
    window_minutes: int,
    chunk_size: int = BATCH_LIMIT,
) -> MetricsRead:
    """SNAT metrics of many resources: batched where a batch client exists, per resource
    through `monitor` otherwise (or as the fallback). Raises only for programming errors."""
    if not 1 <= chunk_size <= BATCH_LIMIT:
        raise ValueError(f"chunk_size must be 1..{BATCH_LIMIT}")
    start, end = _window(now, window_minutes)
    groups: dict[tuple[str, str, bool], list[MetricsTarget]] = {}
    seen: set[str] = set()
    for t in targets:
        if id_key(t.resource_id) in seen:
            continue
        seen.add(id_key(t.resource_id))
        key = (_subscription_of(t.resource_id).lower(), t.region.strip().lower(), t.nat_gateway)
        groups.setdefault(key, []).append(t)
    metrics: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    notes: list[str] = []
    for (_, region, nat), members in groups.items():
        subscription = _subscription_of(members[0].resource_id)  # as written, not lowered
        client = batch_client_for(subscription, region) if subscription else None
        kind = "NAT gateway" if nat else "load balancer"
        for chunk in _chunks(members, chunk_size):
            per_resource: Sequence[MetricsTarget] = chunk
            if client is not None:
                try:
                    got = _read_chunk(client, subscription, chunk, nat, start, end)
                except (AzureError, BadAnswer) as exc:
                    got = {}
                    notes.append(
                        f"subscription {subscription}: metrics:getBatch for {len(chunk)} "
                        f"{kind}(s) in {region} failed ({_short(exc)}): read one by one"
                    )
                    log.warning("metrics:getBatch failed (%s): reading per resource", exc)
                metrics.update(got)
                per_resource = [t for t in chunk if id_key(t.resource_id) not in got]
                if got and per_resource:
                    notes.append(
                        f"subscription {subscription}: metrics:getBatch answered nothing for "
                        f"{len(per_resource)} {kind}(s) in {region}: read one by one"
                    )
            for t in per_resource:
                _read_one(t, monitor, now, window_minutes, metrics, errors)
    return MetricsRead(metrics, errors, tuple(notes))


def _read_one(
    target: MetricsTarget,
    monitor: MonitorManagementClient | None,
    now: datetime,
    window_minutes: int,
    metrics: dict[str, dict[str, Any]],
    errors: dict[str, str],
) -> None:
    key = id_key(target.resource_id)
    if monitor is None:
        errors[key] = "no metrics client to read it with"
        return
    try:
        metrics[key] = read_snat_metrics(
            monitor,
            target.resource_id,
            nat_gateway=target.nat_gateway,
            now=now,
            window_minutes=window_minutes,
        )
    except AzureError as exc:
        log.warning("metrics of %s unreadable: %s", target.resource_id, exc)
        errors[key] = f"metrics unreadable: {_short(exc)}"


def _short(exc: BaseException) -> str:
    """The first line of an error, bounded: SDK messages carry whole response bodies."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
