"""The probe cycle (PROBE_SCHEDULE): a triage request per probeable node pool, within budget.

One inventory read per subscription; the requests go to the probe queue, where the worker
(shared.jobs.probe) runs them. A pool whose request cannot be made (a name outside the request's
rules) gets a COVERAGE finding in its triage scope instead, and the others are queued as usual.
The scan queues triage requests of its own, at once, for clusters it found suspect; this cycle
is the routine pass over every cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from shared.core.lifecycle import Coverage, Observation
from shared.errors import ArmError, InputError
from shared.inventory.model import Estate
from shared.jobs.ports import FindingRecords, Inventory, ProbeSender
from shared.jobs.probe_plan import Refused, cycle_requests
from shared.probe_requests import ProbeRequest

__all__ = ["CycleOutcome", "record_refused", "run_probe_cycle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    cycle_id: str
    requests: tuple[ProbeRequest, ...]
    skipped: tuple[str, ...]  # pools not probed this cycle, with the reason
    errors: tuple[str, ...]
    refused: tuple[Refused, ...] = ()  # pools with no request: a COVERAGE finding each


def run_probe_cycle(
    subscriptions: tuple[str, ...],
    *,
    inventory: Inventory,
    queue: ProbeSender | None,
    budget: int,
    now: datetime,
    store: FindingRecords | None = None,
) -> CycleOutcome:
    cycle_id = f"probe-{now:%Y%m%dT%H%M%SZ}"
    estates: list[Estate] = []
    errors: list[str] = []
    for subscription in subscriptions:
        try:
            estates.append(inventory(subscription))
        except (ArmError, InputError) as exc:
            errors.append(f"subscription {subscription}: inventory failed: {exc}")
            log.error("probe cycle %s: subscription %s: %s", cycle_id, subscription, exc)
    requests, skipped, refused = cycle_requests(
        estates, cycle_id=cycle_id, budget=budget, now=now, reason="routine probe cycle"
    )
    if queue is not None:
        queue.send_all(requests)
    if store is not None:
        record_refused(store, refused, run_id=cycle_id, now=now)
    log.info(
        "probe cycle %s: %d triage requests queued (budget %d), %d pools not probed",
        cycle_id, len(requests), budget, len(skipped),
    )  # fmt: skip
    return CycleOutcome(cycle_id, tuple(requests), tuple(skipped), tuple(errors), tuple(refused))


def record_refused(
    store: FindingRecords, refused: list[Refused], *, run_id: str, now: datetime
) -> None:
    """Store each refusal in its pool's triage scope, as PARTIAL: the pool was not probed, so
    the findings its earlier probes opened stay open; its next successful triage resolves it."""
    for r in refused:
        log.warning("run %s: cluster %s: %s", run_id, r.cluster.id, r.why)
        store.record_cluster(
            Observation(
                r.cluster.id, Coverage.PARTIAL, (r.finding,), scope=r.scope,
                reason=r.why[:500],
            ),
            run_id=run_id,
            now=now,
        )  # fmt: skip
