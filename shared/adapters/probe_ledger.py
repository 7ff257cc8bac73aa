"""The probe ledger: one Table Storage row per probe request, so a redelivered message is a no-op.

Table `<prefix>probes`, PartitionKey = the scan or cycle id that asked for the probe, RowKey =
the request id (a uuid). The worker writes RUNNING before its run command and the outcome after;
a message whose row already holds a final outcome, or a RETRY for this or a later attempt, was
handled before (a queue delivers at least once) and is dropped without a run command. The rows
also answer "how many run commands did this cycle cost" with one partition query.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.tables.limits import fit_text

__all__ = ["LedgerEntry", "ProbeLedger", "ProbeStatus"]

log = logging.getLogger(__name__)


class ProbeStatus(StrEnum):
    RUNNING = "running"  # the run command was started (a crash here means: run it again)
    DONE = "done"  # findings recorded
    RETRY = "retry"  # a later attempt was queued (busy VM, throttling, a failure)
    SKIPPED = "skipped"  # stopped instance, Windows pool, opted out, gone
    DENIED = "denied"  # run command not permitted: a coverage finding was recorded
    REFUSED = "refused"  # the message did not match the inventory: nothing was run
    POISONED = "poisoned"  # out of attempts: an inconclusive finding was recorded

    @property
    def final(self) -> bool:
        return self not in (ProbeStatus.RUNNING, ProbeStatus.RETRY)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    scan_id: str
    request_id: str
    status: ProbeStatus
    attempt: int
    kind: str
    cluster_id: str
    target: str  # vmss/instance
    detail: str
    run_commands: int
    updated: datetime


class ProbeLedger:
    def __init__(self, service: TableServiceClient, *, prefix: str = "tunnelwatch") -> None:
        self.table_name = f"{prefix}probes"
        self._service = service
        self._client: TableClient | None = None

    def ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._service.create_table_if_not_exists(self.table_name)

    def _table(self) -> TableClient:
        if self._client is None:
            self._client = self._service.get_table_client(self.table_name)
        return self._client

    def get(self, scan_id: str, request_id: str) -> LedgerEntry | None:
        try:
            entity = self._table().get_entity(partition_key=scan_id, row_key=request_id)
        except ResourceNotFoundError:
            return None
        return _entry(entity)

    def put(self, entry: LedgerEntry) -> None:
        detail, _ = fit_text(entry.detail, 8_000)
        self._table().upsert_entity(
            {
                "PartitionKey": entry.scan_id,
                "RowKey": entry.request_id,
                "status": entry.status.value,
                "attempt": entry.attempt,
                "kind": entry.kind,
                "cluster_id": entry.cluster_id,
                "target": entry.target,
                "detail": detail,
                "run_commands": entry.run_commands,
                "updated": entry.updated,
            },
            mode=UpdateMode.REPLACE,
        )

    def entries(self, scan_id: str) -> Iterator[LedgerEntry]:
        rows = self._table().query_entities(
            "PartitionKey eq @pk", parameters={"pk": scan_id}, results_per_page=1000
        )
        for entity in rows:
            yield _entry(entity)


def _entry(entity: dict[str, Any] | Any) -> LedgerEntry:
    try:
        status = ProbeStatus(str(entity.get("status", "")))
    except ValueError:
        status = ProbeStatus.RUNNING  # an unknown status is not final: run it again
    updated = entity.get("updated")
    return LedgerEntry(
        scan_id=str(entity["PartitionKey"]),
        request_id=str(entity["RowKey"]),
        status=status,
        attempt=int(entity.get("attempt", 0) or 0),
        kind=str(entity.get("kind", "")),
        cluster_id=str(entity.get("cluster_id", "")),
        target=str(entity.get("target", "")),
        detail=str(entity.get("detail", "")),
        run_commands=int(entity.get("run_commands", 0) or 0),
        updated=updated if isinstance(updated, datetime) else datetime.min,
    )
