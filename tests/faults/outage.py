"""Storage outages in the middle of a scan, and the `tunnelwatch scan --record` CLI run.

An Outage stops (SIGTERM) or kills (SIGKILL) the disk-backed Azurite when triggered, and
starts it again on the same ports after a delay, or only once the faulted run is over. It is
triggered from inside the scan: a HookedStore before the n-th cluster write, or TriggerFaults
when the scan reaches an ARM operation (the CLI, whose store cannot be wrapped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from azure.data.tables import TableServiceClient

from shared.cli.common import ExitCode
from tests.armsim import ArmSimulator
from tests.faults.azurite_disk import DiskAzurite
from tests.faults.rigs import SUB, Faulted

__all__ = ["Outage", "cli_scan", "split_account"]

ROOT = Path(__file__).resolve().parents[2]


class Outage:
    def __init__(self, azurite: DiskAzurite, how: str, back_after: float | None) -> None:
        if how not in ("stop", "kill"):
            raise ValueError(how)
        self.azurite = azurite
        self.how = how
        self.back_after = back_after  # seconds; None: back when the faulted run is over
        self.fired = False
        self._restart: threading.Thread | None = None

    def at_write(self, n: int):  # type: ignore[no-untyped-def]
        """A HookedStore hook: the outage starts before cluster write `n` (-1: run row)."""

        def hook(i: int) -> None:
            if i == n and not self.fired:
                self()

        return hook

    def __call__(self) -> None:
        self.fired = True
        if self.how == "kill":
            self._make_durable()
            self.azurite.kill()
        else:
            self.azurite.stop()
        if self.back_after is not None:
            delay = self.back_after

            def restart() -> None:
                time.sleep(delay)
                self.azurite.start()

            self._restart = threading.Thread(target=restart, daemon=True)
            self._restart.start()

    def _make_durable(self) -> None:
        # Azure never loses an acknowledged write; Azurite loses what came after its last
        # autosave. One small write, then wait for the save that includes it and all before.
        service = TableServiceClient.from_connection_string(self.azurite.connection_string)
        table = service.create_table_if_not_exists("faultsDurable")
        table.upsert_entity({"PartitionKey": "p", "RowKey": str(time.time_ns())})
        self.azurite.wait_saved()

    def end(self) -> None:
        """After the faulted run: storage is back for the clean scan."""
        if self._restart is not None:
            self._restart.join(timeout=60)
        if not self.azurite.running:
            self.azurite.start()


def split_account(tables_from: str, queues_from: str) -> str:
    """One connection string: the table endpoint of one Azurite, the queue endpoint of another
    (Table Storage down, queues up: what the CLI cases stop; with both down the queue SDK's own
    retries, 15 + 18 + 24 s per message in production, would dominate the suite's time)."""
    parts = dict(p.split("=", 1) for p in tables_from.split(";") if p)
    parts["QueueEndpoint"] = dict(p.split("=", 1) for p in queues_from.split(";") if p)[
        "QueueEndpoint"
    ]
    return "".join(f"{k}={v};" for k, v in parts.items())


def cli_scan(sim: ArmSimulator, connection_string: str, names: list[str]) -> Faulted:
    """`tunnelwatch scan --record --json` against the simulator, as a user runs it."""
    with tempfile.TemporaryDirectory(prefix="tw-faults-cli-") as tmp:
        token = Path(tmp) / "token"
        token.write_text("armsim-token-for-the-cli", encoding="utf-8")
        argv = [
            sys.executable, "-m", "shared.cli.main", "scan", "--record", "--json",
            "--subscription", SUB, "--arm-endpoint", sim.endpoint, "--ca-bundle", sim.ca_path,
            "--metrics-endpoint", sim.endpoint, "--access-token-file", str(token), "--no-dns",
            "--storage-connection-string", connection_string,
            *[a for n in names for a in ("--resolve", f"{n}=20.61.14.2")],
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
        at = datetime.now(UTC)
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    crash = ""
    if "Traceback (most recent call last)" in proc.stderr:
        crash = "traceback on stderr: " + proc.stderr.strip().splitlines()[-1][:200]
    elif proc.returncode not in {int(c) for c in ExitCode}:
        crash = f"exit {proc.returncode}, not a documented exit code"
    try:
        doc = json.loads(proc.stdout)
        status = doc["run"]["status"]
    except (ValueError, KeyError, TypeError):
        crash = crash or f"no JSON document on stdout (exit {proc.returncode})"
        status = "-"
    return Faulted(at, f"exit {proc.returncode}, run {status}", crash)
