"""The probe timer: every PROBE_SCHEDULE (default hourly), queue a triage per node pool.

Decode (nothing for a timer) -> one job (shared.jobs.probe_cycle.run_probe_cycle) -> log.
PROBE_BUDGET 0 (what Bicep sets while enableNodeProbes is false) returns before anything is
built or read. The finding store receives the COVERAGE findings of pools whose probe request a
name made impossible.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import azure.functions as func

from shared.compose import CycleDeps, root_for
from shared.config import Settings
from shared.inventory.model import Estate
from shared.jobs.probe_cycle import CycleOutcome, run_probe_cycle
from shared.redaction import redacted_exceptions

log = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


__all__ = ["CycleDeps", "bp", "make_deps", "probe_cycle_once", "probe_timer"]


def production_deps(settings: Settings, environ: Mapping[str, str]) -> CycleDeps:
    return root_for(settings, environ).cycle()


make_deps: Callable[[Settings, Mapping[str, str]], CycleDeps] = production_deps


def _no_inventory(subscription: str, /) -> Estate:
    raise RuntimeError(f"subscription {subscription}: no inventory while PROBE_BUDGET is 0")


def probe_cycle_once(environ: Mapping[str, str], now: datetime | None = None) -> CycleOutcome:
    settings = Settings.from_env(environ)
    if settings.probe_budget == 0:
        # Probes are off: no client, no storage, no estate read (a few hundred ARM reads an
        # hour for nothing). The empty cycle still logs its line and returns its outcome.
        return run_probe_cycle(
            (), inventory=_no_inventory, queue=None, budget=0, now=now or datetime.now(UTC)
        )
    inventory, queue, store = make_deps(settings, environ)
    return run_probe_cycle(
        settings.subscriptions,
        inventory=inventory,
        queue=queue,
        budget=settings.probe_budget,
        now=now or datetime.now(UTC),
        store=store,
    )


@bp.timer_trigger(
    schedule="%PROBE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def probe_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("probe timer is past due: running now")
    with redacted_exceptions():  # the worker hands an exception's text to the host
        outcome = probe_cycle_once(os.environ)
    for error in outcome.errors:
        log.error("probe cycle %s: %s", outcome.cycle_id, error)
