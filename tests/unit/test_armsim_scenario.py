"""Scenario validation (errors name the file and the field's path) and the estate generator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.armsim import SCENARIOS, ScenarioError, build_estate, generate_estate, load_scenario
from tests.armsim import parse_scenario as parse

DEMO_DOC: dict[str, Any] = json.loads((SCENARIOS / "demo.json").read_text())


def broken(path: list[str | int], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DEMO_DOC)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def cluster_path(i: int) -> list[str | int]:
    return ["subscriptions", 0, "clusters", i]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ([*cluster_path(1), "agentPools", 0, "count"], "three",
         "subscriptions[0].clusters[1].agentPools[0].count: expected an integer"),
        ([*cluster_path(0), "outboundType"], "nat",
         "subscriptions[0].clusters[0].outboundType: 'nat' is not one of"),
        ([*cluster_path(1), "agentPools", 1, "subnet"], "vnet-shop/nope",
         "subscriptions[0].clusters[1].agentPools[1].subnet: no subnet named 'vnet-shop/nope'"),
        (["subscriptions", 0, "nsgs", 0, "rules", 0, "properties", "priority"], 50,
         "subscriptions[0].nsgs[0].rules[0].properties.priority: 50 is out of range 100..4096"),
        (["subscriptions", 0, "vnets", 1, "subnets", 0, "addressPrefix"], "10.10.0.0/33",
         "subscriptions[0].vnets[1].subnets[0].addressPrefix: '10.10.0.0/33' is not an address"),
        ([*cluster_path(0), "agentPools", 0, "colour"], "red",
         "subscriptions[0].clusters[0].agentPools[0]: unknown field 'colour'"),
        ([*cluster_path(2), "loadBalancer", "metrics", 0, "name"], "SNATConnectionCount",
         "subscriptions[0].clusters[2].loadBalancer.metrics[0].name: 'SNATConnectionCount' is not"),
    ],
)  # fmt: skip
def test_errors_name_the_file_and_the_field(
    path: list[str | int], value: Any, expected: str
) -> None:
    with pytest.raises(ScenarioError) as err:
        build_estate(parse(broken(path, value), source="demo.json"))
    assert err.value.source == "demo.json"
    assert expected in str(err.value)
    assert str(err.value).startswith("demo.json: ")


def test_file_errors_carry_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "subscriptions": [\n    {"id": "x",}\n  ]\n}\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert err.value.line == 3 and err.value.source == str(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.json")


def test_demo_builds_every_required_shape() -> None:
    estate = build_estate(load_scenario(SCENARIOS / "demo.json"))
    powers = {s.power_state for s in estate.instances.values()}
    assert "deallocated" in powers
    assert {s.os_type for s in estate.instances.values()} == {"Linux", "Windows"}
    assert estate.count("Microsoft.ContainerService/managedClusters") == 7
    assert estate.count("Microsoft.Network/natGateways") == 2  # user-assigned and managed


def test_generator_is_deterministic_and_scales() -> None:
    a = generate_estate(clusters=10, pools_per_cluster=2, nodes_per_pool=3, seed=7)
    b = generate_estate(clusters=10, pools_per_cluster=2, nodes_per_pool=3, seed=7)
    assert a.docs.keys() == b.docs.keys()
    assert a.count("Microsoft.ContainerService/managedClusters") == 10
    assert a.count("Microsoft.Compute/virtualMachineScaleSets") == 20
    assert len(a.instances) == 60
    big = generate_estate(clusters=500, pools_per_cluster=1, nodes_per_pool=2, seed=1)
    assert big.count("Microsoft.ContainerService/managedClusters") == 500


def _never_crashes(doc: object) -> None:
    try:
        build_estate(parse(doc, source="fuzz.json"))
    except ScenarioError as e:
        assert e.source == "fuzz.json"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_random_text_only_raises_scenario_error(text: str) -> None:
    try:
        doc = json.loads(text)
    except ValueError:
        return
    _never_crashes(doc)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


_ALL_PATHS = _paths(DEMO_DOC)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_ALL_PATHS), _JSON, st.booleans())
def test_mutations_of_the_demo_only_raise_scenario_error(
    path: tuple[Any, ...], value: Any, delete: bool
) -> None:
    doc = copy.deepcopy(DEMO_DOC)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    _never_crashes(doc)


def test_duplicate_resources_are_reported() -> None:
    doc = copy.deepcopy(DEMO_DOC)
    nsgs = doc["subscriptions"][0]["nsgs"]
    nsgs.append({**nsgs[1], "rules": []})
    with pytest.raises(ScenarioError, match=r"subscriptions\[0\]: duplicate resource id"):
        build_estate(parse(doc, source="dup.json"))
