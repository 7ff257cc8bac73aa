"""The HTTPS ARM simulator: a threaded http.server on 127.0.0.1 behind a trustme certificate.

    with ArmSimulator(estate) as sim:
        client = ContainerServiceClient(sim.credential(), SUB, base_url=sim.endpoint,
                                        connection_verify=sim.ca_path)

Reads are generic (estate.py indexes every document by id and list URL); the computed routes
are service tags, metrics and the run-command LRO. Every request is counted under a stable
operation name (routes.py) before faults are applied, so a retried 429 shows as two calls.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import trustme

from tests.armsim.credential import StaticTokenCredential
from tests.armsim.estate import Estate
from tests.armsim.faults import Faults
from tests.armsim.routes import Route, resolve
from tests.armsim.runcommand import Executor, RunCommandRecord, RunCommands

__all__ = ["ArmSimulator", "CallRecord"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallRecord:
    method: str
    path: str
    operation: str
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sim: ArmSimulator
    tls: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens in the connection's own thread, not in the accept loop.
        try:
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(tls_sock, client_address)


class ArmSimulator:
    """Serves an Estate over HTTPS; see tests/armsim/README.md for every option."""

    def __init__(
        self,
        estate: Estate,
        *,
        faults: Faults | None = None,
        page_size: int = 50,
        page_size_by_operation: dict[str, int] | None = None,
        executor: Executor | None = None,
        run_command_min_polls: int = 2,
        poll_delay_ms: int = 20,
        lockdown_error: str = "denyAssignment",
        read_budget: int = 12000,
        now: datetime | None = None,
    ) -> None:
        if lockdown_error not in ("denyAssignment", "policy"):
            raise ValueError("lockdown_error is 'denyAssignment' or 'policy'")
        self.estate = estate
        self.faults = faults or Faults()
        self.page_size = page_size
        self.page_size_by_operation = dict(page_size_by_operation or {})
        self.poll_delay_ms = poll_delay_ms
        self.lockdown_error = lockdown_error
        self.read_budget = read_budget
        self.fixed_now = now
        self.run_commands = RunCommands(estate, executor, run_command_min_polls)
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._log: list[CallRecord] = []
        self._reads: Counter[str] = Counter()
        self._batch_requests: list[tuple[dict[str, str], bytes]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: str | None = None
        self.endpoint = ""
        self.ca_path = ""

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ArmSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = tempfile.mkdtemp(prefix="armsim-")
        self.ca_path = str(Path(self._tmp) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        server = _Server(("127.0.0.1", 0), _Handler)
        server.sim, server.tls = self, ctx
        self._server = server
        self.endpoint = f"https://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.run_commands.wait_idle(timeout=5)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- what tests read -------------------------------------------------------------------
    def credential(self) -> StaticTokenCredential:
        return StaticTokenCredential()

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any azure-mgmt client: endpoint and CA."""
        return {"base_url": self.endpoint, "connection_verify": self.ca_path}

    @property
    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    @property
    def log(self) -> list[CallRecord]:
        with self._lock:
            return list(self._log)

    @property
    def run_command_requests(self) -> list[RunCommandRecord]:
        return list(self.run_commands.records)

    @property
    def metrics_batch_requests(self) -> list[tuple[dict[str, str], bytes]]:
        """(query parameters, body) of every metrics:getBatch request that reached the route."""
        with self._lock:
            return list(self._batch_requests)

    def record_batch_request(self, query: dict[str, str], body: bytes) -> None:
        with self._lock:
            self._batch_requests.append((dict(query), body))

    def total_calls(self) -> int:
        with self._lock:
            return sum(self._calls.values())

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()
            self._log.clear()
            self._batch_requests.clear()
        self.faults.reset()

    @contextmanager
    def faulted(self, faults: Faults | None) -> Iterator[None]:
        """Serve with `faults` inside the block, and without any after it."""
        self.faults = faults or Faults()
        try:
            yield
        finally:
            self.faults = Faults()

    # -- used by the handler ---------------------------------------------------------------
    def now(self) -> datetime:
        return self.fixed_now or datetime.now(UTC)

    def count(self, method: str, path: str, operation: str, status: int) -> None:
        with self._lock:
            self._calls[operation] += 1
            self._log.append(CallRecord(method, path, operation, status))

    def remaining_reads(self, subscription: str) -> int:
        with self._lock:
            self._reads[subscription.lower()] += 1
            return max(0, self.read_budget - self._reads[subscription.lower()])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30
    # Headers and body go out in two writes; with Nagle on, each response waited ~40 ms for
    # the client's delayed ACK, doubling scan times measured against the simulator.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("armsim: " + format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        # The SDK percent-encodes each name in the path (rg-café, rg-batch(prod)); ARM reads
        # the decoded names, and so does the simulator.
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        route = resolve(method, path, sim.estate)
        if route.kind == "lro" and query.get("monitor", "").lower() == "true":
            route = dataclasses.replace(route, operation="runCommand.result")
        status, payload, headers = self._answer(sim, method, path, query, body, route)
        sim.count(method, path, route.operation, status)
        delay = sim.faults.delay_for(route.operation)
        if delay > 0:
            time.sleep(delay)
        self._send(status, payload, headers, sim, route, method)

    def _answer(
        self, sim: ArmSimulator, method: str, path: str, query: dict[str, str], body: bytes,
        route: Route,
    ) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) < 8:
            return _error(401, "AuthenticationFailed",
                          "Authentication failed. The 'Authorization' header is missing.")  # fmt: skip
        if not any(k.lower() == "api-version" for k in query):
            return _error(400, "MissingApiVersionParameter",
                          "The api-version query parameter (?api-version=) is required for all "
                          "requests.")  # fmt: skip
        injected = sim.faults.check(route.operation, path)
        if injected is not None:
            extra = {"Retry-After": str(injected.retry_after)} if injected.retry_after else {}
            status, payload, _ = _error(injected.status, injected.code, injected.message)
            return status, payload, extra
        from tests.armsim.handlers import handle  # the route bodies live beside the server

        return handle(sim, method, path, query, body, route)

    def _send(
        self, status: int, payload: Any, headers: dict[str, str], sim: ArmSimulator, route: Route,
        method: str,
    ) -> None:  # fmt: skip
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-correlation-request-id", str(uuid.uuid4()))
        if route.subscription:
            kind = "reads" if method == "GET" else "writes"
            self.send_header(f"x-ms-ratelimit-remaining-subscription-{kind}",
                             str(sim.remaining_reads(route.subscription)))  # fmt: skip
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def _error(status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"error": {"code": code, "message": message}}, {}


def next_link(endpoint: str, path: str, query: dict[str, str], offset: int) -> str:
    kept = {k: v for k, v in query.items() if k.lower() != "$skiptoken"}
    kept["$skipToken"] = str(offset)
    return f"{endpoint}{path}?{urlencode(kept, safe='$')}"
