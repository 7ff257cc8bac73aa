"""Azurite (the Azure Storage emulator) for tests and `make demo`: start, wait, stop.

`running_azurite()` is a context manager usable anywhere (the demo uses it); `azurite` is a
session-scoped pytest fixture over it that yields a connection string. Azurite keeps
everything in memory on free ports the helper picks, so parallel runs do not collide and
nothing is left on disk. The process is stopped on the way out, also when a test fails.

Use the fixture by importing it into a test module (conftest.py is the lead's):

    from tests.azurite import azurite  # noqa: F401

Without Azurite (no `node_modules/.bin/azurite`, no node) tests skip with a reason, and fail
when CI=true, like the namespace tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.skips import cannot_run

__all__ = [
    "DEV_ACCOUNT",
    "DEV_KEY",
    "AzuriteEndpoints",
    "AzuriteUnavailable",
    "azurite",
    "azurite_binary",
    "running_azurite",
]

# The well-known development account of the storage emulators (public, documented by
# Microsoft; not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_ROOT = Path(__file__).resolve().parent.parent
_START_TIMEOUT = 30.0  # seconds; a cold node start on a busy 2-core machine takes a few
_STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


class AzuriteUnavailable(RuntimeError):
    """Azurite cannot be started here (not installed, or it did not come up)."""


@dataclass(frozen=True, slots=True)
class AzuriteEndpoints:
    host: str
    blob_port: int
    queue_port: int
    table_port: int

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.url(self.blob_port)};"
            f"QueueEndpoint={self.url(self.queue_port)};"
            f"TableEndpoint={self.url(self.table_port)};"
        )


def azurite_binary() -> str | None:
    """The Azurite launcher: AZURITE_BIN, the project's pinned npm install, or PATH."""
    explicit = os.environ.get("AZURITE_BIN")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    local = _ROOT / "node_modules" / ".bin" / "azurite"
    if local.is_file():
        return str(local)
    return shutil.which("azurite")


def _free_ports(host: str, count: int) -> list[int]:
    # Hold all sockets open while choosing so the ports differ from one another; the short
    # window between closing and Azurite binding is the usual, accepted race.
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # Azurite runs in its own session (start_new_session), so its process group is ours
    # alone: signal that group by its id, never by name.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=_STOP_TIMEOUT)


@contextlib.contextmanager
def running_azurite(
    *, host: str = "127.0.0.1", timeout: float = _START_TIMEOUT
) -> Iterator[AzuriteEndpoints]:
    """Start Azurite in memory on free ports, yield its endpoints, stop it afterwards."""
    binary = azurite_binary()
    if binary is None:
        raise AzuriteUnavailable(
            "Azurite is not installed (node_modules/.bin/azurite): run make test / npm install"
        )
    if shutil.which("node") is None:
        raise AzuriteUnavailable("node is not installed: run make test (installs nodejs npm)")
    blob, queue, table = _free_ports(host, 3)
    endpoints = AzuriteEndpoints(host, blob, queue, table)
    # In-memory Azurite refuses --location; it runs in a scratch directory (cwd) that holds
    # only its log, so nothing is written into the repository.
    with tempfile.TemporaryDirectory(prefix="tw-azurite-") as workdir:
        log_path = Path(workdir) / "azurite.log"
        argv = [
            binary,
            "--inMemoryPersistence",
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--blobHost",
            host,
            "--blobPort",
            str(blob),
            "--queueHost",
            host,
            "--queuePort",
            str(queue),
            "--tableHost",
            host,
            "--tablePort",
            str(table),
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        try:
            deadline = time.monotonic() + timeout
            while not all(_answers(host, p) for p in (blob, queue, table)):
                if proc.poll() is not None:
                    output = log_path.read_text(errors="replace").strip()
                    raise AzuriteUnavailable(
                        f"Azurite exited with {proc.returncode} before answering: {output[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise AzuriteUnavailable(
                        f"Azurite did not answer on {host}:{blob},{queue},{table} within "
                        f"{timeout:.0f}s"
                    )
                time.sleep(0.1)
            yield endpoints
        finally:
            _stop(proc)


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process dies (a timeout, a kill), the
    # kernel kills Azurite too instead of leaving it running. SIGKILL, because a busy
    # Azurite can take minutes over a graceful SIGTERM, and it keeps nothing on disk.
    # Linux only.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A connection string to an in-memory Azurite shared by the whole test session.

    Tests isolate themselves with their own table names (see FindingStore's prefix).
    """
    try:
        with running_azurite() as endpoints:
            yield endpoints.connection_string
    except AzuriteUnavailable as exc:
        cannot_run(f"needs Azurite (make test installs it from npm): {exc}")
