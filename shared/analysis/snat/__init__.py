"""SNAT exhaustion judged from Azure Monitor metrics (cause 5), and the fixes with exact numbers.

Owns the verdict. Load balancer: exhausted when any Failed SNAT connection shows in the window,
or when a backend IP's UsedSnatPorts / AllocatedSnatPorts (Average per minute) is >= threshold%
in at least N of the last M one-minute points. NAT gateway (our addition): exhausted on Failed
SNAT connections, at risk on PacketDropCount > 0, in the window.

The window is the M minutes ending at the newest minute that has data: metrics arrive 1-3
minutes late, so "now" would mostly look at empty minutes. Missing points are not zeros: with
`over` points at/above the threshold and `missing` points absent, a backend is exhausted when
over >= N, ok when over + missing < N (exhaustion impossible whatever the missing points say),
and otherwise at risk (over >= 1) or unknown (over == 0): it cannot be decided yet.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.analysis.snat.capacity import Capacity, snat_capacity
from shared.analysis.snat.metrics import MetricsDoc, Point, Series, parse_metrics
from shared.errors import InputError

__all__ = [
    "BackendUsage",
    "Capacity",
    "MetricsDoc",
    "ResourceKind",
    "SnatReport",
    "SnatState",
    "Window",
    "evaluate",
    "parse_metrics",
    "snat_capacity",
]

_LB_PORT_METRICS = {"usedsnatports", "allocatedsnatports"}
_NAT_ONLY_METRICS = {"packetdropcount", "totalconnectioncount", "datapathavailability"}
_CONNECTIONS = "snatconnectioncount"


class ResourceKind(StrEnum):
    LOAD_BALANCER = "load_balancer"
    NAT_GATEWAY = "nat_gateway"


class SnatState(StrEnum):
    OK = "ok"
    EXHAUSTED = "exhausted"
    AT_RISK = "at_risk"
    UNKNOWN = "unknown"


_RANK = {SnatState.OK: 0, SnatState.UNKNOWN: 1, SnatState.AT_RISK: 2, SnatState.EXHAUSTED: 3}


def _minutes(end: datetime | None, count: int) -> tuple[datetime, ...]:
    if end is None:
        return ()
    return tuple(end - timedelta(minutes=i) for i in range(count - 1, -1, -1))


@dataclass(frozen=True, slots=True)
class Window:
    """The M minutes judged. Port usage and events (connections, drops) are anchored apart:
    different metrics arrive with different delays, and a late one must not look empty."""

    minutes: int  # M
    min_bad: int  # N
    threshold: float  # percent
    end: datetime | None = None  # newest minute with port data (load balancer)
    events_end: datetime | None = None  # newest minute with connection or drop data
    stale: bool = False

    def minutes_in(self) -> tuple[datetime, ...]:
        return _minutes(self.end, self.minutes)

    def event_minutes(self) -> tuple[datetime, ...]:
        return _minutes(self.events_end, self.minutes)

    def to_json(self) -> dict[str, Any]:
        def span(ms: tuple[datetime, ...]) -> dict[str, str] | None:
            return {"start": ms[0].isoformat(), "end": ms[-1].isoformat()} if ms else None

        return {
            "minutes": self.minutes,
            "min_bad": self.min_bad,
            "threshold": self.threshold,
            "ports": span(self.minutes_in()),
            "events": span(self.event_minutes()),
            "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class BackendUsage:
    """Port usage of one backend IP (one used/allocated series pair) over the window."""

    backend_ip: str
    dimensions: tuple[tuple[str, str], ...]
    verdict: SnatState
    points: tuple[tuple[datetime, float | None, float | None], ...]  # (minute, used, allocated)
    threshold: float
    reason: str = ""

    def _ratios(self) -> list[float]:
        return [100.0 * u / a for _, u, a in self.points if u is not None and a]

    @property
    def points_over(self) -> int:
        return sum(1 for r in self._ratios() if r >= self.threshold)

    @property
    def points_present(self) -> int:
        return len(self._ratios())

    def latest(self) -> tuple[float | None, float | None, float | None]:
        for _, u, a in reversed(self.points):
            if u is not None and a:
                return u, a, round(100.0 * u / a, 2)
        return None, None, None

    def to_json(self) -> dict[str, Any]:
        used, allocated, ratio = self.latest()
        ratios = self._ratios()
        return {
            "backend_ip": self.backend_ip,
            "dimensions": dict(self.dimensions),
            "verdict": self.verdict.value,
            "used": used,
            "allocated": allocated,
            "ratio": ratio,
            "max_ratio": round(max(ratios), 2) if ratios else None,
            "points_over_threshold": self.points_over,
            "points_present": self.points_present,
            "points_missing": len(self.points) - self.points_present,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class SnatReport:
    kind: ResourceKind
    verdict: SnatState
    window: Window
    resource_id: str
    failed_connections: float | None  # in the window; None when no connection data at all
    failed_before_window: float
    packet_drops: float | None  # NAT gateway only
    backends: tuple[BackendUsage, ...]
    reasons: tuple[str, ...] = field(default=())


def detect_kind(doc: MetricsDoc, source: str) -> ResourceKind:
    """Load balancer or NAT gateway, from the strongest clue the response holds."""
    ids = {r.lower() for r in doc.resource_ids}
    strong = {ResourceKind.LOAD_BALANCER for r in ids if "/loadbalancers/" in r} | {
        ResourceKind.NAT_GATEWAY for r in ids if "/natgateways/" in r
    }
    names = {n.lower() for n in doc.metric_names}
    by_metric = set()
    if names & _LB_PORT_METRICS:
        by_metric.add(ResourceKind.LOAD_BALANCER)
    if names & _NAT_ONLY_METRICS:
        by_metric.add(ResourceKind.NAT_GATEWAY)
    # The exact casing is Azure's own (Snat for load balancers, SNAT for NAT gateways).
    weak = {ResourceKind.LOAD_BALANCER for n in doc.metric_names if n == "SnatConnectionCount"} | {
        ResourceKind.NAT_GATEWAY for n in doc.metric_names if n == "SNATConnectionCount"
    }
    for clues in (strong, by_metric, weak):
        if len(clues) > 1:
            raise InputError(
                source, "mixes load balancer and NAT gateway metrics: pass one at a time"
            )
        if clues:
            return next(iter(clues))
    raise InputError(
        source, "cannot tell a load balancer from a NAT gateway in these metrics: pass --kind"
    )


def _values(series: Sequence[Series], attr: str) -> dict[datetime, float]:
    """Per minute, the sum of one aggregation over several series; minutes without any absent."""
    out: dict[datetime, float] = {}
    for s in series:
        for p in s.points:
            v = getattr(p, attr)
            if v is not None:
                out[p.time] = out.get(p.time, 0.0) + v
    return out


def _has_data(p: Point) -> bool:
    return any(v is not None for v in (p.total, p.average, p.maximum, p.minimum, p.count))


def _newest(doc: MetricsDoc, keys: set[str]) -> datetime | None:
    times = [p.time for s in doc.series if s.key in keys for p in s.points if _has_data(p)]
    return max(times, default=None)


def _backend(
    used: Series, allocated: Series | None, window: Window, reason: str = ""
) -> BackendUsage:
    minutes = window.minutes_in()
    u = {p.time: p.average for p in used.points}
    a = {p.time: p.average for p in allocated.points} if allocated else {}
    points = tuple((t, u.get(t), a.get(t)) for t in minutes)
    ip = used.dimension("backendipaddress") or "(all backends)"
    probe = BackendUsage(ip, used.dimensions, SnatState.UNKNOWN, points, window.threshold, reason)
    if allocated is None or not points:
        return probe if points else replace(probe, reason="no UsedSnatPorts data points")
    over, missing = probe.points_over, len(points) - probe.points_present
    if over >= window.min_bad:
        verdict = SnatState.EXHAUSTED
    elif over + missing < window.min_bad:
        verdict = SnatState.OK
    elif over:
        verdict, reason = SnatState.AT_RISK, f"{over} point(s) over, {missing} missing: not decided"
    else:
        verdict, reason = SnatState.UNKNOWN, f"only {probe.points_present} of {len(points)} points"
    return BackendUsage(ip, used.dimensions, verdict, points, window.threshold, reason)


_MAX_SUBSET_DIMENSIONS = 8  # Azure's SNAT metrics have 3 dimensions; 2**8 subsets at most


class _Allocated:
    """The AllocatedSnatPorts series indexed by their dimensions, for pairing in linear time
    (a scan of every series per UsedSnatPorts series took 45 s for 16,000 series)."""

    def __init__(self, series: list[Series]) -> None:
        self.by_dims: dict[frozenset[tuple[str, str]], list[Series]] = {}
        for s in series:
            self.by_dims.setdefault(frozenset(s.dimensions), []).append(s)

    def pair(self, used: Series) -> Series | None:
        """The allocated series with the same dimensions when there is exactly one; else the
        single one whose dimensions are a subset of the used series' (a coarser split)."""
        dims = frozenset(used.dimensions)
        same = self.by_dims.get(dims, [])
        if len(same) == 1:
            return same[0]
        if len(dims) > _MAX_SUBSET_DIMENSIONS:
            return None  # no real metric has so many: left unpaired (an unknown verdict)
        wider: list[Series] = []
        for size in range(len(dims) + 1):
            for subset in itertools.combinations(sorted(dims), size):
                wider += self.by_dims.get(frozenset(subset), [])
                if len(wider) > 1:
                    return None
        return wider[0] if wider else None


