"""Azure Monitor `metrics.list` over the scenario's series: metricnames, timespan, interval,
aggregation, $filter (dimension splitting), top and orderby.

Time: a series' values are per minute, oldest first, and its last value belongs to the newest
minute that has data: the minute before the end of the requested timespan minus the scenario's
`metricsLagMinutes`. Scenarios therefore hold "the last N minutes" and stay valid whatever the
clock says. Dimensions named in $filter split the result into one time series per value
(`eq '*'` keeps every value); other dimensions are aggregated away (Total sums, Average averages,
Maximum/Minimum take the extreme, Count adds sample counts).

`query_metrics_batch` serves the data-plane batch (`metrics:getBatch`) from the same series:
each resource's element is what `query_metrics` answers for it with the same parameters
(`starttime`/`endtime` instead of `timespan`, `filter` instead of `$filter`), plus `resourceid`.
The documented limits are enforced: at most 50 distinct ids, one subscription (the path's), one
resource type (the `metricnamespace`), one region. Ids the estate has no metrics for are left
out of `values` (armsim's choice: what Azure answers for them is unconfirmed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.armsim.estate import MetricResource, norm
from tests.armsim.scenario import LB_METRICS, NAT_METRICS, MetricSeries

__all__ = [
    "BATCH_LIMIT", "KNOWN_METRICS", "MetricsQueryError", "query_metrics", "query_metrics_batch",
]  # fmt: skip

KNOWN_METRICS: dict[str, tuple[str, ...]] = {  # namespace -> metric names
    "microsoft.network/loadbalancers": LB_METRICS,
    "microsoft.network/natgateways": NAT_METRICS,
}
_UNITS = {"ByteCount": "Bytes"}
BATCH_LIMIT = 50
_AGGS = {"average": "average", "total": "total", "count": "count", "maximum": "maximum",
         "minimum": "minimum"}  # fmt: skip
_CLAUSE = re.compile(r"^\s*([A-Za-z][\w]*)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


class MetricsQueryError(Exception):
    """A 400 BadRequest the real service would give (message in its words)."""


@dataclass(frozen=True, slots=True)
class _Window:
    start: datetime
    end: datetime
    step: int  # minutes


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _window(timespan: str | None, interval: str | None, now: datetime) -> _Window:
    if timespan:
        try:
            a, b = timespan.split("/")
            start, end = _parse_time(a), _parse_time(b)
        except ValueError as e:
            raise MetricsQueryError(f"Invalid timespan '{timespan}'") from e
    else:
        end = now
        start = end - timedelta(hours=1)
    m = re.fullmatch(r"PT(\d+)([MH])", (interval or "PT1M").upper())
    if not m:
        raise MetricsQueryError(f"Invalid interval '{interval}'; armsim supports PTnM and PTnH")
    step = int(m.group(1)) * (60 if m.group(2) == "H" else 1)
    if step <= 0 or start >= end:
        raise MetricsQueryError("Invalid timespan or interval")
    return _Window(start.replace(second=0, microsecond=0), end, step)


def _filter(text: str | None) -> dict[str, set[str] | None]:
    """Dimension -> wanted values (None = all) from "A eq 'x' and (B eq 'y' or B eq 'z')"."""
    wanted: dict[str, set[str] | None] = {}
    if not text:
        return wanted
    for group in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        group = group.strip()
        if group.startswith("(") and group.endswith(")"):
            group = group[1:-1]
        for clause in re.split(r"\s+or\s+", group, flags=re.IGNORECASE):
            m = _CLAUSE.match(clause)
            if not m:
                raise MetricsQueryError(f"Invalid $filter clause '{clause}'")
            dim, value = m.group(1).lower(), m.group(2)
            if value == "*":
                wanted[dim] = None
            elif dim not in wanted or wanted[dim] is not None:
                wanted.setdefault(dim, set()).add(value.lower())  # type: ignore[union-attr]
    return wanted


def _points(series: MetricSeries, w: _Window, lag: int) -> dict[datetime, float]:
    """Minute -> value of one series inside the window."""
    newest = w.end.replace(second=0, microsecond=0) - timedelta(minutes=1 + lag)
    out = {}
    n = len(series.values)
    for i, v in enumerate(series.values):
        t = newest - timedelta(minutes=n - 1 - i)
        if v is not None and w.start <= t < w.end:
            out[t] = v
    return out


def _combine(samples: list[float], agg: str) -> float:
    if agg == "total":
        return sum(samples)
    if agg == "count":
        return float(len(samples))
    if agg == "maximum":
        return max(samples)
    if agg == "minimum":
        return min(samples)
    return sum(samples) / len(samples)


def query_metrics(
    resource_id: str, res: MetricResource, params: dict[str, str], now: datetime, lag: int
) -> dict[str, Any]:
    known = {n.lower(): (n, _UNITS.get(n, "Count")) for n in KNOWN_METRICS[res.namespace.lower()]}
    names = [n.strip() for n in (params.get("metricnames") or "").split(",") if n.strip()]
    if not names:
        names = [next(iter(known.values()))[0]]
    for n in names:
        if n.lower() not in known:
            raise MetricsQueryError(
                f"Failed to find metric configuration for provider: "
                f"{res.namespace.split('/')[0]}, resource Type: {res.namespace.split('/')[1]}, "
                f"metric: {n}, Valid metrics: {','.join(v[0] for v in known.values())}"
            )
    aggs = [a.strip().lower() for a in (params.get("aggregation") or "average").split(",")]
    if any(a not in _AGGS for a in aggs):
        raise MetricsQueryError(f"Invalid aggregation '{params.get('aggregation')}'")
    w = _window(params.get("timespan"), params.get("interval"), now)
    wanted = _filter(params.get("$filter"))
    top = int(params.get("top") or 10)
    order = (params.get("orderby") or "").strip().lower().split()
    value = []
    for n in names:
        canonical, unit = known[n.lower()]
        groups: dict[tuple[tuple[str, str], ...], list[dict[datetime, float]]] = {}
        for s in res.series:
            if s.name.lower() != n.lower():
                continue
            dims = {k.lower(): (k, v) for k, v in s.dimensions.items()}
            split: list[tuple[str, str]] = []
            ok = True
            for dim, values in wanted.items():
                if dim not in dims or (values is not None and dims[dim][1].lower() not in values):
                    ok = False
                    break
                split.append(dims[dim])
            if ok:
                groups.setdefault(tuple(split), []).append(_points(s, w, lag))
        if not wanted and not groups:
            groups[()] = []
        timeseries = []
        for key, members in groups.items():
            data = []
            t = w.start
            while t < w.end:
                samples = [
                    p[m] for p in members for m in p if t <= m < t + timedelta(minutes=w.step)
                ]
                point: dict[str, Any] = {"timeStamp": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
                if samples:
                    point |= {_AGGS[a]: _combine(samples, a) for a in aggs}
                data.append(point)
                t += timedelta(minutes=w.step)
            timeseries.append({
                "metadatavalues": [{"name": {"value": k.lower(), "localizedValue": k.lower()},
                                    "value": v} for k, v in key],
                "data": data,
            })  # fmt: skip
        rank = order[0] if order and order[0] in _AGGS else aggs[0]
        timeseries.sort(
            key=lambda ts: sum(p.get(rank, 0.0) for p in ts["data"]),
            reverse=not (len(order) > 1 and order[1] == "asc"),
        )
        value.append({
            "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{canonical}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": canonical, "localizedValue": canonical},
            "displayDescription": f"{canonical} (armsim)", "unit": unit, "errorCode": "Success",
            "timeseries": timeseries[:top] if wanted else timeseries,
        })  # fmt: skip
    return {
        "cost": 0, "timespan": f"{w.start.strftime('%Y-%m-%dT%H:%M:%SZ')}/"
                              f"{w.end.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "interval": f"PT{w.step}M", "namespace": res.namespace, "resourceregion": res.location,
        "value": value,
    }  # fmt: skip


def _param(params: dict[str, str], name: str) -> str | None:
    for k, v in params.items():
        if k.lower() == name.lower():
            return v
    return None


def _resource_ids(body: bytes) -> list[str]:
    try:
        doc = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MetricsQueryError("The request body is not valid JSON") from e
    ids = doc.get("resourceids") if isinstance(doc, dict) else None  # lower case, as documented
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise MetricsQueryError("The request body needs a non-empty 'resourceids' list")
    return ids


def query_metrics_batch(
    subscription: str,
    body: bytes,
    params: dict[str, str],
    resources: dict[str, MetricResource],
    ids_as_written: dict[str, str],
    now: datetime,
    lag: int,
) -> dict[str, Any]:
    """The `metrics:getBatch` answer. `resources` and `ids_as_written` are keyed by lower id."""
    namespace = _param(params, "metricnamespace")
    if not namespace:
        raise MetricsQueryError("The 'metricnamespace' query parameter is required")
    if _param(params, "$filter") is not None:
        raise MetricsQueryError("metrics:getBatch takes 'filter', not '$filter' (armsim)")
    if _param(params, "rollupby") is not None:
        raise MetricsQueryError("armsim does not support 'rollupby'")
    ids = _resource_ids(body)
    lowered = [norm(i.strip()) for i in ids]
    if len(set(lowered)) > BATCH_LIMIT:
        raise MetricsQueryError(f"At most {BATCH_LIMIT} resource ids per request")
    regions = set()
    for rid in dict.fromkeys(lowered):
        parts = rid.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "subscriptions" or parts[1] != subscription.lower():
            raise MetricsQueryError(f"Resource '{rid}' is not in subscription '{subscription}'")
        if "/providers/" + namespace.lower() + "/" not in rid:
            raise MetricsQueryError(f"Resource '{rid}' is not of type '{namespace}'")
        if rid in resources:
            regions.add(resources[rid].location.lower())
    if len(regions) > 1:
        raise MetricsQueryError(f"Resources span regions {sorted(regions)}: one region per call")
    start = _param(params, "starttime")
    end = _param(params, "endtime")
    if end and not start:
        raise MetricsQueryError("'starttime' is required when 'endtime' is given")
    single: dict[str, str] = {}
    for k in ("metricnames", "interval", "aggregation", "top", "orderby"):
        v = _param(params, k)
        if v is not None:
            single[k] = v
    if start:
        stop = end or now.strftime("%Y-%m-%dT%H:%M:%SZ")
        single["timespan"] = f"{start}/{stop}"
    dim_filter = _param(params, "filter")
    if dim_filter is not None:
        single["$filter"] = dim_filter
    values = []
    for rid in dict.fromkeys(lowered):
        res = resources.get(rid)
        if res is None:
            continue
        one = query_metrics(ids_as_written[rid], res, single, now, lag)
        first, last = one["timespan"].split("/")
        values.append({
            "starttime": first, "endtime": last, "interval": one["interval"],
            "namespace": one["namespace"], "resourceregion": one["resourceregion"],
            "resourceid": ids_as_written[rid], "value": one["value"],
        })  # fmt: skip
    return {"values": values}
