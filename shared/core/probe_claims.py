"""The probe ledger's records: one entry per probe request, and the status it reached.

The worker claims an entry before its run command and writes the outcome after, so a redelivered
message is a no-op; the Table Storage adapter is shared/adapters/probe_ledger.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = ["REFUSED_PARTITION", "LedgerEntry", "ProbeStatus", "is_duplicate"]

# Messages that were not probe requests at all (no scan id to file them under): one row each,
# RowKey = <time>-<queue>-<sha256 prefix of the message>, status REFUSED, kind = the queue.
REFUSED_PARTITION = "~refused"


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
    run_commands: int  # every run command this request cost, over all its attempts
    updated: datetime
    owner: str = ""  # the queue message (id) whose worker holds a RUNNING row


def is_duplicate(seen: LedgerEntry, wanted: LedgerEntry, lease: timedelta) -> bool:
    """Whether a delivery (`wanted`) is a duplicate of the entry already there (`seen`): a
    final entry; a RETRY already queued for this or a later attempt; a RUNNING entry of a
    later attempt, or of another message and younger than `lease` (its worker is alive). A
    RUNNING entry of the same message is ours again (the worker before us died)."""
    if seen.status.final:
        return True
    if seen.status is ProbeStatus.RETRY:
        return seen.attempt >= wanted.attempt
    # RUNNING
    if seen.attempt > wanted.attempt:
        return True
    if seen.owner and seen.owner == wanted.owner:
        return False  # our own message again: the worker before us did not finish
    return wanted.updated - seen.updated < lease
