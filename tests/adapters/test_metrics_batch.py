"""metrics.py's batch reads (metrics:getBatch) through the real azure-monitor-querymetrics client
over HTTPS against the ARM simulator: grouping, chunks of 50, 429/529 retries, fallbacks; and
clients.py's endpoint, audience and retry policy for the metrics data plane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.querymetrics import MetricsClient

from shared.adapters.callcount import CallCounter
from shared.adapters.clients import (
    ReadOnlyPostRetryPolicy,
    RetrySettings,
    build_metrics_batch_client,
    build_monitor_client,
    metrics_endpoint_for,
    metrics_scopes_for,
)
from shared.adapters.metrics import (
    BATCH_API_VERSION,
    MetricsRead,
    MetricsTarget,
    read_snat_metrics,
    read_snat_metrics_batch,
)
from shared.analysis.snat import parse_metrics
from tests.armsim import SCENARIOS, ArmSimulator, Failure, Faults, Throttle, load_estate
from tests.armsim.build import build_estate
from tests.armsim.scenario import parse_scenario

SUB = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
BATCH_OP = "post sub:metrics:getbatch"  # the counting policy's name for it (any casing)


def _batch_calls(counter: CallCounter) -> int:
    return sum(n for op, n in counter.snapshot().requests.items() if op.lower() == BATCH_OP)


class Rig:
    def __init__(self, sim: ArmSimulator, retry: RetrySettings | None = None) -> None:
        self.sim = sim
        self.counter = CallCounter()
        cred = sim.credential()
        self.batch = build_metrics_batch_client(
            cred, sim.endpoint, ca_bundle=sim.ca_path, counter=self.counter, retry=retry
        )
        self.monitor = build_monitor_client(
            cred, SUB, arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path, counter=self.counter,
            retry=retry,
        )  # fmt: skip

    def targets(self) -> list[MetricsTarget]:
        est = self.sim.estate
        return [
            MetricsTarget(est.docs[k]["id"], r.location, "/natgateways/" in k)
            for k, r in est.metrics.items()
        ]

    def read(self, targets: list[MetricsTarget], **kw: Any) -> MetricsRead:
        kw.setdefault("batch_client_for", lambda sub, region: self.batch)
        return read_snat_metrics_batch(
            targets, monitor=self.monitor, now=NOW, window_minutes=5, **kw
        )


@pytest.fixture(scope="module")
def demo() -> Iterator[ArmSimulator]:
    with ArmSimulator(load_estate(SCENARIOS / "demo.json")) as sim:
        yield sim


@pytest.fixture
def rig(demo: ArmSimulator) -> Rig:
    demo.reset_calls()
    demo.faults = Faults()
    return Rig(demo)


def _pick(rig: Rig, lbs: int, nats: int) -> list[MetricsTarget]:
    all_ = rig.targets()
    return [t for t in all_ if not t.nat_gateway][:lbs] + [t for t in all_ if t.nat_gateway][:nats]


def test_three_lbs_and_a_nat_gateway_in_one_call_per_query(rig: Rig) -> None:
    targets = _pick(rig, 3, 1)
    read = rig.read(targets)
    assert read.notes == () and dict(read.errors) == {}
    # one call per query and resource type: 2 for the LBs together, 2 for the NAT gateway
    assert rig.sim.calls == {"metrics.getBatch": 4}
    assert _batch_calls(rig.counter) == 4
    sent = [json.loads(body)["resourceids"] for _, body in rig.sim.metrics_batch_requests]
    assert sorted(len(ids) for ids in sent) == [1, 1, 3, 3]

    # the same series as per-resource metrics.list reads (2 calls per resource)
    rig.sim.reset_calls()
    for t in targets:
        one = read_snat_metrics(
            rig.monitor, t.resource_id, nat_gateway=t.nat_gateway, now=NOW, window_minutes=5
        )
        body = read.body(t.resource_id)
        assert body is not None
        batched, single = parse_metrics(body, "batch"), parse_metrics(one, "list")
        assert batched.series == single.series
        assert batched.metric_names == single.metric_names
        assert (
            body["interval"] == "PT1M"
            and body["timespan"] == "2026-11-22T03:52:00Z/2026-11-22T04:00:00Z"
        )
    assert rig.sim.calls == {"metrics.list": 8}


def test_the_batch_request_is_what_the_package_sends(rig: Rig) -> None:
    """Our raw request and MetricsClient.query_resources reach the same route with the same
    parameter names (filter without $, starttime/endtime, top) and body."""
    lbs = [t.resource_id for t in _pick(rig, 2, 0)]
    rig.batch.query_resources(
        resource_ids=lbs,
        metric_namespace="Microsoft.Network/loadBalancers",
        metric_names=["SnatConnectionCount"],
        timespan=(NOW - timedelta(minutes=8), NOW),
        granularity=timedelta(minutes=1),
        aggregations=["Total"],
        max_results=5000,
        filter="ConnectionState eq '*'",
    )
    rig.read([MetricsTarget(i, "eastus", False) for i in lbs])
    (q_pkg, body_pkg), (q_ours, body_ours), _ = rig.sim.metrics_batch_requests
    assert [r.path for r in rig.sim.log] == [f"/subscriptions/{SUB}/metrics:getBatch"] * 3
    assert json.loads(body_pkg) == json.loads(body_ours) == {"resourceids": lbs}
    assert set(q_pkg) == set(q_ours)
    for key in ("api-version", "metricnamespace", "metricnames", "interval", "aggregation",
                "filter", "top"):  # fmt: skip
        assert q_pkg[key] == q_ours[key], key
    assert q_ours["api-version"] == BATCH_API_VERSION
    assert "$filter" not in q_ours
    # timestamps: the package sends milliseconds; both are the same instants
    for key in ("starttime", "endtime"):
        assert datetime.fromisoformat(q_pkg[key]) == datetime.fromisoformat(q_ours[key])


def test_more_than_50_resources_go_in_chunks_of_50() -> None:
    nats = [
        {"name": f"nat{i:02d}", "resourceGroup": "rg-nat", "location": "westeurope",
         "publicIps": [f"20.1.{i}.1"],
         "metrics": [{"name": "SNATConnectionCount",
                      "dimensions": {"ConnectionState": "Failed" if i == 52 else "Successful"},
                      "values": [1, 1, 1, 1, 1]}]}
        for i in range(53)
    ]  # fmt: skip
    scenario = parse_scenario({"subscriptions": [{"id": SUB, "natGateways": nats}]}, "gen")
    with ArmSimulator(build_estate(scenario)) as sim:
        rig = Rig(sim)
        read = rig.read(rig.targets())
    assert len(read.metrics) == 53 and read.notes == ()
    sizes = [len(json.loads(body)["resourceids"]) for _, body in sim.metrics_batch_requests]
    assert sorted(sizes) == [3, 3, 50, 50]
    assert sim.calls == {"metrics.getBatch": 4}
    last = next(t for t in rig.targets() if t.resource_id.endswith("nat52"))
    doc = parse_metrics(read.body(last.resource_id), "nat52")
    assert {
        s.dimension("ConnectionState") for s in doc.series if s.key == "snatconnectioncount"
    } == {"Failed"}


def test_groups_by_region_and_type(rig: Rig) -> None:
    asked: list[tuple[str, str]] = []

    def batch_for(sub: str, region: str) -> MetricsClient | None:
        asked.append((sub, region))
        return rig.batch if region == "eastus" else None  # no endpoint for "mars"

    lb, nat = _pick(rig, 1, 1)
    elsewhere = MetricsTarget(_pick(rig, 2, 0)[1].resource_id, "Mars", False)
    read = rig.read([lb, nat, elsewhere, lb], batch_client_for=batch_for)
    assert sorted(asked) == [(SUB, "eastus"), (SUB, "eastus"), (SUB, "mars")]
    assert len(read.metrics) == 3 and not read.errors
    # "mars" had no batch endpoint: read per resource (by design, not a failure)
    assert rig.sim.calls == {"metrics.getBatch": 4, "metrics.list": 2}
    assert read.notes == ()


def test_529_and_429_are_retried(rig: Rig) -> None:
    rig.sim.faults = Faults(
        # every matching rule counts a call; the throttle wins the first, the failure the second
        throttles=[Throttle("metrics.getBatch", first=1, retry_after=1)],
        failures=[Failure("metrics.getBatch", 529, "TooManyRequests", "armsim 529", times=2)],
    )
    read = rig.read(_pick(rig, 2, 0))
    assert read.notes == () and len(read.metrics) == 2
    # first call: 429 (Retry-After), 529 (no Retry-After: retried as a read), then 200
    assert rig.sim.calls == {"metrics.getBatch": 4}
    statuses = [r.status for r in rig.sim.log]
    assert sorted(statuses) == [200, 200, 429, 529]
    assert rig.counter.snapshot().total_throttled == 1  # the 429 (the counter's definition)


def test_retries_are_bounded_then_the_chunk_is_read_per_resource(demo: ArmSimulator) -> None:
    demo.reset_calls()
    demo.faults = Faults(failures=[Failure("metrics.getBatch", 529, "TooManyRequests")])
    try:
        rig = Rig(demo, retry=RetrySettings(total=2, status=2, backoff_factor=0.0))
        targets = _pick(rig, 2, 0)
        read = rig.read(targets)
    finally:
        demo.faults = Faults()
    assert len(read.metrics) == 2 and not read.errors
    (note,) = read.notes
    assert "metrics:getBatch for 2 load balancer(s) in eastus failed" in note
    assert "read one by one" in note
    assert demo.calls["metrics.getBatch"] == 3  # 1 + 2 retries, then no second query
    assert demo.calls["metrics.list"] == 4


def test_a_failing_chunk_falls_back_and_the_others_stay_batched(rig: Rig) -> None:
    rig.sim.faults = Faults(
        failures=[Failure("metrics.getBatch", 403, "AuthorizationFailed", "denied", times=1)]
    )
    targets = _pick(rig, 4, 0)
    read = rig.read(targets, chunk_size=2)
    assert len(read.metrics) == 4 and not read.errors
    assert len(read.notes) == 1 and "AuthorizationFailed" in read.notes[0]
    assert rig.sim.calls == {"metrics.getBatch": 3, "metrics.list": 4}
    for t in targets:
        names = parse_metrics(read.body(t.resource_id), "x").metric_names
        assert sorted(n.lower() for n in names) == [
            "allocatedsnatports", "snatconnectioncount", "usedsnatports",
        ]  # fmt: skip


def test_unreadable_either_way_is_an_error_never_empty_metrics(rig: Rig) -> None:
    ghost = (
        f"/subscriptions/{SUB}/resourceGroups/rg-x/providers/Microsoft.Network/loadBalancers/gone"
    )
    lb = _pick(rig, 1, 0)[0]
    read = rig.read([lb, MetricsTarget(ghost, "eastus", False)])
    assert read.body(ghost) is None
    assert "ResourceNotFound" in read.error(ghost)
    assert read.body(lb.resource_id) is not None
    assert "answered nothing for 1 load balancer(s)" in read.notes[0]


def test_an_unreachable_endpoint_falls_back(rig: Rig) -> None:
    dead = build_metrics_batch_client(
        rig.sim.credential(), "https://127.0.0.1:1", retry=RetrySettings(total=0),
        counter=rig.counter,
    )  # fmt: skip
    read = rig.read(_pick(rig, 1, 1), batch_client_for=lambda s, r: dead)
    assert len(read.metrics) == 2 and len(read.notes) == 2
    assert rig.sim.calls == {"metrics.list": 4}


def test_no_monitor_and_no_batch_means_errors() -> None:
    t = MetricsTarget(f"/subscriptions/{SUB}/resourceGroups/r/providers/x/y/z", "eastus", False)
    read = read_snat_metrics_batch(
        [t], batch_client_for=lambda s, r: None, monitor=None, now=NOW, window_minutes=5
    )
    assert read.body(t.resource_id) is None and "no metrics client" in read.error(t.resource_id)
    with pytest.raises(ValueError, match="chunk_size"):
        read_snat_metrics_batch([t], batch_client_for=lambda s, r: None, monitor=None, now=NOW,
                                window_minutes=5, chunk_size=51)  # fmt: skip


def test_bad_requests_are_refused_by_the_simulator(rig: Rig) -> None:
    """The simulator enforces the documented limits, so a wrong request cannot pass unseen."""
    lb, nat = _pick(rig, 1, 1)

    def post(ids: list[str], **params: Any) -> HttpResponseError:
        with pytest.raises(HttpResponseError) as info:
            rig.batch.query_resources(
                resource_ids=ids, metric_namespace="Microsoft.Network/loadBalancers",
                metric_names=["SnatConnectionCount"], **params,
            )  # fmt: skip
        return info.value

    assert post([lb.resource_id, nat.resource_id]).status_code == 400  # mixed types
    other = lb.resource_id.replace(SUB, "22222222-2222-2222-2222-222222222222")
    assert "not in subscription" in str(post([lb.resource_id, other]))
    many = [f"{lb.resource_id}{i}" for i in range(51)]
    assert "At most 50" in str(post(many))


def test_metrics_endpoint_follows_the_cloud() -> None:
    assert metrics_endpoint_for("https://management.azure.com/", "EastUS") == (
        "https://eastus.metrics.monitor.azure.com"
    )
    assert metrics_endpoint_for("https://management.chinacloudapi.cn", "chinanorth3") == (
        "https://chinanorth3.metrics.monitor.azure.cn"
    )
    assert metrics_endpoint_for("https://management.usgovcloudapi.net", "usgovvirginia") == (
        "https://usgovvirginia.metrics.monitor.azure.us"
    )
    # unknown cloud (Azure Stack, the simulator) and odd region names: no guessed host
    assert metrics_endpoint_for("https://127.0.0.1:8443", "eastus") is None
    assert metrics_endpoint_for("https://management.azure.com", "east us") is None
    assert metrics_endpoint_for("https://x", "eastus", "https://{region}.m.example/") == (
        "https://eastus.m.example"
    )
    assert metrics_endpoint_for("https://x", "eastus", "https://127.0.0.1:9/") == (
        "https://127.0.0.1:9"
    )
    with pytest.raises(ValueError, match="https"):
        metrics_endpoint_for("https://x", "eastus", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://eastus.metrics.monitor.azure.com", "https://metrics.monitor.azure.com/.default"),
        ("https://chinanorth3.metrics.monitor.azure.cn", "https://metrics.monitor.azure.cn/.default"),
        ("https://usgovvirginia.metrics.monitor.azure.us", "https://metrics.monitor.azure.us/.default"),
        ("https://127.0.0.1:8443/", "https://127.0.0.1:8443/.default"),
    ],
)  # fmt: skip
def test_metrics_audience(endpoint: str, scope: str) -> None:
    assert metrics_scopes_for(endpoint) == [scope]
    client = build_metrics_batch_client(_NoCredential(), endpoint)
    assert client._config.credential_scopes == [scope]
    policies = client._client._pipeline._impl_policies
    assert any(isinstance(p, ReadOnlyPostRetryPolicy) for p in policies)


def test_the_simulator_is_asked_for_its_own_audience(rig: Rig) -> None:
    cred = rig.sim.credential()
    client = build_metrics_batch_client(cred, rig.sim.endpoint, ca_bundle=rig.sim.ca_path)
    rig.read(_pick(rig, 1, 0), batch_client_for=lambda s, r: client)
    assert cred.scopes and set(cred.scopes) == {(f"{rig.sim.endpoint}/.default",)}


class _NoCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("no call expected")
