"""The composition root: the one module that builds the jobs' real dependencies (ARM clients,
Azure Monitor, DNS, Table Storage, the queues) from Settings and the environment. `root_for`
keeps one Root per process, so every function invocation reuses what the first one built;
`tunnelwatch scan` builds its deps here too (`scan_deps`, `scan_options`). SDK clients are
constructed here (tables, storage credentials) and in shared/adapters/clients.py (ARM,
monitor, metrics, the default credential, queues): tests/unit/test_import_walk.py holds it so.

SNAT metrics are read in batches from the regional metrics data plane of the ARM endpoint's cloud
(`https://<region>.metrics.monitor.azure.com` for public Azure); `metrics_endpoint` overrides
that (the simulator, a cloud clients.py does not know; `{region}` in it is replaced). For an
unknown cloud without override, metrics are read per resource through ARM.

Storage comes from the Functions host's own connection: a connection string in
`<prefix>` (local, Azurite) or identity-based `<prefix>__tableServiceUri` /
`<prefix>__queueServiceUri` (or `<prefix>__accountName`: shared.adapters.storage_endpoints) with
`<prefix>__credential=managedidentity` and `<prefix>__clientId` (Azure). Secrets (connection
strings) are never logged.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from shared.adapters.arm_reads import ArmReads, cached_inventory, read_inventory
from shared.adapters.clients import (
    ArmClients,
    RetrySettings,
    build_clients,
    build_metrics_batch_client,
    build_monitor_client,
    default_credential,
    metrics_endpoint_for,
)
from shared.adapters.probe_ledger import ProbeLedger
from shared.adapters.queues import STORAGE_CONNECT_TIMEOUT, STORAGE_READ_TIMEOUT, ProbeQueue
from shared.adapters.runcommand import RunCommandRunner
from shared.adapters.storage_endpoints import service_uris
from shared.adapters.tables import FindingStore
from shared.adapters.telemetry import EVENTS_LOGGER
from shared.config import Settings
from shared.errors import ConfigError, StorageError
from shared.inventory.model import Estate
from shared.jobs.ports import Inventory
from shared.jobs.probe import ProbeDeps, ProbeOptions
from shared.jobs.scan import Resolver, ScanDeps, ScanOptions

__all__ = [
    "CycleDeps",
    "Root",
    "cached_inventory",
    "configure_telemetry",
    "dns_resolver",
    "make_credential",
    "make_telemetry_credential",
    "probe_deps",
    "probe_options",
    "root_for",
    "scan_deps",
    "scan_options",
    "static_resolver",
    "storage_clients",
]

log = logging.getLogger(__name__)


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


def _arm_clients_cache(
    credential: TokenCredential,
    *,
    arm_endpoint: str,
    ca_bundle: str | None,
    retry: RetrySettings | None,
    read_timeout: float,
) -> Callable[[str], ArmClients]:
    """subscription -> its ARM clients, built on first use and kept."""
    clients: dict[str, ArmClients] = {}

    def clients_for(subscription: str) -> ArmClients:
        if subscription not in clients:
            clients[subscription] = build_clients(
                credential, subscription, arm_endpoint=arm_endpoint, ca_bundle=ca_bundle,
                retry=retry, read_timeout=read_timeout,
            )  # fmt: skip
        return clients[subscription]

    return clients_for


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
    clients_for = _arm_clients_cache(
        credential, arm_endpoint=arm_endpoint, ca_bundle=ca_bundle, retry=retry,
        read_timeout=read_timeout,
    )  # fmt: skip
    batch: dict[tuple[str, str], MetricsClient] = {}
    monitors: dict[str, MonitorManagementClient] = {}

    def monitor_for(subscription: str) -> MonitorManagementClient:
        if subscription not in monitors:
            monitors[subscription] = build_monitor_client(
                credential, subscription, arm_endpoint=arm_endpoint, ca_bundle=ca_bundle,
                counter=clients_for(subscription).counter, retry=retry, read_timeout=read_timeout,
            )  # fmt: skip
        return monitors[subscription]

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
    clients_for = _arm_clients_cache(
        credential, arm_endpoint=arm_endpoint, ca_bundle=ca_bundle, retry=retry,
        read_timeout=read_timeout,
    )  # fmt: skip
    now = clock or (lambda: datetime.now(UTC))

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


# --- The composition root: one per process -------------------------------------------------

CycleDeps = tuple[Inventory, ProbeQueue, FindingStore]

# The root's seams: ARM endpoint -> the credential of every ARM and metrics client; and the
# client id of the user-assigned identity -> the credential telemetry is sent with. Tests that
# run the root against the simulators assign factories of the simulator's credential.
make_credential: Callable[[str], TokenCredential] = default_credential


def _identity_credential(client_id: str | None) -> TokenCredential:
    return ManagedIdentityCredential(client_id=client_id)


make_telemetry_credential: Callable[[str | None], TokenCredential] = _identity_credential
_telemetry: list[bool] = []  # configured in this process (at most once)


def configure_telemetry(environ: Mapping[str, str]) -> bool:
    """Send custom events (shared.adapters.telemetry) to Application Insights, once per
    process; nothing without APPLICATIONINSIGHTS_CONNECTION_STRING (local runs, tests).

    Application Insights has local authentication disabled (infra), so the exporter signs in
    with the user-assigned identity (AZURE_CLIENT_ID); without a credential its uploads are
    rejected and nothing says so. Only the events logger is exported: the Functions host already
    records the invocations, their logs and dependencies, and tracing every ARM call again
    would multiply the ingestion.
    """
    connection = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection or _telemetry:
        return bool(_telemetry)
    # imported here: the distro is large, and only a process with a connection string needs it
    from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415

    configure_azure_monitor(
        connection_string=connection,
        credential=make_telemetry_credential(environ.get("AZURE_CLIENT_ID", "").strip() or None),
        logger_name=EVENTS_LOGGER,
        disable_tracing=True,
        disable_metrics=True,
        enable_live_metrics=False,
    )
    _telemetry.append(True)
    log.info("telemetry: custom events go to Application Insights")
    return True


def scan_options(settings: Settings) -> ScanOptions:
    """The scan's options from Settings: the timer and `tunnelwatch scan` alike."""
    return ScanOptions(
        subscriptions=settings.subscriptions,
        snat_threshold_percent=settings.snat_threshold_percent,
        snat_window_minutes=settings.snat_window_minutes,
        snat_min_bad_points=settings.snat_min_bad_points,
        check_legacy_tunnel_ports=settings.check_legacy_tunnel_ports,
        probe_budget=settings.probe_budget,
        service_tags_cache_hours=settings.service_tags_cache_hours,
    )


