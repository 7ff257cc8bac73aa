"""Building a scan's real dependencies: ARM clients, Azure Monitor, DNS, Table Storage, the queue.

SNAT metrics are read in batches from the regional metrics data plane of the ARM endpoint's cloud
(`https://<region>.metrics.monitor.azure.com` for public Azure); `metrics_endpoint` overrides
that (the simulator, a cloud clients.py does not know; `{region}` in it is replaced). For an
unknown cloud without override, metrics are read per resource through ARM.

Used by the timer function (from app settings) and by `tunnelwatch scan` (from its options).
Storage comes from the Functions host's own connection: a connection string in
`<prefix>` (local, Azurite) or identity-based `<prefix>__tableServiceUri` /
`<prefix>__queueServiceUri` (or `<prefix>__accountName`: shared.adapters.storage_endpoints) with
`<prefix>__credential=managedidentity` and `<prefix>__clientId` (Azure). Secrets (connection
strings) are never logged.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from shared.adapters.arm_reads import ArmReads, cached_inventory
from shared.adapters.clients import (
    ArmClients,
    RetrySettings,
    build_clients,
    build_metrics_batch_client,
    build_monitor_client,
    metrics_endpoint_for,
)
from shared.adapters.probe_ledger import ProbeLedger
from shared.adapters.queues import STORAGE_CONNECT_TIMEOUT, STORAGE_READ_TIMEOUT, ProbeQueue
from shared.adapters.runcommand import RunCommandRunner
from shared.adapters.storage_endpoints import service_uris
from shared.adapters.tables import FindingStore
from shared.errors import ConfigError
from shared.jobs.probe import ProbeDeps
from shared.jobs.scan import Resolver, ScanDeps

__all__ = [
    "cached_inventory",
    "dns_resolver",
    "probe_deps",
    "scan_deps",
    "static_resolver",
    "storage_clients",
]


def dns_resolver(name: str) -> tuple[str, ...]:
    """IPv4 then IPv6 addresses of `name`, as this process's DNS sees them."""
    infos = socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def static_resolver(overrides: Mapping[str, str], fallback: Resolver | None) -> Resolver:
    """Names given explicitly (like curl --resolve) first, then `fallback` (or nothing)."""
    table = {k.lower().rstrip("."): v for k, v in overrides.items()}

    def resolve(name: str) -> tuple[str, ...]:
        hit = table.get(name.lower().rstrip("."))
        if hit is not None:
            return (hit,)
        if fallback is None:
            raise OSError(f"{name}: not in the --resolve list")
        return fallback(name)

    return resolve


# No request may hang on a storage account that stopped answering (the SDK sets no read bound).
_TABLE_OPTIONS: dict[str, Any] = {
    "connection_timeout": STORAGE_CONNECT_TIMEOUT,
    "read_timeout": STORAGE_READ_TIMEOUT,
}


def _check_endpoints(name: str, conn: str) -> None:
    """The SDK only parses a connection string's endpoints on the first request, where a bad
    one fails as a network error: say so now, naming the key (never the string: it holds the
    account key)."""
    for part in conn.split(";"):
        key, _, value = part.partition("=")
        if key.strip().endswith("Endpoint") and value.strip():
            url = urlsplit(value.strip())
            if url.scheme not in ("http", "https") or not url.hostname or " " in value.strip():
                raise ConfigError([f"{name}: {key.strip()} is not an http(s) URL"])


def storage_clients(
    environ: Mapping[str, str], prefix: str, queue_name: str
) -> tuple[TableServiceClient, ProbeQueue]:
    """The table service and the probe queue from the host's storage connection settings.

    Another queue of the same account: `ProbeQueue.sibling(name)`.
    """
    conn = environ.get(prefix, "").strip()
    if conn:
        _check_endpoints(prefix, conn)
        try:
            return (
                TableServiceClient.from_connection_string(conn, **_TABLE_OPTIONS),
                ProbeQueue.from_connection_string(conn, queue_name),
            )
        except ValueError:
            # The SDK's message may quote the string, and the string holds the account key.
            raise ConfigError(
                [
                    f"{prefix}: not a storage connection string (expected "
                    "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;... or "
                    "UseDevelopmentStorage=true)"
                ]
            ) from None
    uris = service_uris(environ, prefix)
    if uris is None:
        raise ConfigError(
            [
                f"{prefix}: set a connection string, or {prefix}__accountName (or "
                f"{prefix}__tableServiceUri and {prefix}__queueServiceUri) with "
                f"{prefix}__credential=managedidentity"
            ]
        )
    table_uri, queue_uri = uris
    credential: TokenCredential
    client_id = environ.get(f"{prefix}__clientId", "").strip()
    if environ.get(f"{prefix}__credential", "").strip().lower() == "managedidentity":
        credential = ManagedIdentityCredential(client_id=client_id or None)
    else:
        credential = DefaultAzureCredential()
    return (
        TableServiceClient(endpoint=table_uri, credential=credential, **_TABLE_OPTIONS),
        ProbeQueue.from_account_url(queue_uri, queue_name, credential),
    )


