"""When storage is down, each storage port raises the project's StorageError (shared/jobs/ports.py:
"raises only our own errors"), never an SDK type: the fakes when told to (`fail_with`), the real
adapters against an endpoint where nothing listens (connection refused at once; the SDK's own
retries are turned off so this stays fast, the adapters' retries are covered in tests/faults/).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.adapters.probe_ledger import LedgerEntry, ProbeLedger, ProbeStatus
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import FindingStore, ScanRun
from shared.core.lifecycle import ClusterScan, Coverage
from shared.errors import StorageError
from shared.probe_requests import ProbeKind, ProbeRequest
from tests.azurite import DEV_ACCOUNT, DEV_KEY
from tests.fakes.storage import FakeFindingStore, FakeProbeLedger, FakeProbeQueue

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-0000000000d1"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
DOWN = StorageError("injected", "HTTP 503 ServerBusy")


def _dead_connection() -> str:
    """A connection string to a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{DEV_ACCOUNT}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"QueueEndpoint={url};TableEndpoint={url};"
    )


def _tables() -> TableServiceClient:
    return TableServiceClient.from_connection_string(_dead_connection(), retry_total=0)


def _store(kind: str) -> FakeFindingStore | FindingStore:
    if kind == "fake":
        fake = FakeFindingStore()
        fake.fail_with = DOWN
        return fake
    return FindingStore(_tables(), attempts=1)


def _queue(kind: str) -> FakeProbeQueue | ProbeQueue:
    if kind == "fake":
        fake = FakeProbeQueue()
        fake.fail_with = DOWN
        return fake
    client = QueueClient.from_connection_string(
        _dead_connection(), "probe-requests", retry_total=0,
        message_encode_policy=TextBase64EncodePolicy(),
    )  # fmt: skip
    return ProbeQueue(client)


def _ledger(kind: str) -> FakeProbeLedger | ProbeLedger:
    if kind == "fake":
        fake = FakeProbeLedger()
        fake.fail_with = DOWN
        return fake
    return ProbeLedger(_tables())


KINDS = ["fake", "real"]
LEDGER_KINDS = KINDS  # the ledger turned its SDK errors into StorageError too (was a strict xfail)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.record_cluster(
            ClusterScan(CLUSTER, Coverage.COMPLETE, ()), run_id="r", now=NOW
        ),
        lambda s: s.save_run(ScanRun("r", NOW)),
        lambda s: s.current_findings(CLUSTER),
        lambda s: s.open_findings(),
    ],
    ids=["record_cluster", "save_run", "current_findings", "open_findings"],
)
def test_the_finding_store_raises_storage_error(kind: str, call: Callable[..., object]) -> None:
    with pytest.raises(StorageError):
        call(_store(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_the_probe_queue_raises_storage_error(kind: str) -> None:
    request = ProbeRequest.new(
        ProbeKind.TRIAGE, scan_id="scan-1", subscription=SUB, cluster_id=CLUSTER,
        node_resource_group="rg-nodes", vmss="aks-system-1-vmss", instance_id="0",
        reason="down", now=NOW,
    )  # fmt: skip
    queue = _queue(kind)
    with pytest.raises(StorageError):
        queue.send(request)
    with pytest.raises(StorageError):
        queue.send_all([request])


@pytest.mark.parametrize("kind", LEDGER_KINDS)
def test_the_probe_ledger_raises_storage_error(kind: str) -> None:
    entry = LedgerEntry(
        "cycle-1", "req-1", ProbeStatus.RUNNING, 1, "triage", CLUSTER, "vmss/0", "", 0, NOW
    )
    ledger = _ledger(kind)
    for call in (
        lambda: ledger.get("cycle-1", "req-1"),
        lambda: ledger.put(entry),
        lambda: ledger.claim(entry, lease=timedelta(minutes=25)),
        lambda: ledger.spend("cycle-1", 1, 5),
    ):
        with pytest.raises(StorageError):
            call()