def probe_options(settings: Settings) -> ProbeOptions:
    return ProbeOptions(subscriptions=settings.subscriptions, budget=settings.probe_budget)


class Root:
    """Every client and adapter of one process, built from its Settings and environment on
    first use and kept: the Functions worker runs every trigger of the app in one process, and
    each invocation reuses them (the service-tag cache and the probe worker's inventory cache
    live in the deps; tables and queues are created once). One credential serves every ARM
    and metrics client; each job family has its own clients, so a scan's call counts are its
    own even while the probe worker runs beside it.

    Creating tables and queues is retried on the next use until it succeeded once: storage
    that is down when the process starts must not leave them missing for its lifetime.
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self._environ = dict(environ)
        self._lock = threading.RLock()
        self._credential: TokenCredential | None = None
        self._storage: tuple[TableServiceClient, ProbeQueue] | None = None
        self._store: FindingStore | None = None
        self._ledger: ProbeLedger | None = None
        self._poison: ProbeQueue | None = None
        self._scan: ScanDeps | None = None
        self._probe: ProbeDeps | None = None
        self._cycle: CycleDeps | None = None
        self._created: set[str] = set()  # tables and queues known to exist

    def credential(self) -> TokenCredential:
        with self._lock:
            if self._credential is None:
                self._credential = make_credential(self.settings.arm_endpoint)
            return self._credential

    def _tables_and_queue(self) -> tuple[TableServiceClient, ProbeQueue]:
        if self._storage is None:
            s = self.settings
            self._storage = storage_clients(self._environ, s.storage_connection, s.probe_queue)
        return self._storage

    def store(self) -> FindingStore:
        with self._lock:
            if self._store is None:
                tables, _ = self._tables_and_queue()
                self._store = FindingStore(
                    tables, prefix=self.settings.table_prefix, damping=self.settings.damping
                )
            return self._store

    def queue(self) -> ProbeQueue:
        with self._lock:
            return self._tables_and_queue()[1]

    def _create(self, name: str, create: Callable[[], None]) -> None:
        """Create a table or queue once per process (raises StorageError, retried next use)."""
        if name not in self._created:
            create()
            self._created.add(name)

    def scan(self) -> ScanDeps:
        with self._lock:
            store, queue = self.store(), self.queue()
            for name, create in (("tables", store.ensure_tables), ("queue", queue.ensure)):
                try:
                    self._create(name, create)
                except StorageError as exc:
                    # Scan anyway: the run's first write fails too and ends it FAILED.
                    log.error("storage not ready: %s", exc)
            if self._scan is None:
                s = self.settings
                self._scan = scan_deps(
                    self.credential(), arm_endpoint=s.arm_endpoint,
                    ca_bundle=s.arm_ca_bundle or None, resolver=dns_resolver,
                    store=store, queue=queue,
                )  # fmt: skip
            return self._scan

    def probe(self) -> ProbeDeps:
        with self._lock:
            s = self.settings
            store, queue = self.store(), self.queue()
            if self._ledger is None:
                self._ledger = ProbeLedger(self._tables_and_queue()[0], prefix=s.table_prefix)
            if self._poison is None:
                self._poison = queue.sibling(f"{s.probe_queue}-poison")
            # The worker may run before any scan made them, and it sends to the poison queue
            # itself (the host creates that one only when it uses it).
            self._create("tables", store.ensure_tables)
            self._create("ledger", self._ledger.ensure)
            self._create("poison", self._poison.ensure)
            if self._probe is None:
                self._probe = probe_deps(
                    self.credential(), arm_endpoint=s.arm_endpoint,
                    ca_bundle=s.arm_ca_bundle or None, store=store, ledger=self._ledger,
                    queue=queue, poison=self._poison,
                )  # fmt: skip
            return self._probe

    def cycle(self) -> CycleDeps:
        """The probe timer's: an inventory read fresh each cycle (hourly), the queue, the store."""
        with self._lock:
            store, queue = self.store(), self.queue()
            self._create("queue", queue.ensure)
            self._create("tables", store.ensure_tables)
            if self._cycle is None:
                s = self.settings
                credential = self.credential()
                clients: dict[str, ArmClients] = {}

                def clients_for(subscription: str) -> ArmClients:
                    if subscription not in clients:
                        clients[subscription] = build_clients(
                            credential, subscription, arm_endpoint=s.arm_endpoint,
                            ca_bundle=s.arm_ca_bundle or None,
                        )  # fmt: skip
                    return clients[subscription]

                def inventory(subscription: str, /) -> Estate:
                    return read_inventory(clients_for(subscription), subscription)

                self._cycle = (inventory, queue, store)
            return self._cycle


_roots: dict[tuple[Settings, tuple[tuple[str, str], ...]], Root] = {}
_roots_lock = threading.Lock()


def _storage_environment(environ: Mapping[str, str], prefix: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((k, v) for k, v in environ.items() if k == prefix or k.startswith(f"{prefix}__"))
    )


def root_for(settings: Settings, environ: Mapping[str, str]) -> Root:
    """This process's root for these settings (built on first use, then the same one)."""
    key = (settings, _storage_environment(environ, settings.storage_connection))
    with _roots_lock:
        root = _roots.get(key)
        if root is None:
            configure_telemetry(environ)
            root = _roots[key] = Root(settings, environ)
        return root
