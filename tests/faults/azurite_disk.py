"""An Azurite that can be stopped, killed and started again on the same ports with its data.

tests/azurite.py runs Azurite in memory on fresh ports: right for most tests, but a restart
would lose every table. Here Azurite keeps its data in a scratch directory (`--location`), so
a storage outage in the middle of a scan can be followed by the same storage coming back.

Azurite saves its table database every 5 s (LokiJS autosave) and on a graceful stop; a
SIGKILL loses what came after the last save. Real Table Storage never loses an acknowledged
write, so before a kill `wait_saved` waits for a save that holds everything written so far:
what a kill then loses is only writes of the scan being cut, which is the outage itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.azurite import (
    AzuriteEndpoints,
    AzuriteUnavailable,
    _answers,
    _die_with_parent,
    _free_ports,
    azurite_binary,
)

__all__ = ["DiskAzurite"]

_TABLE_DB = "__azurite_db_table__.json"


class DiskAzurite:
    def __init__(self, host: str = "127.0.0.1") -> None:
        binary = azurite_binary()
        if binary is None:
            raise AzuriteUnavailable("Azurite is not installed (node_modules/.bin/azurite)")
        self._binary = binary
        self._dir = tempfile.TemporaryDirectory(prefix="tw-azurite-disk-")
        self.workdir = Path(self._dir.name)
        blob, queue, table = _free_ports(host, 3)
        self.endpoints = AzuriteEndpoints(host, blob, queue, table)
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # Every start happens on this one thread, alive until close(): the kernel's
        # parent-death signal (Azurite dies with the tests) follows the thread that started
        # the process, and a restart may be asked for from a short-lived thread.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="azurite")

    @property
    def connection_string(self) -> str:
        return self.endpoints.connection_string

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        e = self.endpoints
        argv = [
            self._binary, "--location", str(self.workdir / "data"), "--silent",
            "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            "--blobHost", e.host, "--blobPort", str(e.blob_port),
            "--queueHost", e.host, "--queuePort", str(e.queue_port),
            "--tableHost", e.host, "--tablePort", str(e.table_port),
        ]  # fmt: skip
        self._proc = self._launcher.submit(self._spawn, argv).result()
        self.starts += 1
        deadline = time.monotonic() + timeout
        ports = (e.blob_port, e.queue_port, e.table_port)
        while not all(_answers(e.host, p) for p in ports):
            if self._proc.poll() is not None:
                raise AzuriteUnavailable(f"Azurite exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise AzuriteUnavailable(f"Azurite did not answer within {timeout:.0f}s")
            time.sleep(0.05)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / "azurite.log").open("ab") as log:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )  # fmt: skip

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        # its own session: the group is ours alone, signalled by id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def stop(self) -> None:
        """A graceful stop (SIGTERM): Azurite saves its data and exits."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: gone at once, nothing saved after its last autosave."""
        self._signal(signal.SIGKILL)

    def wait_saved(self, timeout: float = 15.0) -> None:
        """Wait for an autosave started after now (it holds every write acknowledged so far)."""
        db = self.workdir / "data" / _TABLE_DB
        since = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if db.stat().st_mtime > since:
                    return
            time.sleep(0.1)
        raise AzuriteUnavailable(f"Azurite did not save {db.name} within {timeout:.0f}s")

    def close(self) -> None:
        self.kill()
        self._launcher.shutdown()
        self._dir.cleanup()
