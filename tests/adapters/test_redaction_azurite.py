"""Storage exits on a real Azurite: findings, history, run rows, the probe ledger and queue
messages are written with every secret format of tests/redaction_samples in their free text;
reading back every property of every row (and every message body) finds none of them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from shared.adapters.probe_ledger import LedgerEntry, ProbeLedger, ProbeStatus
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import Coverage, FindingStore, Observation, RunStatus, ScanRun
from shared.analysis.findings import Cause, Finding, Kind, Origin, Remediation, Severity, Subject
from shared.probe_requests import ProbeKind, ProbeRequest
from shared.redaction import MASK
from tests.azurite import azurite  # noqa: F401  (the session fixture)
from tests.redaction_samples import ORDINARY, SECRETS, secrets_in

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
CLUSTER = (
    f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/"
    "Microsoft.ContainerService/managedClusters/aks-prod"
)
TEXTS = tuple(s.text for s in SECRETS)


def _finding(key: str) -> Finding:
    return Finding(
        check="nsg.inbound",
        cause=Cause.NSG,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=Subject(SUB, CLUSTER, "nodepool1", "", "nsg-1"),
        title=f"Cannot read the NSG: {SECRETS[6].text}",
        evidence=(*TEXTS, *ORDINARY),
        remediation=Remediation(f"check access ({SECRETS[0].text})", (), TEXTS),
        key=key,
        origin=Origin.ARTICLE,
    )


@pytest.fixture
def service(azurite: str) -> Iterator[TableServiceClient]:  # noqa: F811
    yield TableServiceClient.from_connection_string(azurite)


def _all_text(service: TableServiceClient, prefix: str) -> str:
    values: list[str] = []
    for table in service.list_tables():
        if table.name.startswith(prefix):
            for entity in service.get_table_client(table.name).list_entities():
                values += [str(v) for v in entity.values()]
    return "\n".join(values)


def test_rows_carry_no_secret(service: TableServiceClient) -> None:
    prefix = f"tw{T0:%H%M}red{id(service) % 10**6}"
    store = FindingStore(service, prefix=prefix)
    store.ensure_tables()

    first = _finding("rule-1")
    store.record_cluster(
        Observation(CLUSTER, Coverage.COMPLETE, (first,), subscription=SUB), run_id="r1", now=T0
    )
    # A partial scan that does not see the finding keeps it open and records why.
    store.record_cluster(
        Observation(CLUSTER, Coverage.PARTIAL, (), subscription=SUB, reason=" | ".join(TEXTS)),
        run_id="r2",
        now=T0 + timedelta(minutes=5),
    )
    store.save_run(
        ScanRun("r2", T0, T0 + timedelta(minutes=1), RunStatus.PARTIAL, (SUB,), errors=TEXTS)
    )
    stored = _all_text(service, prefix)
    assert secrets_in(stored) == []
    assert stored.count(MASK) >= 3 * len(TEXTS)  # findings, history and run rows all written
    (back,) = store.current_findings(CLUSTER)
    assert back.finding.evidence[len(TEXTS) :] == ORDINARY  # ordinary evidence kept as it was


def test_ledger_rows_carry_no_secret(service: TableServiceClient) -> None:
    # The worker's ledger keeps why a probe failed: run-command errors quote ARM text.
    prefix = f"tw{T0:%H%M}led{id(service) % 10**6}"
    ledger = ProbeLedger(service, prefix=prefix)
    ledger.ensure()
    for n, text in enumerate(TEXTS):
        ledger.put(
            LedgerEntry(
                "r2",
                f"00000000-0000-4000-8000-{n:012d}",
                ProbeStatus.DENIED,
                1,
                "triage",
                CLUSTER,
                "aks-nodepool1-vmss/3",
                f"run command failed: {text}",
                1,
                T0,
            )
        )

    stored = _all_text(service, prefix)
    assert secrets_in(stored) == []
    assert stored.count(MASK) >= len(TEXTS)


def test_queue_messages_carry_no_secret(azurite: str) -> None:  # noqa: F811
    name = f"redaction-{T0:%H%M%S}"
    queue = ProbeQueue.from_connection_string(azurite, name)
    queue.ensure()
    for n, text in enumerate(TEXTS):
        queue.send(
            ProbeRequest.new(
                ProbeKind.DEEP,
                run_id="scan-20261122T040000Z",
                subscription=SUB,
                cluster_id=CLUSTER,
                node_resource_group="MC_rg-aks_aks-prod_westeurope",
                vmss="aks-nodepool1-12345678-vmss",
                instance_id=str(n),
                reason=f"unreachable: {text}",
                now=T0,
            )
        )
    raw = QueueClient.from_connection_string(azurite, name)
    bodies = [base64.b64decode(m.content).decode() for m in raw.peek_messages(max_messages=32)]
    assert len(bodies) == len(TEXTS)
    assert secrets_in("\n".join(bodies)) == []
    assert all(MASK in b for b in bodies)
    assert [r for r in queue.peek() if not isinstance(r, ProbeRequest)] == []  # still valid
    raw.delete_queue()
