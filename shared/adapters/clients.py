"""The ONE place that builds Azure SDK clients: ARM management clients, the Azure Monitor
metrics data-plane (batch) client, and the storage queues' clients. Only the composition root
(shared/compose.py, which builds the table client itself) calls the ARM, metrics and credential
helpers; `queue_clients` serves ProbeQueue's named constructors, which the root calls.

Everything that varies between Azure public cloud, sovereign clouds and the test simulator is
decided here: the ARM endpoint (`base_url`), the token scope derived from it, the login
authority for DefaultAzureCredential, the regional metrics endpoint and its audience, an extra
CA bundle (`connection_verify`), the retry budget (429 with Retry-After is retried, within
bounds) and the call-counting policy that every client shares. Adapters receive the built
clients; they never build their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.monitor.querymetrics import MetricsClient

from shared.adapters.callcount import CallCounter, CountingPolicy

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

__all__ = [
    "PUBLIC_ARM_ENDPOINT",
    "ArmClients",
    "BoundedRetryPolicy",
    "ReadOnlyPostRetryPolicy",
    "RetrySettings",
    "authority_for",
    "build_clients",
    "build_metrics_batch_client",
    "build_monitor_client",
    "credential_scopes_for",
    "default_credential",
    "metrics_endpoint_for",
    "metrics_scopes_for",
    "queue_clients",
]

PUBLIC_ARM_ENDPOINT = "https://management.azure.com"

# host -> (token scope, login authority host). Scopes as azure-mgmt-core's get_arm_endpoints
# gives them for the known clouds; anything else (Azure Stack, the test simulator) gets
# "<endpoint>/.default", which is how ARM-compatible endpoints name their audience.
_KNOWN_CLOUDS = {
    "management.azure.com": (
        "https://management.azure.com/.default",
        "login.microsoftonline.com",
    ),
    "management.chinacloudapi.cn": (
        "https://management.chinacloudapi.cn/.default",
        "login.chinacloudapi.cn",
    ),
    "management.usgovcloudapi.net": (
        "https://management.core.usgovcloudapi.net/.default",
        "login.microsoftonline.us",
    ),
}


# ARM host -> the host suffix of its cloud's regional Azure Monitor metrics data plane
# (`<region>.metrics.monitor.azure.com`), which is also the token audience of that plane
# (azure-monitor-querymetrics: audience https://metrics.monitor.azure.com by default,
# https://metrics.monitor.azure.us in its US Government sample; docs.azure.cn shows
# <region>.metrics.monitor.azure.cn for Azure China).
_METRICS_SUFFIX = {
    "management.azure.com": "metrics.monitor.azure.com",
    "management.chinacloudapi.cn": "metrics.monitor.azure.cn",
    "management.usgovcloudapi.net": "metrics.monitor.azure.us",
}
_REGION = re.compile(r"[a-z0-9]{2,40}")  # ARM location names (fullmatch): "eastus", "westeurope2"


def _normalised_endpoint(arm_endpoint: str) -> str:
    parts = urlsplit(arm_endpoint.strip())
    if parts.scheme != "https" or not parts.netloc:
        # azure-core refuses bearer tokens over http anyway; say so before the first call.
        raise ValueError(f"ARM endpoint {arm_endpoint!r} is not an https:// URL")
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def credential_scopes_for(arm_endpoint: str) -> list[str]:
    """The token scope for an ARM endpoint (sovereign clouds differ from their host name)."""
    endpoint = _normalised_endpoint(arm_endpoint)
    known = _KNOWN_CLOUDS.get(urlsplit(endpoint).netloc.lower())
    return [known[0]] if known else [f"{endpoint}/.default"]


def metrics_endpoint_for(arm_endpoint: str, region: str, override: str | None = None) -> str | None:
    """The metrics:getBatch endpoint for resources of `region`.

    `override` wins (a `{region}` in it is replaced): the simulator, or a cloud this module
    does not know. Otherwise the ARM endpoint's cloud decides; None when it is not a known
    cloud (Azure Stack, a simulator without override) or the region is not a location name:
    the caller then reads metrics per resource through ARM instead of guessing a host.
    """
    name = region.strip().lower()
    if override:
        return _normalised_endpoint(override.replace("{region}", name))
    suffix = _METRICS_SUFFIX.get(urlsplit(_normalised_endpoint(arm_endpoint)).netloc.lower())
    if suffix is None or not _REGION.fullmatch(name):
        return None
    return f"https://{name}.{suffix}"


def metrics_scopes_for(metrics_endpoint: str) -> list[str]:
    """The token scope of a metrics data-plane endpoint: its cloud's audience, else
    "<endpoint>/.default" (the simulator)."""
    endpoint = _normalised_endpoint(metrics_endpoint)
    host = urlsplit(endpoint).netloc.lower()
    for suffix in _METRICS_SUFFIX.values():
        if host == suffix or host.endswith(f".{suffix}"):
            return [f"https://{suffix}/.default"]
    return [f"{endpoint}/.default"]


def authority_for(arm_endpoint: str) -> str | None:
    """The login authority host of a known cloud; None for unknown endpoints."""
    known = _KNOWN_CLOUDS.get(urlsplit(_normalised_endpoint(arm_endpoint)).netloc.lower())
    return known[1] if known else None


def default_credential(arm_endpoint: str = PUBLIC_ARM_ENDPOINT) -> TokenCredential:
    """DefaultAzureCredential (az login, managed identity, ...) for the endpoint's cloud."""
    # imported here: only the real scan needs azure-identity, tests bring their own credential
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    authority = authority_for(arm_endpoint)
    if authority is None:
        return DefaultAzureCredential()
    return DefaultAzureCredential(authority=authority)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Bounds of azure-core's RetryPolicy; Retry-After is honoured up to `max_retry_after`."""

    total: int = 6  # retries of one request, whatever the cause
    status: int = 5  # of those, retries on 408/429/5xx answers
    backoff_factor: float = 0.8  # seconds, exponential, when no Retry-After is given
    backoff_max: int = 30
    max_retry_after: float = 60.0  # a longer Retry-After fails the call instead of stalling
    timeout: int = 300  # seconds for one operation including its retries

    def __post_init__(self) -> None:
        if min(self.total, self.status, self.backoff_max, self.timeout) < 0:
            raise ValueError("retry settings must not be negative")
        if self.backoff_factor < 0 or self.max_retry_after < 0:
            raise ValueError("retry settings must not be negative")


class BoundedRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's RetryPolicy, except that a Retry-After beyond a bound is not waited for.

    ARM's read bucket refills in seconds; a Retry-After of many minutes means the subscription
    is being throttled hard, and a scan that sleeps that long inside one call helps nobody:
    the call fails, the failure is recorded, the next scan tries again.
    """

    def __init__(self, *, max_retry_after: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_retry_after = max_retry_after

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self.max_retry_after:
            return False
        if _starts_a_run_command(response) and response.http_response.status_code != 429:
            # azure-core re-sends a POST on 500/503/504 and on any answer with Retry-After;
            # for a run command that may mean the script runs twice as root, and a run
            # command the worker never counted. Only a 429 (not accepted) is re-sent; the
            # worker decides about the rest, with its own count and delays.
            return False
        return bool(super().is_retry(settings, response))

    @classmethod
    def from_settings(cls, retry: RetrySettings) -> BoundedRetryPolicy:
        return cls(
            max_retry_after=retry.max_retry_after,
            retry_total=retry.total,
            retry_status=retry.status,
            retry_backoff_factor=retry.backoff_factor,
            retry_backoff_max=retry.backoff_max,
            timeout=retry.timeout,
        )


def _starts_a_run_command(response: PipelineResponse[Any, Any]) -> bool:
    request = response.http_request
    path = urlsplit(request.url).path.rstrip("/").lower()
    return bool(request.method.upper() == "POST" and path.endswith("/runcommand"))


class ReadOnlyPostRetryPolicy(BoundedRetryPolicy):
    """BoundedRetryPolicy that also retries POST requests which only read (metrics:getBatch).

    azure-core retries a POST only when the answer carries Retry-After (or is 500/503/504);
    the metrics data plane throttles with 429 or 529, with or without Retry-After, and
    re-sending a read is harmless. Retries stay bounded by RetrySettings.
    """

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = super().configure_retries(options)
        settings["methods"] = frozenset(settings["methods"]) | {"POST"}
        return settings


@dataclass(frozen=True, slots=True)
class ArmClients:
    """The management clients of one subscription, sharing one call counter."""

    subscription: str
    container: ContainerServiceClient
    compute: ComputeManagementClient
    network: NetworkManagementClient
    counter: CallCounter = field(default_factory=CallCounter)

    def close(self) -> None:
        self.container.close()
        self.compute.close()
        self.network.close()


def build_clients(
    credential: TokenCredential,
    subscription: str,
    *,
    arm_endpoint: str = PUBLIC_ARM_ENDPOINT,
    ca_bundle: str | None = None,
    retry: RetrySettings | None = None,
    counter: CallCounter | None = None,
    connection_timeout: float = 10.0,
    read_timeout: float = 60.0,
) -> ArmClients:
    """Clients for one subscription against one ARM endpoint.

    `ca_bundle` is a PEM file trusted in addition to nothing else (requests' `verify=`): give
    it only for endpoints signed by a private CA (the simulator, some sovereign deployments).
    Pass the same `counter` to several builds to count a multi-subscription scan as one.
    """
    counter = counter if counter is not None else CallCounter()
    kwargs = _client_kwargs(
        arm_endpoint, ca_bundle, retry, counter, connection_timeout, read_timeout
    )
    return ArmClients(
        subscription=subscription,
        container=ContainerServiceClient(credential, subscription, **kwargs),
        compute=ComputeManagementClient(credential, subscription, **kwargs),
        network=NetworkManagementClient(credential, subscription, **kwargs),
        counter=counter,
    )


def build_monitor_client(
    credential: TokenCredential,
    subscription: str,
    *,
    arm_endpoint: str = PUBLIC_ARM_ENDPOINT,
    ca_bundle: str | None = None,
    retry: RetrySettings | None = None,
    counter: CallCounter | None = None,
    read_timeout: float = 60.0,
) -> MonitorManagementClient:
    """Azure Monitor (metrics) through ARM, counted by the same counter as the ARM clients."""
    counter = counter or CallCounter()
    kwargs = _client_kwargs(arm_endpoint, ca_bundle, retry, counter, 10.0, read_timeout)
    return MonitorManagementClient(credential, subscription, **kwargs)


def build_metrics_batch_client(
    credential: TokenCredential,
    metrics_endpoint: str,
    *,
    ca_bundle: str | None = None,
    retry: RetrySettings | None = None,
    counter: CallCounter | None = None,
    connection_timeout: float = 10.0,
    read_timeout: float = 60.0,
) -> MetricsClient:
    """Azure Monitor's metrics data plane (metrics:getBatch) at one regional endpoint, with the
    same retry bounds and call counter as the ARM clients (its calls are not ARM reads, but
    they are calls a scan makes)."""
    endpoint = _normalised_endpoint(metrics_endpoint)
    settings = retry if retry is not None else RetrySettings()
    kwargs: dict[str, Any] = {
        "credential_scopes": metrics_scopes_for(endpoint),
        "retry_policy": ReadOnlyPostRetryPolicy.from_settings(settings),
        "per_retry_policies": [CountingPolicy(counter or CallCounter())],
        "connection_timeout": connection_timeout,
        "read_timeout": read_timeout,
    }
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return MetricsClient(endpoint, credential, **kwargs)


def _client_kwargs(
    arm_endpoint: str,
    ca_bundle: str | None,
    retry: RetrySettings | None,
    counter: CallCounter,
    connection_timeout: float,
    read_timeout: float,
) -> dict[str, Any]:
    endpoint = _normalised_endpoint(arm_endpoint)
    settings = retry if retry is not None else RetrySettings()
    kwargs: dict[str, Any] = {
        "base_url": endpoint,
        "credential_scopes": credential_scopes_for(endpoint),
        "retry_policy": BoundedRetryPolicy.from_settings(settings),
        # after the RetryPolicy: every attempt, including retried 429s, is counted
        "per_retry_policies": [CountingPolicy(counter)],
        "connection_timeout": connection_timeout,
        "read_timeout": read_timeout,
    }
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return kwargs


def queue_clients(
    options: dict[str, Any],
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: TokenCredential | None = None,
) -> Callable[[str], QueueClient]:
    """queue name -> its QueueClient, all of one storage account: from a connection string, or
    from the account's queue service URL with a credential. `options` (encoding, retry,
    timeouts) are the queue adapter's (shared/adapters/queues.py)."""
    from azure.storage.queue import QueueClient  # noqa: PLC0415 (ARM-only callers skip it)

    if connection_string is not None:
        conn = connection_string

        def from_connection_string(name: str) -> QueueClient:
            return QueueClient.from_connection_string(conn, name, **options)

        return from_connection_string
    if account_url is None or credential is None:
        raise ValueError(
            "queue_clients needs a connection string, or an account URL and a credential"
        )
    url, cred = account_url, credential

    def from_account_url(name: str) -> QueueClient:
        return QueueClient(account_url=url, queue_name=name, credential=cred, **options)

    return from_account_url
