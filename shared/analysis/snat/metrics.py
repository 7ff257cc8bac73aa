"""Azure Monitor metrics responses read into plain series: one metric, one dimension set, points.

Owns the accepted shapes: the REST/SDK body of `metrics.list` (`{"value": [metric, ...]}`, also
what `az monitor metrics list` prints), a JSON list of such bodies (one query per metric), and
the data-plane batch body (`{"values": [{"resourceid", "value": [metric, ...]}]}`). Each metric
has `name.value`, `timeseries[].metadatavalues[]` (dimension name/value) and
`timeseries[].data[]` with `timeStamp` and the aggregations (`total`, `average`, ...).

Metric and dimension names are compared case-insensitively: Azure answers `SnatConnectionCount`
for load balancers and `SNATConnectionCount` for NAT gateways, and dimension names come back
lower-cased (`backendipaddress`). Points are one minute apart (interval PT1M); other grains are
refused, because summing or averaging over a longer grain changes what the numbers mean.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import InputError, excerpt

__all__ = ["MetricsDoc", "Point", "Series", "parse_metrics"]

_AGGREGATIONS = ("total", "average", "maximum", "minimum", "count")


@dataclass(frozen=True, slots=True)
class Point:
    """One minute of one series; None where Azure gave no value (missing is not zero)."""

    time: datetime
    total: float | None = None
    average: float | None = None
    maximum: float | None = None
    minimum: float | None = None
    count: float | None = None


@dataclass(frozen=True, slots=True)
class Series:
    metric: str  # the name as Azure spelled it
    dimensions: tuple[tuple[str, str], ...]  # (lower-cased name, value), sorted by name
    points: tuple[Point, ...]  # sorted by time, one per minute at most
    resource_id: str = ""

    @property
    def key(self) -> str:
        return self.metric.lower()

    def dimension(self, name: str) -> str | None:
        return dict(self.dimensions).get(name.lower())


@dataclass(frozen=True, slots=True)
class MetricsDoc:
    series: tuple[Series, ...]
    resource_ids: tuple[str, ...]  # of the queried resources, where the body says
    metric_names: tuple[str, ...]  # every metric present, even one without time series


def _loads(text: str, source: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except RecursionError:
        raise InputError(source, "JSON nested too deeply") from None
    except ValueError as exc:  # NaN / Infinity, refused by _no_constant
        raise InputError(source, str(exc)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a metric value")


def _resource_of(metric_id: str) -> str:
    """The resource a metric id belongs to: everything before /providers/Microsoft.Insights/."""
    low = metric_id.lower()
    i = low.find("/providers/microsoft.insights/metrics")
    return metric_id[:i] if i > 0 else ""


def _minute(value: Any, where: str, source: str) -> datetime:
    if not isinstance(value, str):
        raise InputError(source, f"{where}.timeStamp: expected a time string")
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            source, f"{where}.timeStamp: {excerpt(value)} is not an ISO-8601 time"
        ) from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise InputError(source, f"{where}.timeStamp: {excerpt(value)} has no time zone")
    return t.replace(second=0, microsecond=0)


def _number(value: Any, where: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(source, f"{where}: expected a number or null, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise InputError(source, f"{where}: not a finite number")
    return f


def _dimensions(entries: Any, where: str, source: str) -> tuple[tuple[str, str], ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise InputError(source, f"{where}.metadatavalues: expected a list")
    dims: dict[str, str] = {}
    for j, e in enumerate(entries):
        name = e.get("name") if isinstance(e, Mapping) else None
        if isinstance(name, Mapping):
            name = name.get("value")
        value = e.get("value") if isinstance(e, Mapping) else None
        if not isinstance(name, str) or not isinstance(value, str):
            raise InputError(source, f"{where}.metadatavalues[{j}]: expected name.value and value")
        dims[name.lower()] = value
    return tuple(sorted(dims.items()))


def _series(ts: Any, metric: str, resource: str, where: str, source: str) -> Series:
    if not isinstance(ts, Mapping):
        raise InputError(source, f"{where}: expected an object")
    dims = _dimensions(ts.get("metadatavalues"), where, source)
    data = ts.get("data", [])
    if data is None:
        data = []
    if not isinstance(data, list):
        raise InputError(source, f"{where}.data: expected a list")
    points: dict[datetime, Point] = {}
    for k, d in enumerate(data):
        at = f"{where}.data[{k}]"
        if not isinstance(d, Mapping):
            raise InputError(source, f"{at}: expected an object")
        t = _minute(d.get("timeStamp"), at, source)
        if t in points:
            raise InputError(source, f"{at}: a second point for minute {t.isoformat()}")
        values = {a: _number(d.get(a), f"{at}.{a}", source) for a in _AGGREGATIONS}
        points[t] = Point(t, **values)
    ordered = tuple(points[t] for t in sorted(points))
    for a, b in itertools.pairwise(ordered):
        if (b.time - a.time) % timedelta(minutes=1):
            raise InputError(source, f"{where}: points are not whole minutes apart")
    return Series(metric, dims, ordered, resource)


def _check_interval(body: Mapping[str, Any], where: str, source: str) -> None:
    interval = body.get("interval")
    if interval is not None and (not isinstance(interval, str) or interval.upper() != "PT1M"):
        raise InputError(
            source,
            f"{where}interval is {excerpt(interval)}: query one-minute points (interval=PT1M)",
        )


def _bodies(doc: Any, source: str) -> list[tuple[Mapping[str, Any], str, str]]:
    """(body with a 'value' list of metrics, resource id if known, path) for each body."""
    out: list[tuple[Mapping[str, Any], str, str]] = []
    if isinstance(doc, list):
        for i, b in enumerate(doc):
            out.extend((body, rid, f"[{i}].{path}") for body, rid, path in _bodies(b, source))
        return out
    if not isinstance(doc, Mapping):
        raise InputError(source, f"expected a metrics response object, got {type(doc).__name__}")
    if isinstance(doc.get("values"), list):  # the data-plane batch shape
        for i, b in enumerate(doc["values"]):
            if not isinstance(b, Mapping) or not isinstance(b.get("value"), list):
                raise InputError(source, f"values[{i}]: expected an object with a 'value' list")
            rid = b.get("resourceid") or b.get("resourceId") or ""
            out.append((b, rid if isinstance(rid, str) else "", f"values[{i}]."))
        return out
    if isinstance(doc.get("value"), list):
        return [(doc, "", "")]
    raise InputError(source, "not a metrics response: expected a 'value' list of metrics")


def parse_metrics(text_or_doc: str | Any, source: str) -> MetricsDoc:
    """Every series of a metrics response. Raises InputError only."""
    doc = _loads(text_or_doc, source) if isinstance(text_or_doc, str) else text_or_doc
    try:
        bodies = _bodies(doc, source)
    except RecursionError:
        raise InputError(source, "JSON nested too deeply") from None
    series: list[Series] = []
    resources: dict[str, None] = {}
    names: list[str] = []
    for body, rid, path in bodies:
        _check_interval(body, path, source)
        for i, metric in enumerate(body["value"]):
            where = f"{path}value[{i}]"
            if not isinstance(metric, Mapping):
                raise InputError(source, f"{where}: expected a metric object")
            name = metric.get("name")
            if isinstance(name, Mapping):
                name = name.get("value")
            if not isinstance(name, str) or not name:
                raise InputError(source, f"{where}: no name.value")
            names.append(name)
            mid = metric.get("id")
            resource = rid or (_resource_of(mid) if isinstance(mid, str) else "")
            if resource:
                resources.setdefault(resource, None)  # a dict: ordered, and no list scan
            timeseries = metric.get("timeseries") or []
            if not isinstance(timeseries, list):
                raise InputError(source, f"{where}.timeseries: expected a list")
            for j, ts in enumerate(timeseries):
                series.append(_series(ts, name, resource, f"{where}.timeseries[{j}]", source))
    return MetricsDoc(tuple(series), tuple(resources), tuple(names))