def scan_deps(
    credential: TokenCredential,
    *,
    arm_endpoint: str,
    ca_bundle: str | None,
    resolver: Resolver,
    store: FindingStore | None,
    queue: ProbeQueue | None,
    clock: Callable[[], datetime] | None = None,
    progress: Callable[[str], None] | None = None,
    metrics_endpoint: str | None = None,
    retry: RetrySettings | None = None,
    read_timeout: float = 60.0,
) -> ScanDeps:
    """`retry` and `read_timeout` (seconds per response) apply to every ARM and metrics
    client; the defaults are production's, tests shorten them to keep fault runs fast."""
    if metrics_endpoint:
        metrics_endpoint_for(arm_endpoint, "region", metrics_endpoint)  # not https: fail now
    clients: dict[str, ArmClients] = {}
    batch: dict[tuple[str, str], MetricsClient] = {}

    def clients_for(subscription: str) -> ArmClients:
        if subscription not in clients:
            clients[subscription] = build_clients(
                credential, subscription, arm_endpoint=arm_endpoint, ca_bundle=ca_bundle,
                retry=retry, read_timeout=read_timeout,
            )  # fmt: skip
        return clients[subscription]

    def monitor_for(subscription: str) -> MonitorManagementClient:
        arm = clients_for(subscription)
        return build_monitor_client(
            credential, subscription, arm_endpoint=arm_endpoint, ca_bundle=ca_bundle,
            counter=arm.counter, retry=retry, read_timeout=read_timeout,
        )  # fmt: skip

    def metrics_batch_for(subscription: str, region: str) -> MetricsClient | None:
        endpoint = metrics_endpoint_for(arm_endpoint, region, metrics_endpoint)
        if endpoint is None:
            return None
        key = (subscription.lower(), endpoint)
        if key not in batch:
            # counted with the subscription's ARM calls: one figure per scan
            batch[key] = build_metrics_batch_client(
                credential, endpoint, ca_bundle=ca_bundle, retry=retry, read_timeout=read_timeout,
                counter=clients_for(subscription).counter,
            )  # fmt: skip
        return batch[key]

    arm = ArmReads(clients_for, monitor_for, metrics_batch_for)
    return ScanDeps(
        inventory=arm.inventory,
        service_tags=arm.service_tags,
        snat_metrics=arm.snat_metrics,
        arm_calls=arm.calls,
        resolver=resolver,
        clock=clock or (lambda: datetime.now(UTC)),
        store=store,
        queue=queue,
        progress=progress,
    )


def probe_deps(
    credential: TokenCredential,
    *,
    arm_endpoint: str,
    ca_bundle: str | None,
    store: FindingStore,
    ledger: ProbeLedger,
    queue: ProbeQueue,
    poison: ProbeQueue,
    clock: Callable[[], datetime] | None = None,
    inventory_ttl_seconds: float = 300,
    retry: RetrySettings | None = None,
    read_timeout: float = 60.0,
    run_command_timeout: float = 300,
) -> ProbeDeps:
    """`retry`, `read_timeout` and `run_command_timeout` (seconds a run command may take):
    production's defaults; tests shorten them to keep fault runs fast."""
    clients: dict[str, ArmClients] = {}
    now = clock or (lambda: datetime.now(UTC))

    def clients_for(subscription: str) -> ArmClients:
        if subscription not in clients:
            clients[subscription] = build_clients(
                credential, subscription, arm_endpoint=arm_endpoint, ca_bundle=ca_bundle,
                retry=retry, read_timeout=read_timeout,
            )  # fmt: skip
        return clients[subscription]

    def runner_for(subscription: str) -> RunCommandRunner:
        compute = clients_for(subscription.lower()).compute
        return RunCommandRunner(compute, timeout_seconds=run_command_timeout)

    return ProbeDeps(
        inventory=cached_inventory(clients_for, now, inventory_ttl_seconds),
        runner_for=runner_for,
        store=store,
        ledger=ledger,
        queue=queue,
        poison=poison,
        clock=now,
    )
