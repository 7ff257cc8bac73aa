"""The scan timer: every SCAN_SCHEDULE (default 5 minutes), scan, record, queue node probes.

Decode (nothing to decode for a timer) -> one job (shared.jobs.scan.run_scan) -> log the outcome.
`make_deps` is this trigger's single seam: production builds Azure clients from the app settings;
tests assign a factory that points at the ARM simulator and Azurite.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

import azure.functions as func

from shared.adapters.clients import default_credential
from shared.adapters.tables import FindingStore
from shared.compose import dns_resolver, scan_deps, storage_clients
from shared.config import Settings
from shared.errors import StorageError
from shared.jobs.scan import ScanDeps, ScanOptions, ScanOutcome, run_scan
from shared.redaction import redacted_exceptions

log = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


def production_deps(settings: Settings, environ: Mapping[str, str]) -> ScanDeps:
    tables, queue = storage_clients(environ, settings.storage_connection, settings.probe_queue)
    store = FindingStore(tables, prefix=settings.table_prefix)
    for ensure in (store.ensure_tables, queue.ensure):
        try:
            ensure()
        except StorageError as exc:
            # Scan anyway: the run's first write fails too and ends it FAILED with the reason.
            log.error("storage not ready: %s", exc)
    return scan_deps(
        default_credential(settings.arm_endpoint),
        arm_endpoint=settings.arm_endpoint,
        ca_bundle=settings.arm_ca_bundle or None,
        resolver=dns_resolver,
        store=store,
        queue=queue,
    )


make_deps: Callable[[Settings, Mapping[str, str]], ScanDeps] = production_deps


def scan_once(environ: Mapping[str, str]) -> ScanOutcome:
    settings = Settings.from_env(environ)  # ConfigError lists every bad setting at once
    options = ScanOptions(
        subscriptions=settings.subscriptions,
        snat_threshold_percent=settings.snat_threshold_percent,
        snat_window_minutes=settings.snat_window_minutes,
        snat_min_bad_points=settings.snat_min_bad_points,
        check_legacy_tunnel_ports=settings.check_legacy_tunnel_ports,
        probe_budget=settings.probe_budget,
        service_tags_cache_hours=settings.service_tags_cache_hours,
    )
    return run_scan(options, make_deps(settings, environ))


@bp.timer_trigger(
    schedule="%SCAN_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def scan_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("scan timer is past due: running now")
    with redacted_exceptions():  # the worker hands an exception's text to the host
        outcome = scan_once(os.environ)
    run = outcome.run
    log.info(
        "scan %s %s: %d clusters (%d failed), %d findings, %d ARM calls, %d probes queued",
        run.run_id, run.status.value, run.clusters_scanned, len(run.clusters_failed),
        len(outcome.findings), run.arm_calls, len(outcome.probe_requests),
    )  # fmt: skip
    for error in run.errors:
        log.error("scan %s: %s", run.run_id, error)
    if outcome.storage_error:
        log.error("scan %s: findings not recorded: %s", run.run_id, outcome.storage_error)
