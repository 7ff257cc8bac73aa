"""The scan timer: every SCAN_SCHEDULE (default 5 minutes), scan, record, queue node probes.

Decode (nothing to decode for a timer) -> one job (shared.jobs.scan.run_scan) -> log the outcome.
`make_deps` is this trigger's single seam: production takes the process's composition root
(shared.compose: clients and adapters built once, reused by every run); tests assign a factory
that points at the ARM simulator and Azurite.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

import azure.functions as func

from shared.adapters.telemetry import custom_event
from shared.analysis.findings import Kind
from shared.compose import root_for, scan_options
from shared.config import Settings
from shared.jobs.scan import ScanDeps, ScanOutcome, run_scan
from shared.redaction import redacted_exceptions

log = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


def production_deps(settings: Settings, environ: Mapping[str, str]) -> ScanDeps:
    return root_for(settings, environ).scan()


make_deps: Callable[[Settings, Mapping[str, str]], ScanDeps] = production_deps


def scan_once(environ: Mapping[str, str]) -> ScanOutcome:
    settings = Settings.from_env(environ)  # ConfigError lists every bad setting at once
    return run_scan(scan_options(settings), make_deps(settings, environ))


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
    custom_event("scan.completed", completed_event(outcome))


def completed_event(outcome: ScanOutcome) -> dict[str, str | int | float | bool]:
    """The `scan.completed` event's dimensions: the run's counts (customEvents in
    Application Insights when telemetry is configured; a log line otherwise)."""
    run = outcome.run
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "clusters": run.clusters_scanned,
        "clusters_failed": len(run.clusters_failed),
        "findings": len(outcome.findings),
        "problems": sum(f.kind is Kind.PROBLEM for f in outcome.findings),
        "arm_calls": run.arm_calls,
        "probes_queued": len(outcome.probe_requests),
        "errors": len(run.errors),
        "recorded": not outcome.storage_error,
        "seconds": round(outcome.seconds, 1),
    }
