"""Where the scan sends the egress checks: the API server address for each kind of cluster."""

from __future__ import annotations

from shared.inventory.model import Estate, LoadBalancer
from shared.jobs.scan import _api_server_ips
from tests.unit.test_checks_paths import SUB, cluster


def _resolver(calls: list[str]):  # type: ignore[no-untyped-def]
    def resolve(name: str) -> tuple[str, ...]:
        calls.append(name)
        return ("20.61.14.2",)

    return resolve


def test_public_cluster_resolves_its_fqdn() -> None:
    calls: list[str] = []
    assert _api_server_ips(Estate(SUB, (), (), (), (), ()), cluster(), _resolver(calls)) == (
        "20.61.14.2",
    )
    assert calls == ["aks1-abc.hcp.westeurope.azmk8s.io"]


def test_private_cluster_uses_the_private_endpoint_from_arm_not_dns() -> None:
    calls: list[str] = []
    private = cluster(
        private_cluster=True, fqdn=None, private_fqdn="aks1.x.privatelink.westeurope.azmk8s.io",
        api_server_private_ips=("10.1.0.250",),
    )  # fmt: skip
    assert _api_server_ips(Estate(SUB, (), (), (), (), ()), private, _resolver(calls)) == (
        "10.1.0.250",
    )
    assert calls == []
    # without the endpoint's address (not found in ARM), the private FQDN is tried through DNS
    unresolved = cluster(private_cluster=True, fqdn=None, private_fqdn="p.privatelink.x")
    assert _api_server_ips(Estate(SUB, (), (), (), (), ()), unresolved, _resolver(calls)) == (
        "20.61.14.2",
    )
    assert calls == ["p.privatelink.x"]


def test_vnet_integration_uses_the_internal_load_balancer() -> None:
    ilb = LoadBalancer(
        f"/subscriptions/{SUB}/resourceGroups/rg-aks-nodes/providers/Microsoft.Network/loadBalancers/kube-apiserver",
        "kube-apiserver", "rg-aks-nodes", 1, (), private_frontend_ips=("10.1.2.4",),
    )  # fmt: skip
    calls: list[str] = []
    integrated = cluster(vnet_integration=True)
    estate = Estate(SUB, (), (), (), (ilb,), ())
    assert _api_server_ips(estate, integrated, _resolver(calls)) == ("10.1.2.4",)
    assert calls == []
