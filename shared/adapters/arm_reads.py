"""The ARM side of the jobs' ports (shared/jobs/ports.py): inventory, service tags, SNAT metrics
and the call counts, over clients that shared/compose.py built.

The SDK's errors stop here: a read that failed after the clients' retries becomes ArmError
(status, ARM code and message as describe_error writes them), so a job never catches an SDK
type. `cached_inventory` keeps a subscription's estate for a few minutes for the probe worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from shared.adapters.arm_documents.rest import as_doc
from shared.adapters.arm_inventory import describe_error, read_estate
from shared.adapters.callcount import CallCounts
from shared.adapters.clients import ArmClients
from shared.adapters.metrics import MetricsRead, MetricsTarget, read_snat_metrics_batch
from shared.analysis.nsg import ServiceTags, load_service_tags
from shared.errors import ArmError
from shared.inventory.model import Estate

__all__ = ["ArmReads", "arm_error", "cached_inventory", "read_inventory"]


def arm_error(operation: str, exc: AzureError) -> ArmError:
    return ArmError(operation, describe_error(exc), kind=type(exc).__name__)


def read_inventory(clients: ArmClients, subscription: str) -> Estate:
    """read_estate, with a failed cluster list as ArmError."""
    try:
        return read_estate(clients, subscription)
    except AzureError as exc:
        raise arm_error(f"subscription {subscription}: cluster list", exc) from None


class ArmReads:
    """Inventory, service tags, SNAT metrics and call counts of the subscriptions that
    `clients_for` builds clients for (built once per subscription by the composition root)."""

    def __init__(
        self,
        clients_for: Callable[[str], ArmClients],
        monitor_for: Callable[[str], MonitorManagementClient],
        metrics_batch_for: Callable[[str, str], MetricsClient | None] | None = None,
    ) -> None:
        self._clients_for = clients_for
        self._monitor_for = monitor_for
        self._batch_for = metrics_batch_for

    def clients(self, subscription: str) -> ArmClients:
        return self._clients_for(subscription)

    def inventory(self, subscription: str) -> Estate:
        return read_inventory(self._clients_for(subscription), subscription)

    def service_tags(self, subscription: str, location: str) -> ServiceTags:
        network = self._clients_for(subscription).network
        try:
            doc: dict[str, Any] = as_doc(network.service_tags.list(location))
        except AzureError as exc:
            raise arm_error(f"service tags {location}", exc) from None
        return load_service_tags(doc, f"service tags {location}")

    def snat_metrics(
        self,
        subscription: str,
        targets: Sequence[MetricsTarget],
        *,
        now: datetime,
        window_minutes: int,
    ) -> MetricsRead:
        make = self._batch_for

        def batch_for(sub: str, region: str) -> MetricsClient | None:
            # the estate's spelling: the root keys its clients (and call counters) by it
            same = sub.lower() == subscription.lower()
            return make(subscription if same else sub, region) if make else None

        return read_snat_metrics_batch(
            targets,
            batch_client_for=batch_for,
            monitor=self._monitor_for(subscription),
            now=now,
            window_minutes=window_minutes,
        )

    def calls(self, subscription: str) -> CallCounts:
        # The monitor and metrics clients share the ARM clients' counter (compose.py).
        return self._clients_for(subscription).counter.snapshot()


def cached_inventory(
    clients_for: Callable[[str], ArmClients],
    clock: Callable[[], datetime],
    ttl_seconds: float = 300,
) -> Callable[[str], Estate]:
    """subscription -> its estate, read again when older than `ttl_seconds`.

    A probe cycle brings many messages at once; each is checked against the inventory, and
    reading the subscription once per few minutes (not once per message) keeps ARM reads flat.
    Stale data costs little: a stopped or removed instance answers run command with 409/404,
    which the worker records as skipped.
    """
    cache: dict[str, tuple[datetime, Estate]] = {}
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    def inventory(subscription: str) -> Estate:
        key = subscription.lower()
        with guard:
            lock = locks.setdefault(key, threading.Lock())
        # The host runs several messages at once: when the entry expires, one of them reads
        # the subscription again and the others wait for that read instead of repeating it.
        with lock:
            now = clock()
            hit = cache.get(key)
            if hit is not None and (now - hit[0]).total_seconds() < ttl_seconds:
                return hit[1]
            estate = read_inventory(clients_for(key), key)
            cache[key] = (now, estate)
            return estate

    return inventory
