"""SNAT metrics: reading, the N-of-M window, missing points, kinds, capacity, findings, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.analysis.findings import Cause, Kind, Origin, Severity
from shared.analysis.snat import ResourceKind, SnatState, evaluate, parse_metrics, snat_capacity
from shared.analysis.snat.capacity import default_ports_per_node
from shared.analysis.snat.remedies import capacity_findings, findings
from shared.cli.main import main
from shared.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snat"
LB = "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Network/loadBalancers/kubernetes"
T0 = datetime(2024, 5, 14, 10, 0, tzinfo=UTC)


def _series(values: list[float | None], agg: str, **dims: str) -> dict[str, Any]:
    data = []
    for i, v in enumerate(values):
        point: dict[str, Any] = {"timeStamp": (T0 + timedelta(minutes=i)).isoformat()}
        if v is not None:
            point[agg] = v
        data.append(point)
    meta = [{"name": {"value": k.lower()}, "value": v} for k, v in dims.items()]
    return {"metadatavalues": meta, "data": data}


def _metric(name: str, *series: dict[str, Any], resource: str = LB) -> dict[str, Any]:
    return {
        "id": f"{resource}/providers/Microsoft.Insights/metrics/{name}",
        "name": {"value": name},
        "timeseries": list(series),
    }


def _lb(used: list[float | None], allocated: float = 1000.0, failed: list[float] | None = None):
    n = len(used)
    metrics = [
        _metric("UsedSnatPorts", _series(used, "average", BackendIPAddress="10.0.0.5")),
        _metric("AllocatedSnatPorts", _series([allocated] * n, "average", BackendIPAddress="10.0.0.5")),
    ]  # fmt: skip
    if failed is not None:
        metrics.append(
            _metric("SnatConnectionCount", _series(failed, "total", ConnectionState="Failed"))
        )
    return {"interval": "PT1M", "value": metrics}


def _verdict(doc: Any, **kw: Any) -> SnatState:
    return evaluate(parse_metrics(json.dumps(doc), "m"), "m", **kw).verdict


@pytest.mark.parametrize(
    ("name", "verdict", "kind"),
    [
        ("lb-ok.json", "ok", "load_balancer"),
        ("lb-exhausted-ratio.json", "exhausted", "load_balancer"),
        ("lb-failed.json", "exhausted", "load_balancer"),
        ("lb-at-risk-missing.json", "at_risk", "load_balancer"),
        ("lb-late-points.json", "ok", "load_balancer"),
        ("lb-no-data.json", "unknown", "load_balancer"),
        ("natgw-ok.json", "ok", "nat_gateway"),
        ("natgw-drops.json", "at_risk", "nat_gateway"),
        ("natgw-failed.json", "exhausted", "nat_gateway"),
    ],
)
def test_fixtures(name: str, verdict: str, kind: str) -> None:
    report = evaluate(parse_metrics((FIXTURES / name).read_text(), name), name)
    assert (report.verdict.value, report.kind.value) == (verdict, kind)


def test_n_of_m_judges_a_window_not_a_point() -> None:
    # 800/1000 = 80% counts as high (>= threshold); a single high point is a flap
    assert _verdict(_lb([100, 100, 800, 100, 100])) is SnatState.OK
    assert _verdict(_lb([100, 800, 100, 800, 800])) is SnatState.EXHAUSTED
    assert _verdict(_lb([100, 800, 100, 800, 790])) is SnatState.OK
    assert _verdict(_lb([100, 800, 100, 800, 790]), threshold=79) is SnatState.EXHAUSTED
    assert _verdict(_lb([800, 800, 100, 100, 100]), window=5, min_bad=3) is SnatState.OK
    assert _verdict(_lb([900, 100, 100, 100, 100]), window=5, min_bad=1) is SnatState.EXHAUSTED


def test_missing_points_are_not_zeros() -> None:
    # 2 present and low, 3 missing: exhaustion would need all three missing to be high
    assert _verdict(_lb([100, None, 100, None, None, 0])) is not SnatState.OK
    assert _verdict(_lb([100, None, None, None, 100])) is SnatState.UNKNOWN
    assert _verdict(_lb([900, None, None, 100, 100])) is SnatState.AT_RISK
    assert _verdict(_lb([100, None, 100, 100, 100])) is SnatState.OK  # 4 low: decided
    report = evaluate(parse_metrics(json.dumps(_lb([900, None, None, 100, 100])), "m"), "m")
    (backend,) = report.backends
    assert (backend.points_over, backend.points_present) == (1, 3)
    assert backend.to_json()["ratio"] == 10.0


def test_the_window_ends_at_the_newest_data_not_at_now() -> None:
    doc = _lb([900, 900, 900, None, None, None])  # the last three minutes have not arrived
    report = evaluate(parse_metrics(json.dumps(doc), "m"), "m", window=3, min_bad=3)
    assert report.verdict is SnatState.EXHAUSTED
    assert report.window.end == T0 + timedelta(minutes=2)
    stale = evaluate(parse_metrics(json.dumps(doc), "m"), "m", now=T0 + timedelta(hours=2))
    assert stale.verdict is SnatState.UNKNOWN and any("stale" in r for r in stale.reasons)


def test_failed_connections_in_the_window_mean_exhaustion() -> None:
    assert _verdict(_lb([100] * 5, failed=[0, 0, 0, 0, 2])) is SnatState.EXHAUSTED
    old = evaluate(
        parse_metrics(json.dumps(_lb([100] * 9, failed=[5, 0, 0, 0, 0, 0, 0, 0, 0])), "m"), "m"
    )
    assert old.verdict is SnatState.OK and old.failed_before_window == 5


def test_kind_detection_and_name_casing() -> None:
    nat = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/natGateways/gw"
    doc = {
        "value": [
            _metric(
                "snatconnectioncount",
                _series([1.0], "total", ConnectionState="Failed"),
                resource=nat,
            )
        ]
    }
    report = evaluate(parse_metrics(json.dumps(doc), "m"), "m")
    assert report.kind is ResourceKind.NAT_GATEWAY and report.verdict is SnatState.EXHAUSTED
    bare = {"value": [{"name": {"value": "snatconnectioncount"}, "timeseries": []}]}
    with pytest.raises(InputError, match="--kind"):
        evaluate(parse_metrics(json.dumps(bare), "m"), "m")
    assert evaluate(parse_metrics(json.dumps(bare), "m"), "m", kind=ResourceKind.NAT_GATEWAY)
    cased = {"value": [{"name": {"value": "SnatConnectionCount"}, "timeseries": []}]}
    assert evaluate(parse_metrics(json.dumps(cased), "m"), "m").kind is ResourceKind.LOAD_BALANCER
    both = {"value": [{"name": {"value": "UsedSnatPorts"}}, {"name": {"value": "PacketDropCount"}}]}
    with pytest.raises(InputError, match="mixes"):
        evaluate(parse_metrics(json.dumps(both), "m"), "m")


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ("{", "invalid JSON"),
        ('{"value": 1}', "expected a 'value' list"),
        ('{"interval": "PT5M", "value": []}', "PT1M"),
        ('{"value": [{"name": {}}]}', "no name.value"),
        ('{"value": [{"name": "X", "timeseries": [{"data": [{"timeStamp": "yesterday"}]}]}]}',
         "ISO-8601"),
        ('{"value": [{"name": "X", "timeseries": [{"data": [{"timeStamp": "2024-05-14T10:00:00"}]}]}]}',
         "time zone"),
        ('{"value": [{"name": "X", "timeseries": [{"data": [{"timeStamp": "2024-05-14T10:00:00Z", "average": "7"}]}]}]}',
         "number"),
        ('{"value": [{"name": "X", "timeseries": [{"data": [{"timeStamp": "2024-05-14T10:00:00Z", "average": NaN}]}]}]}',
         "NaN"),
        ('{"value": [{"name": "X", "timeseries": [{"data": [{"timeStamp": "2024-05-14T10:00:00Z"}, {"timeStamp": "2024-05-14T10:00:30Z"}]}]}]}',
         "second point"),
    ],
)  # fmt: skip
def test_bad_metrics_name_the_place(doc: str, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        parse_metrics(doc, "metrics.json")
    assert fragment in err.value.message
    assert str(err.value).startswith("metrics.json")


def test_batch_and_list_shapes() -> None:
    body = _lb([900, 900, 900])
    batch = {"values": [{"resourceid": LB, "value": body["value"]}]}
    assert _verdict(batch) is SnatState.EXHAUSTED
    split = [{"value": [m]} for m in body["value"]]
    assert _verdict(split) is SnatState.EXHAUSTED


def test_capacity_matches_the_aks_docs_example() -> None:
    # AKS docs: 7 IPs x 64,000 = 448,000; 100 nodes + 2 surge at 4,000 ports = 408,000
    cap = snat_capacity(7, 4000, 100, 2)
    assert (cap.ports_available, cap.ports_needed, cap.fits) == (448_000, 408_000, True)
    assert cap.nodes_that_fit == 112
    assert cap.max_ports_per_node == 4392  # 448,000 / 102 = 4392.1, down to a multiple of 8
    assert cap.min_outbound_ips == 7
    short = snat_capacity(1, 4000, 100, 2)
    assert short.fits is False and short.min_outbound_ips == 7 and short.max_ports_per_node == 624


def test_capacity_automatic_allocation_and_limits() -> None:
    assert default_ports_per_node(50, 1) == 1024
    assert default_ports_per_node(51, 1) == 512
    assert default_ports_per_node(100, 3) == 1024  # 512 x 3, capped at 1,024
    assert default_ports_per_node(1001, 1) is None
    auto = snat_capacity(1, 0, 120, 3)
    assert auto.effective_ports_per_node == 256 and auto.fits
    assert snat_capacity(1, 0, 1000, 10).fits is None
    assert snat_capacity(1, 64_000, 50, 0).min_outbound_ips == 50
    assert snat_capacity(1, 64_000, 100, 1).min_outbound_ips is None  # 101 IPs: over the limit
    for args in ((0, 1024, 10, 1), (1, 1020, 10, 1), (1, 64_008, 10, 1), (1, 1024, 0, 1)):
        with pytest.raises(InputError):
            snat_capacity(*args)


def test_findings_cause_origin_and_exact_commands() -> None:
    report = evaluate(parse_metrics(json.dumps(_lb([900] * 5)), "m"), "m")
    cap = snat_capacity(1, 1024, 50, 2)
    (f,) = findings(report, resource_group="rg", cluster="aks", capacity=cap)
    assert (f.cause, f.origin, f.kind, f.severity) == (
        Cause.SNAT,
        Origin.ARTICLE,
        Kind.PROBLEM,
        Severity.CRITICAL,
    )
    assert f.subject.resource == LB
    assert f.remediation is not None
    commands = f.remediation.commands
    assert "az aks update -g rg -n aks --load-balancer-outbound-ports 1224" in commands
    assert (
        "az aks update -g rg -n aks --load-balancer-managed-outbound-ip-count 2 --load-balancer-outbound-ports 2048"
        in commands
    )
    assert any("managedNATGateway" in c for c in commands)
    nat = evaluate(parse_metrics((FIXTURES / "natgw-failed.json").read_text(), "n"), "n")
    assert findings(nat)[0].origin is Origin.TUNNELWATCH
    ok = evaluate(parse_metrics((FIXTURES / "lb-ok.json").read_text(), "n"), "n")
    assert findings(ok) == ()
    (short,) = capacity_findings(snat_capacity(1, 4000, 100, 2), resource_group="rg", cluster="aks")
    assert short.remediation is not None
    assert (
        "az aks update -g rg -n aks --load-balancer-managed-outbound-ip-count 7"
        in short.remediation.commands
    )
    assert capacity_findings(snat_capacity(7, 4000, 100, 2)) == ()


# -- robustness ---------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=25)
    | st.sampled_from(["2024-05-14T10:00:00Z", "2024-05-14T10:01:00+00:00", "Failed", "PT1M"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["value", "values", "name", "timeseries", "metadatavalues", "data",
                         "timeStamp", "average", "total", "interval", "id", "resourceid"]),
        children,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip


def _ok_or_input_error(text: str) -> None:
    try:
        report = evaluate(parse_metrics(text, "fuzz"), "fuzz", kind=ResourceKind.LOAD_BALANCER)
    except InputError as exc:
        assert exc.source == "fuzz"
        return
    findings(report)
    json.dumps([b.to_json() for b in report.backends])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_crashes(text: str) -> None:
    _ok_or_input_error(text)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_random_json_never_crashes(doc: Any) -> None:
    _ok_or_input_error(json.dumps(doc))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.json"))),
    st.lists(st.tuples(st.integers(0, 20000), st.integers(0, 30), st.text(max_size=6)), max_size=4),
)
def test_mutated_metrics_never_crash(name: str, cuts: list[tuple[int, int, str]]) -> None:
    text = (FIXTURES / name).read_text()
    for start, length, junk in cuts:
        i = start % (len(text) + 1)
        text = text[:i] + junk + text[i + length :]
    _ok_or_input_error(text)


# -- command line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [("lb-ok.json", 0), ("lb-failed.json", 1), ("natgw-drops.json", 1), ("lb-no-data.json", 3)],
)
def test_cli_exit_codes(name: str, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "snat", str(FIXTURES / name), "--json"]) == code
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"verdict", "kind", "failed_connections", "backends", "window", "findings"}


def test_cli_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIXTURES / "lb-exhausted-ratio.json")
    assert main(["analyze", "snat", path, "--threshold", "99", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "ok"
    argv = ["analyze", "snat", path, "--resource-group", "rg", "--cluster", "aks", "--frontend-ips",
            "1", "--ports-per-node", "1024", "--max-nodes", "50", "--surge", "2"]  # fmt: skip
    assert main(argv) == 1
    assert "--load-balancer-outbound-ports 1224" in capsys.readouterr().out
    assert main(["analyze", "snat", path, "--window", "3", "--min-bad", "4"]) == 2
    assert "--min-bad 4 exceeds --window 3" in capsys.readouterr().err
    assert main(["analyze", "snat", path, "--frontend-ips", "1"]) == 2
    assert "go together" in capsys.readouterr().err
    bad = tmp_path / "m.json"
    bad.write_text('{"interval": "PT5M", "value": []}')
    assert main(["analyze", "snat", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and str(bad) in err and "PT1M" in err


def test_nat_gateway_fix_changes_the_outbound_type_in_place() -> None:
    from shared.analysis.snat.remedies import load_balancer_fix

    fix = load_balancer_fix("rg-aks", "aks-prod")
    nat = [c for c in fix.commands if "NATGateway" in c]
    assert nat == [
        "az aks update -g rg-aks -n aks-prod --outbound-type managedNATGateway "
        "--nat-gateway-managed-outbound-ip-count 2"
    ]
    assert not any("az aks create" in c for c in fix.commands)
    assert any("userAssignedNATGateway" in n for n in fix.notes)


@pytest.mark.parametrize("interval", [True, 5, ["PT1M"], {"x": 1}])
def test_an_interval_that_is_not_text_is_an_input_error(interval: object) -> None:
    # Found by test_random_json_never_crashes: the error's excerpt took len() of a bool.
    with pytest.raises(InputError, match="interval is"):
        parse_metrics(json.dumps({"interval": interval, "value": []}), "m.json")
