"""The probe ledger's contract (ProbeClaims, and the reads ProbeLedger offers), held by the
in-memory fake (tests/fakes/storage.py) and the real ProbeLedger on Azurite alike: who may run a
request, what a duplicate delivery is, and a budget several workers share."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.probe_ledger import LedgerEntry, ProbeLedger, ProbeStatus
from tests.azurite import azurite  # noqa: F401  (the session fixture)
from tests.fakes.storage import FakeProbeLedger

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=25)
_prefixes = itertools.count()
Ledger = FakeProbeLedger | ProbeLedger


@pytest.fixture(params=["fake", "azurite"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    if request.param == "fake":
        return FakeProbeLedger()
    conn: str = request.getfixturevalue("azurite")
    service = TableServiceClient.from_connection_string(conn)
    real = ProbeLedger(service, prefix=f"claims{next(_prefixes)}x{id(service) % 10**6}")
    real.ensure()
    return real


def entry(request_id: str = "req-1", *, status: ProbeStatus = ProbeStatus.RUNNING,
          attempt: int = 1, owner: str = "message-a", at: datetime = NOW,
          run_commands: int = 0, scan_id: str = "cycle-1") -> LedgerEntry:  # fmt: skip
    return LedgerEntry(
        scan_id, request_id, status, attempt, "triage", "/subscriptions/x/c", "vmss/0",
        status.value, run_commands, at, owner,
    )  # fmt: skip


def test_put_and_get_round_trip(ledger: Ledger) -> None:
    assert ledger.get("cycle-1", "req-1") is None
    e = entry(status=ProbeStatus.DONE, run_commands=2)
    ledger.put(e)
    assert ledger.get("cycle-1", "req-1") == e
    later = replace(e, detail="done again", updated=NOW + timedelta(minutes=1))
    ledger.put(later)  # replaces
    assert ledger.get("cycle-1", "req-1") == later
    assert ledger.get("cycle-2", "req-1") is None


def test_the_first_claim_creates_the_row(ledger: Ledger) -> None:
    e = entry()
    assert ledger.claim(e, lease=LEASE) == (True, e)
    assert ledger.get("cycle-1", "req-1") == e


@pytest.mark.parametrize(
    ("there", "wanted", "ours"),
    [
        # a final outcome: handled, whatever comes
        (entry(status=ProbeStatus.DONE), entry(attempt=2, owner="m2"), False),
        (entry(status=ProbeStatus.POISONED), entry(), False),
        # a RETRY queued for a later attempt: this delivery is the retry, or an older copy
        (entry(status=ProbeStatus.RETRY, attempt=1), entry(attempt=2, owner="m2"), True),
        (entry(status=ProbeStatus.RETRY, attempt=2), entry(attempt=2, owner="m2"), False),
        (entry(status=ProbeStatus.RETRY, attempt=3), entry(attempt=2, owner="m2"), False),
        # RUNNING: the same message again (our crash), another's fresh claim, a dead worker's
        (entry(owner="m1", at=NOW - timedelta(minutes=2)), entry(owner="m1"), True),
        (entry(owner="m1", at=NOW - timedelta(minutes=2)), entry(owner="m2"), False),
        (entry(owner="m1", at=NOW - timedelta(minutes=30)), entry(owner="m2"), True),
        (entry(owner="m1", attempt=2), entry(owner="m1", attempt=1), False),
    ],
)
def test_who_may_run_a_request(
    ledger: Ledger, there: LedgerEntry, wanted: LedgerEntry, ours: bool
) -> None:
    ledger.put(replace(there, run_commands=1))
    won, row = ledger.claim(replace(wanted, run_commands=1), lease=LEASE)
    assert won is ours
    if ours:  # the row is ours now and carries the earlier run commands forward
        assert row == replace(wanted, run_commands=2)
        assert ledger.get("cycle-1", "req-1") == row
    else:  # the row that makes this a duplicate, unchanged
        assert row == replace(there, run_commands=1)
        assert ledger.get("cycle-1", "req-1") == row


def test_of_workers_claiming_one_request_at_once_exactly_one_wins(ledger: Ledger) -> None:
    start = threading.Barrier(6)

    def claim(n: int) -> bool:
        start.wait()
        return ledger.claim(entry(owner=f"message-{n}"), lease=LEASE)[0]

    with ThreadPoolExecutor(max_workers=6) as pool:
        won = list(pool.map(claim, range(6)))
    assert won.count(True) == 1


def test_a_budget_is_taken_whole_or_not_at_all(ledger: Ledger) -> None:
    assert ledger.spent("cycle-1") == 0
    assert ledger.spend("cycle-1", 6, 5) is False  # never more than the budget at once ...
    assert ledger.spent("cycle-1") == 0
    assert ledger.spend("cycle-1", 3, 5) is True
    assert ledger.spend("cycle-1", 3, 5) is False  # ... nor in total; nothing taken
    assert ledger.spend("cycle-1", 2, 5) is True
    assert ledger.spent("cycle-1") == 5 and ledger.spent("cycle-2") == 0


def test_workers_sharing_a_budget_never_overspend_it(ledger: Ledger) -> None:
    start = threading.Barrier(6)

    def spend(_: int) -> bool:
        start.wait()
        return ledger.spend("cycle-1", 1, 4)

    with ThreadPoolExecutor(max_workers=6) as pool:
        took = list(pool.map(spend, range(6)))
    assert took.count(True) == 4 and ledger.spent("cycle-1") == 4


def test_entries_list_a_cycles_requests_without_its_budget(ledger: Ledger) -> None:
    for rid in ("req-b", "req-a"):
        ledger.put(entry(rid, status=ProbeStatus.DONE))
    ledger.put(entry("req-c", scan_id="cycle-2"))
    ledger.spend("cycle-1", 1, 5)
    assert [e.request_id for e in ledger.entries("cycle-1")] == ["req-a", "req-b"]
    assert [e.request_id for e in ledger.entries("cycle-3")] == []


def test_a_secret_in_a_detail_is_masked_and_a_long_detail_cut(ledger: Ledger) -> None:
    signed = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz"
    ledger.put(
        replace(entry("req-s", status=ProbeStatus.RETRY), detail=f"ARM said Bearer {signed}")
    )
    ledger.put(replace(entry("req-l", status=ProbeStatus.DONE), detail="x" * 20_000))
    masked = ledger.get("cycle-1", "req-s")
    assert masked is not None and signed not in masked.detail and "Bearer" in masked.detail
    cut = ledger.get("cycle-1", "req-l")
    assert cut is not None and 0 < len(cut.detail) < 20_000
