"""Storage failures during a scan (issue 15, defect 5): the scan still ends, says why, keeps
what it computed (JSON printed, probes queued) and exits 4; nothing is a traceback.

`tunnelwatch scan --record` runs as a separate process against the ARM simulator, with a
storage connection string whose table endpoint is Azurite, a closed port, or Azurite that is
killed half-way through the scan's writes (tests/faults has the wider suite).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.data.tables import TableServiceClient

from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import FindingStore, RunStatus
from shared.adapters.tables.store import retrying
from shared.compose import scan_deps, static_resolver
from shared.errors import StorageError
from shared.jobs.scan import ScanOptions, run_scan
from tests.armsim import SCENARIOS, ArmSimulator, load_estate
from tests.azurite import DEV_ACCOUNT, DEV_KEY, azurite  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SUB = "11111111-1111-1111-1111-111111111111"
T = TypeVar("T")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def _with_tables_at(conn: str, port: int) -> str:
    """Azurite's connection string with the table endpoint moved to `port`."""
    parts = [p for p in conn.split(";") if p and not p.startswith("TableEndpoint=")]
    return ";".join([*parts, f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT}"])


@pytest.fixture(scope="module")
def sim() -> Iterator[ArmSimulator]:
    with ArmSimulator(load_estate(SCENARIOS / "demo.json")) as s:
        yield s


def _scan(
    sim: ArmSimulator, tmp_path: Path, conn: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    token = tmp_path / "token"
    token.write_text("armsim-token-not-a-secret\n")
    argv = [
        sys.executable, "-m", "shared.cli.main", "scan", "--subscription", SUB,
        "--arm-endpoint", sim.endpoint, "--ca-bundle", sim.ca_path,
        "--metrics-endpoint", sim.endpoint, "--access-token-file", str(token), "--no-dns",
        "--record", "--storage-connection-string", conn, "--quiet", *extra,
    ]  # fmt: skip
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_tables_unreachable_exit_4_with_findings_printed_and_probes_queued(
    sim: ArmSimulator,
    azurite: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    conn = _with_tables_at(azurite, _closed_port())
    proc = _scan(sim, tmp_path, conn, "--json")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)  # the JSON is still printed whole
    assert doc["run"]["status"] == "failed"
    assert doc["run"]["storage_error"].startswith("storage: ")
    assert any(f["kind"] == "problem" for f in doc["findings"])
    assert "exit 4" in proc.stderr and "storage: " in proc.stderr
    assert DEV_KEY not in proc.stderr + proc.stdout
    # the queue was fine: the probes the scan asked for are there
    queued = list(ProbeQueue.from_connection_string(azurite, "probe-requests").peek())
    assert doc["probe_requests"] and len(queued) == len(doc["probe_requests"])


def test_malformed_connection_string_is_a_usage_error_without_the_key(
    sim: ArmSimulator, tmp_path: Path
) -> None:
    for conn, says in (
        (f"AccountName=x;AccountKey={DEV_KEY};TableEndpoint=not a url", "TableEndpoint is not"),
        (f"AccountKey={DEV_KEY};nonsense", "not a storage connection string"),
    ):
        proc = _scan(sim, tmp_path, conn)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"--storage-connection-string: {says}" in proc.stderr
        assert DEV_KEY not in proc.stderr


class _FailingAfter(FindingStore):
    """Azurite's store, whose cluster writes fail from the `n`-th on (as if it went away)."""

    def __init__(self, service: TableServiceClient, n: int, **kw: Any) -> None:
        super().__init__(service, **kw)
        self.n = n
        self.writes = 0

    def record_cluster(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        if self.writes >= self.n:
            raise StorageError("record cluster", "HTTP 503 ServerBusy: injected")
        return super().record_cluster(*args, **kwargs)


def test_a_store_failing_mid_scan_keeps_the_computed_outcome(
    sim: ArmSimulator,
    azurite: str,  # noqa: F811
) -> None:
    store = _FailingAfter(TableServiceClient.from_connection_string(azurite), 3, prefix="mid")
    store.ensure_tables()
    queue = ProbeQueue.from_connection_string(azurite, "mid-probes")
    queue.ensure()
    deps = scan_deps(
        sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path,
        resolver=static_resolver({}, lambda name: ("20.61.14.2",)), store=store, queue=queue,
        clock=lambda: datetime(2026, 12, 1, tzinfo=UTC), metrics_endpoint=sim.endpoint,
    )  # fmt: skip
    outcome = run_scan(ScanOptions(subscriptions=(SUB,)), deps)
    assert store.writes == 3  # the first failure stops the writes
    assert outcome.run.status is RunStatus.FAILED
    assert outcome.storage_error.startswith("storage: record cluster")
    assert any("nothing more was recorded" in e for e in outcome.run.errors)
    assert len(outcome.clusters) == 7 and outcome.findings  # everything computed is kept
    # the run row: written at the start (running) and never finished
    (row,) = store.runs_between(
        datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    )
    assert row.run_id == outcome.run.run_id and row.status is RunStatus.RUNNING
    # probes: the unrecorded clusters' suspects still ask for them (nothing to compare with)
    assert outcome.probe_requests
    assert len(list(queue.peek())) == len(outcome.probe_requests)


def _calls(*results: Exception | str) -> Callable[[], str]:
    it = iter(results)

    def call() -> str:
        r = next(it)
        if isinstance(r, Exception):
            raise r
        return r

    return call


def _http(status: int) -> HttpResponseError:
    e = HttpResponseError(message=f"status {status}")
    e.status_code = status
    return e


def test_retrying_repeats_transient_failures_only() -> None:
    naps: list[float] = []
    ok = retrying(
        "op", _calls(ServiceRequestError("refused"), _http(503), "done"),
        attempts=3, backoff=0.5, sleep=naps.append,
    )  # fmt: skip
    assert ok == "done" and naps == [0.5, 1.0]
    with pytest.raises(StorageError, match="op: HTTP 400"):
        retrying("op", _calls(_http(400), "never"), attempts=3, backoff=0, sleep=naps.append)
    with pytest.raises(StorageError, match="op: HTTP 503"):
        retrying("op", _calls(_http(503), _http(503)), attempts=2, backoff=0, sleep=naps.append)
