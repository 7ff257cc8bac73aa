"""clients.py and callcount.py: endpoints, scopes, retry bounds, and the counting policy."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import RetryPolicy
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.callcount import CallCounter, CallCounts, operation_name
from shared.adapters.clients import (
    BoundedRetryPolicy,
    RetrySettings,
    authority_for,
    build_clients,
    credential_scopes_for,
)
from tests.armsim import ArmSimulator, Faults, Throttle, generate_estate

SUB = "00000000-0000-0000-0000-00000000b001"
BASE = f"https://management.azure.com/subscriptions/{SUB}"


@pytest.mark.parametrize(
    ("endpoint", "scope", "authority"),
    [
        ("https://management.azure.com", "https://management.azure.com/.default",
         "login.microsoftonline.com"),
        ("https://management.azure.com/", "https://management.azure.com/.default",
         "login.microsoftonline.com"),
        ("https://management.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default",
         "login.chinacloudapi.cn"),
        ("https://Management.UsGovCloudApi.net", "https://management.core.usgovcloudapi.net/.default",
         "login.microsoftonline.us"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443/.default", None),
        ("https://arm.stack.local/base/", "https://arm.stack.local/base/.default", None),
    ],
)  # fmt: skip
def test_scopes_and_authority_follow_the_endpoint(
    endpoint: str, scope: str, authority: str | None
) -> None:
    assert credential_scopes_for(endpoint) == [scope]
    assert authority_for(endpoint) == authority


@pytest.mark.parametrize("endpoint", ["http://management.azure.com", "management.azure.com", ""])
def test_non_https_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="https"):
        credential_scopes_for(endpoint)


def test_retry_settings_validated() -> None:
    with pytest.raises(ValueError, match="negative"):
        RetrySettings(total=-1)
    policy = BoundedRetryPolicy.from_settings(RetrySettings(total=4, max_retry_after=7))
    assert isinstance(policy, RetryPolicy)
    assert (policy.total_retries, policy.max_retry_after) == (4, 7)


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes = scopes
        return AccessToken("t", 2**31)


def test_build_clients_points_every_client_at_the_endpoint() -> None:
    counter = CallCounter()
    clients = build_clients(_Token(), SUB, arm_endpoint="https://127.0.0.1:1/", counter=counter,
                            ca_bundle="/tmp/ca.pem")  # fmt: skip
    assert clients.counter is counter and clients.subscription == SUB
    for client in (clients.container, clients.compute, clients.network):
        assert client._config.base_url == "https://127.0.0.1:1"
        assert client._config.credential_scopes == ["https://127.0.0.1:1/.default"]
        policies = client._client._pipeline._impl_policies
        # a SansIOHTTPPolicy runs wrapped in a runner that keeps it as `_policy`
        kinds = [type(getattr(p, "_policy", p)).__name__ for p in policies]
        # the counter sits after the retry policy, so each retried attempt is seen
        assert kinds.index("BoundedRetryPolicy") < kinds.index("CountingPolicy")
    clients.close()


# -- operation names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "name"),
    [
        ("GET", f"{BASE}/providers/Microsoft.ContainerService/managedClusters?api-version=x",
         "GET sub:managedClusters"),
        ("get", f"{BASE}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a",
         "GET rg:managedClusters/{}"),
        ("GET", f"{BASE}/resourcegroups/MC_x/providers/microsoft.compute/virtualmachinescalesets/v/virtualmachines?$expand=instanceView&$skipToken=2",
         "GET rg:virtualMachineScaleSets/{}/virtualMachines"),
        ("GET", f"{BASE}/resourceGroups/MC_x/providers/Microsoft.Compute/virtualMachineScaleSets/v/networkInterfaces",
         "GET rg:virtualMachineScaleSets/{}/networkInterfaces"),
        ("GET", f"{BASE}/providers/Microsoft.Network/locations/eastus/serviceTags",
         "GET sub:locations/{}/serviceTags"),
        ("GET", f"{BASE}/resourceGroups/r/providers/Microsoft.Network/loadBalancers/k/providers/Microsoft.Insights/metrics",
         "GET rg:loadBalancers/{}/metrics"),
        ("POST", f"{BASE}/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualmachines/3/runCommand",
         "POST rg:virtualMachineScaleSets/{}/virtualMachines/{}/runCommand"),
        ("GET", "https://login.example/token", "GET other:token"),
    ],
)  # fmt: skip
def test_operation_names_are_templates(method: str, url: str, name: str) -> None:
    assert operation_name(method, url) == name


def test_names_do_not_depend_on_resource_names_or_casing() -> None:
    a = operation_name(
        "GET", f"{BASE}/resourceGroups/rg1/providers/Microsoft.Network/natGateways/n1"
    )
    b = operation_name(
        "GET", f"{BASE.upper()}/RESOURCEGROUPS/other/PROVIDERS/MICROSOFT.NETWORK/NATGATEWAYS/zz"
    )
    assert a == b == "GET rg:natGateways/{}"


@given(st.text(max_size=60), st.sampled_from(["GET", "POST", "delete"]))
def test_operation_name_never_raises(path: str, method: str) -> None:
    name = operation_name(method, "https://h/" + path)
    assert name.startswith(method.upper() + " ")


# -- the counter ------------------------------------------------------------------------------


def test_counts_split_and_json() -> None:
    counts = CallCounts(
        requests={
            "GET sub:managedClusters": 2,
            "GET rg:virtualMachineScaleSets/{}/virtualMachines": 5,
        },
        throttled={"GET sub:managedClusters": 1},
    )
    assert (counts.total, counts.subscription_wide, counts.per_resource) == (7, 2, 5)
    doc = counts.to_json()
    assert doc["throttled"] == 1 and doc["by_operation"]["GET sub:managedClusters"] == 2
    assert set(doc) == {"total", "subscription_wide", "per_resource", "throttled",
                        "by_operation", "throttled_by_operation"}  # fmt: skip


def test_counter_is_thread_safe() -> None:
    counter = CallCounter()

    def work() -> None:
        for _ in range(500):
            counter.record_request("GET sub:x")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert counter.snapshot().requests == {"GET sub:x": 2000}
    counter.reset()
    assert counter.snapshot().total == 0


def test_policy_counts_attempts_and_429s_through_the_sdk() -> None:
    faults = Faults(throttles=[Throttle("virtualNetworks.listAll", first=2, retry_after=1)])
    with ArmSimulator(generate_estate(1), faults=faults) as sim:
        clients = build_clients(sim.credential(), SUB, arm_endpoint=sim.endpoint,
                                ca_bundle=sim.ca_path)  # fmt: skip
        list(clients.network.virtual_networks.list_all())
        counts = clients.counter.snapshot()
        assert counts.requests == {"GET sub:virtualNetworks": 3} and sim.total_calls() == 3
        assert counts.throttled == {"GET sub:virtualNetworks": 2}


def test_retries_are_bounded() -> None:
    faults = Faults(throttles=[Throttle("loadBalancers.listAll", first=99, retry_after=0)])
    retry = RetrySettings(total=2, status=2, backoff_factor=0.01, backoff_max=1)
    with ArmSimulator(generate_estate(1), faults=faults) as sim:
        clients = build_clients(sim.credential(), SUB, arm_endpoint=sim.endpoint,
                                ca_bundle=sim.ca_path, retry=retry)  # fmt: skip
        with pytest.raises(HttpResponseError) as caught:
            list(clients.network.load_balancers.list_all())
        assert caught.value.status_code == 429
        assert clients.counter.snapshot().requests == {"GET sub:loadBalancers": 3}


def test_one_counter_shared_by_two_subscriptions() -> None:
    from azure.core.exceptions import ResourceNotFoundError

    counter = CallCounter()
    with ArmSimulator(generate_estate(2)) as sim:
        kwargs: dict[str, Any] = {"arm_endpoint": sim.endpoint, "ca_bundle": sim.ca_path,
                                  "counter": counter}  # fmt: skip
        first = build_clients(sim.credential(), SUB, **kwargs)
        other = build_clients(sim.credential(), "12345678-0000-0000-0000-000000000000", **kwargs)
        assert len(list(first.container.managed_clusters.list())) == 2
        with pytest.raises(ResourceNotFoundError):
            list(other.container.managed_clusters.list())
    assert counter.snapshot().requests == {"GET sub:managedClusters": 2}
