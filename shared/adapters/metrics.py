"""SNAT metrics from Azure Monitor (azure-mgmt-monitor), returned in the REST shape
shared.analysis.snat.parse_metrics reads.

One resource costs two `metrics.list` calls: the connection counts split by ConnectionState,
and the port (load balancer) or drop (NAT gateway) metrics, because a `$filter` may only name
dimensions every requested metric has. `top` is always set: with a filter the service returns
only 10 series by default, which would hide most nodes of a large pool.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from azure.mgmt.monitor import MonitorManagementClient

__all__ = ["LATE_MINUTES", "read_snat_metrics"]

log = logging.getLogger(__name__)
LATE_MINUTES = 3  # metrics arrive 1-3 minutes late: ask for that much more than the window
MAX_SERIES = 5000  # one series per backend IP; AKS allows 5,000 nodes per cluster

_LB_QUERIES = (
    ("SnatConnectionCount", "Total", "ConnectionState eq '*'"),
    ("AllocatedSnatPorts,UsedSnatPorts", "Average", "BackendIPAddress eq '*'"),
)
_NAT_QUERIES = (
    ("SNATConnectionCount", "Total", "ConnectionState eq '*'"),
    ("PacketDropCount", "Total", None),
)


def read_snat_metrics(
    monitor: MonitorManagementClient,
    resource_id: str,
    *,
    nat_gateway: bool,
    now: datetime,
    window_minutes: int,
) -> dict[str, Any]:
    """The last `window_minutes` (+ lateness) of per-minute SNAT metrics of one resource."""
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=window_minutes + LATE_MINUTES)
    timespan = f"{start.isoformat()}/{end.isoformat()}"
    merged: dict[str, Any] = {"timespan": timespan, "interval": "PT1M", "value": []}
    for names, aggregation, dim_filter in _NAT_QUERIES if nat_gateway else _LB_QUERIES:
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
