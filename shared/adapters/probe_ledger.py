"""The probe ledger: one Table Storage row per probe request, so a redelivered message is a no-op.

Table `<prefix>probes`, PartitionKey = the scan or cycle id that asked for the probe, RowKey =
the request id (a uuid). The worker claims the row (RUNNING, conditional on its ETag) before its
run command and writes the outcome after; a message whose row already holds a final outcome, a
RETRY for this or a later attempt, or a fresh RUNNING claim of another message, was handled or
is being handled (a queue delivers at least once) and is dropped without a run command. The rows
also answer "how many run commands did this cycle cost" with one partition query, and a
counter row (`~budget`) holds what the cycle took from PROBE_BUDGET.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.adapters.arm_inventory import describe_error
from shared.adapters.tables.limits import fit_text
from shared.core.probe_claims import REFUSED_PARTITION, LedgerEntry, ProbeStatus, is_duplicate
from shared.errors import StorageError
from shared.redaction import redact

__all__ = ["REFUSED_PARTITION", "LedgerEntry", "ProbeLedger", "ProbeStatus"]

log = logging.getLogger(__name__)

BUDGET_ROW = "~budget"  # the cycle's run-command counter; sorts after every uuid row


P = ParamSpec("P")
R = TypeVar("R")


def _storage_errors(operation: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The project's StorageError for whatever the table service answers that the method does
    not handle itself: jobs see no SDK type (the host still retries the message)."""

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except AzureError as exc:
                raise StorageError(f"probe ledger: {operation}", describe_error(exc)) from None

        return guarded

    return wrap


class ProbeLedger:
    def __init__(self, service: TableServiceClient, *, prefix: str = "tunnelwatch") -> None:
        self.table_name = f"{prefix}probes"
        self._service = service
        self._client: TableClient | None = None

    @_storage_errors("create the ledger table")
    def ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._service.create_table_if_not_exists(self.table_name)

    def _table(self) -> TableClient:
        if self._client is None:
            self._client = self._service.get_table_client(self.table_name)
        return self._client

    @_storage_errors("read a ledger row")
    def get(self, scan_id: str, request_id: str) -> LedgerEntry | None:
        try:
            entity = self._table().get_entity(partition_key=scan_id, row_key=request_id)
        except ResourceNotFoundError:
            return None
        return _entry(entity)

    @_storage_errors("write a ledger row")
    def put(self, entry: LedgerEntry) -> None:
        self._table().upsert_entity(_entity(entry), mode=UpdateMode.REPLACE)

    @_storage_errors("claim a ledger row")
    def claim(self, entry: LedgerEntry, *, lease: timedelta) -> tuple[bool, LedgerEntry]:
        """Take the request for this delivery, atomically: (True, the row now ours) when it
        is ours to run, (False, the row that makes this delivery a duplicate) otherwise.

        Ours: no row yet (created, ResourceExistsError if another worker was first); a RETRY
        of an earlier attempt (the delayed message we queued); a RUNNING row of the same
        queue message (the host redelivering after our crash) or one older than `lease` (a
        worker that died). A duplicate: a final row, a RETRY already queued for this or a
        later attempt, or a fresh RUNNING row of another message: two triages of one cycle
        that ask for the same deep probe must not both run it. Replacements are conditional
        on the row's ETag, so of two workers exactly one wins. The claimed row carries the
        run commands of the earlier attempts forward in `entry.run_commands`.
        """
        table = self._table()
        for _ in range(8):
            try:
                current = table.get_entity(partition_key=entry.scan_id, row_key=entry.request_id)
            except ResourceNotFoundError:
                try:
                    table.create_entity(_entity(entry))
                except ResourceExistsError:
                    continue  # another worker created it first: look again
                return True, entry
            seen = _entry(current)
            if is_duplicate(seen, entry, lease):
                return False, seen
            mine = replace(entry, run_commands=entry.run_commands + seen.run_commands)
            try:
                table.update_entity(
                    _entity(mine),
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                continue  # changed under us: decide again on what is there now
            return True, mine
        raise ResourceModifiedError(f"ledger row {entry.request_id}: too many concurrent writers")

    def entries(self, scan_id: str) -> Iterator[LedgerEntry]:
        rows = self._table().query_entities(
            "PartitionKey eq @pk", parameters={"pk": scan_id}, results_per_page=1000
        )
        try:
            for entity in rows:  # pages are fetched while iterating
                if entity["RowKey"] != BUDGET_ROW:
                    yield _entry(entity)
        except AzureError as exc:
            raise StorageError("probe ledger: read ledger rows", describe_error(exc)) from None

    @_storage_errors("take from the probe budget")
    def spend(self, scan_id: str, count: int, budget: int) -> bool:
        """Take `count` run commands from the cycle's `budget`, atomically: False (nothing
        taken) when they do not fit. One counter row per cycle, ETag-conditional, so workers
        on many instances share one budget."""
        table = self._table()
        for _ in range(16):
            try:
                row = table.get_entity(partition_key=scan_id, row_key=BUDGET_ROW)
            except ResourceNotFoundError:
                if count > budget:
                    return False
                try:
                    table.create_entity(
                        {"PartitionKey": scan_id, "RowKey": BUDGET_ROW, "spent": count}
                    )
                except ResourceExistsError:
                    continue
                return True
            spent = int(row.get("spent", 0) or 0)
            if spent + count > budget:
                return False
            try:
                table.update_entity(
                    {"PartitionKey": scan_id, "RowKey": BUDGET_ROW, "spent": spent + count},
                    mode=UpdateMode.REPLACE,
                    etag=row.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                continue
            return True
        raise ResourceModifiedError(f"budget row of {scan_id}: too many concurrent writers")

    @_storage_errors("read the probe budget")
    def spent(self, scan_id: str) -> int:
        """Run commands taken from the cycle's budget so far."""
        try:
            row = self._table().get_entity(partition_key=scan_id, row_key=BUDGET_ROW)
        except ResourceNotFoundError:
            return 0
        return int(row.get("spent", 0) or 0)


def _entity(entry: LedgerEntry) -> dict[str, Any]:
    detail, _ = fit_text(redact(entry.detail), 8_000)  # run-command errors quote ARM text
    return {
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
        "owner": entry.owner,
    }


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
        updated=updated if isinstance(updated, datetime) else datetime.min.replace(tzinfo=UTC),
        owner=str(entity.get("owner", "") or ""),
    )