def _backends(doc: MetricsDoc, window: Window) -> tuple[BackendUsage, ...]:
    used = [s for s in doc.series if s.key == "usedsnatports"]
    allocated = [s for s in doc.series if s.key == "allocatedsnatports"]
    index = _Allocated(allocated)
    out = []
    paired: set[int] = set()
    for s in used:
        partner = index.pair(s)
        if partner is not None:
            paired.add(id(partner))
        reason = "" if partner else "no matching AllocatedSnatPorts series"
        out.append(_backend(s, partner, window, reason))
    for s in allocated:
        if id(s) not in paired:
            ip = s.dimension("backendipaddress") or "(all backends)"
            out.append(
                BackendUsage(
                    ip,
                    s.dimensions,
                    SnatState.UNKNOWN,
                    (),
                    window.threshold,
                    "no matching UsedSnatPorts series",
                )
            )
    return tuple(out)


def evaluate(
    doc: MetricsDoc,
    source: str,
    *,
    kind: ResourceKind | None = None,
    threshold: float = 80.0,
    window: int = 5,
    min_bad: int = 3,
    now: datetime | None = None,
    stale_after: timedelta = timedelta(minutes=15),
) -> SnatReport:
    """The verdict on one resource's SNAT metrics; `now` (optional) flags stale data."""
    if not 0 < threshold <= 100 or not 1 <= min_bad <= window:
        raise InputError(
            source,
            f"need 0 < threshold <= 100 and 1 <= N <= M, got {threshold}, N={min_bad}, M={window}",
        )
    kind = kind or detect_kind(doc, source)
    resource = doc.resource_ids[0] if len(doc.resource_ids) == 1 else ""
    reasons: list[str] = []
    ports_end = _newest(doc, {"usedsnatports"})
    events_end = _newest(doc, {_CONNECTIONS, "packetdropcount"})
    newest = max((t for t in (ports_end, events_end) if t is not None), default=None)
    stale = bool(newest and now and now - newest > stale_after)
    w = Window(window, min_bad, threshold, ports_end, events_end, stale)
    in_window = set(w.event_minutes())

    conn = [s for s in doc.series if s.key == _CONNECTIONS]
    failed_series = [s for s in conn if (s.dimension("connectionstate") or "").lower() == "failed"]
    failed_by_minute = _values(failed_series, "total")
    failed = sum(v for t, v in failed_by_minute.items() if t in in_window)
    failed_before = sum(v for t, v in failed_by_minute.items() if t not in in_window)
    conn_data = any(p.time in in_window and p.total is not None for s in conn for p in s.points)
    failed_or_none = failed if conn_data or failed else None
    if failed_before:
        reasons.append(f"{failed_before:g} failed SNAT connection(s) before the window")

    if newest is None:
        reasons.append("no data points at all")
        verdict = SnatState.UNKNOWN
        backends: tuple[BackendUsage, ...] = ()
        drops = None
    elif kind is ResourceKind.LOAD_BALANCER:
        backends = _backends(doc, w)
        drops = None
        verdict = _lb_verdict(failed, conn_data, backends, reasons)
    else:
        backends = ()
        drop_series = [s for s in doc.series if s.key == "packetdropcount"]
        by_minute = _values(drop_series, "total")
        drops_seen = [v for t, v in by_minute.items() if t in in_window]
        drops = sum(drops_seen) if drops_seen else None
        if failed:
            verdict = SnatState.EXHAUSTED
        elif drops:
            verdict = SnatState.AT_RISK
            reasons.append("packets dropped: a sign of SNAT exhaustion, not a proof")
        elif conn_data or drops_seen:
            verdict = SnatState.OK
        else:
            verdict = SnatState.UNKNOWN
            reasons.append("no SNAT connection or packet drop data in the window")
    if stale and now is not None and newest is not None:
        reasons.append(
            f"newest point {newest.isoformat()} is {now - newest} old: metrics are stale"
        )
        verdict = SnatState.UNKNOWN
    return SnatReport(
        kind, verdict, w, resource, failed_or_none, failed_before, drops, backends, tuple(reasons)
    )


def _lb_verdict(
    failed: float, conn_data: bool, backends: tuple[BackendUsage, ...], reasons: list[str]
) -> SnatState:
    if failed:
        return SnatState.EXHAUSTED
    if backends:
        worst = max((b.verdict for b in backends), key=_RANK.__getitem__)
        if worst is SnatState.UNKNOWN:
            reasons.extend(f"{b.backend_ip}: {b.reason}" for b in backends if b.reason)
        return worst
    if conn_data:
        reasons.append("no port metrics: no failed connections, but headroom not judged")
        return SnatState.OK
    reasons.append("no SNAT connection or port data in the window")
    return SnatState.UNKNOWN
