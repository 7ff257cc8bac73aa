"""The ports: what the jobs need from outside, as small Protocols.

A job (scan, probe worker, probe cycle) is handed objects that have these shapes and never an
SDK type; shared/compose.py builds the real ones (shared/adapters), tests may hand in small
fakes. A port returns our own values and raises only our own errors (shared/errors.py):

    ArmError      an ARM or Azure Monitor read failed after the clients' retries
    StorageError  Table or Queue storage failed after the retries that are safe
    InputError    what was read cannot be understood

Most ports are one call, written as `__call__`, so a plain function is one too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from shared.analysis.nsg import ServiceTags
from shared.core.arm_calls import CallCounts
from shared.core.lifecycle import FindingState, Observation, StoredFinding
from shared.core.metrics import MetricsRead, MetricsTarget
from shared.core.probe_claims import LedgerEntry
from shared.core.records import RecordResult, ScanRun
from shared.core.runcommand import RunOutcome
from shared.inventory.model import Estate
from shared.probe_requests import ProbeRequest

__all__ = [
    "ArmCallCounts",
    "FindingRecords",
    "Inventory",
    "ProbeClaims",
    "ProbeSender",
    "RunCommand",
    "RunCommandFor",
    "ServiceTagSource",
    "SnatMetricsSource",
]


class Inventory(Protocol):
    """subscription -> its AKS estate. Reads that failed inside the estate are its
    `errors`; a subscription whose cluster list cannot be read raises ArmError."""

    def __call__(self, subscription: str, /) -> Estate: ...


class ServiceTagSource(Protocol):
    """(subscription, location) -> the service tags ARM gives for that location.
    Raises ArmError (not answered) or InputError (an answer we cannot read)."""

    def __call__(self, subscription: str, location: str, /) -> ServiceTags: ...


class SnatMetricsSource(Protocol):
    """SNAT metrics of many load balancers / NAT gateways of one subscription, read at once.
    Never raises for a failed read: a resource that could not be read is in the result's
    `errors`, fallbacks in its `notes`."""

    def __call__(
        self,
        subscription: str,
        targets: Sequence[MetricsTarget],
        /,
        *,
        now: datetime,
        window_minutes: int,
    ) -> MetricsRead: ...


class ArmCallCounts(Protocol):
    """subscription -> ARM (and metrics) calls made for it so far (`requests` by operation,
    429 answers in `throttled`); a job takes the difference over its run."""

    def __call__(self, subscription: str, /) -> CallCounts: ...


class FindingRecords(Protocol):
    """The finding store as the jobs use it (shared/adapters/tables FindingStore)."""

    def record_cluster(self, scan: Observation, *, run_id: str, now: datetime) -> RecordResult: ...

    def save_run(self, run: ScanRun) -> None: ...

    def current_findings(
        self, cluster_id: str, *, state: FindingState | None = None
    ) -> list[StoredFinding]: ...


class ProbeSender(Protocol):
    """A probe-requests queue (or its poison queue). Raises StorageError."""

    def send(self, request: ProbeRequest, *, delay_seconds: int = 0) -> None: ...

    def send_all(self, requests: Iterable[ProbeRequest]) -> int: ...


class ProbeClaims(Protocol):
    """The probe ledger: one row per request, claimed atomically; a budget per cycle."""

    def get(self, scan_id: str, request_id: str) -> LedgerEntry | None: ...

    def put(self, entry: LedgerEntry) -> None: ...

    def claim(self, entry: LedgerEntry, *, lease: timedelta) -> tuple[bool, LedgerEntry]: ...

    def spend(self, scan_id: str, count: int, budget: int) -> bool: ...


class RunCommand(Protocol):
    """Run command on one scale-set VM: a failure is a RunOutcome, never an exception
    (InputError only for a parameter that could be shell code: a caller's bug)."""

    def run(
        self,
        node_resource_group: str,
        vmss: str,
        instance_id: str,
        script: str,
        parameters: Sequence[tuple[str, str]],
    ) -> RunOutcome: ...


class RunCommandFor(Protocol):
    """subscription -> its run command client."""

    def __call__(self, subscription: str, /) -> RunCommand: ...


# The notification outbox (finding flips to send) is added here by the notifications issue.
