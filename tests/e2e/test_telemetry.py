"""Telemetry (issue 11, item 5): the composition root configures azure-monitor-opentelemetry
when APPLICATIONINSIGHTS_CONNECTION_STRING is set, and a custom event reaches the ingestion
endpoint as an Application Insights event, signed with the identity's token.

The distro sets process-wide providers, so it runs in a child process; an HTTPS collector on
127.0.0.1 (a trustme certificate, trusted through REQUESTS_CA_BUNDLE) stands in for the
ingestion endpoint, and statsbeat (the SDK's own usage reports to Microsoft) is off.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from shared import compose
from shared.adapters.telemetry import EVENT_NAME_ATTRIBUTE, EVENTS_LOGGER, custom_event

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "33333333-3333-3333-3333-333333333333"

_CHILD = """
import json, os, sys
from shared import compose
from shared.adapters.telemetry import custom_event
from tests.armsim.credential import StaticTokenCredential

asked = []

def credential(client_id):
    asked.append(client_id)
    return StaticTokenCredential("ai-token")

compose.make_telemetry_credential = credential
configured = [compose.configure_telemetry(os.environ), compose.configure_telemetry(os.environ)]
custom_event("scan.completed", {"run_id": "scan-1", "status": "complete", "clusters": 3,
                                "findings": 2, "recorded": True})
from opentelemetry._logs import get_logger_provider
get_logger_provider().force_flush()
print(json.dumps({"asked": asked, "configured": configured}))
"""


class _Collector(BaseHTTPRequestHandler):
    items: list[dict[str, Any]]
    auth: list[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding", "") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        items = lines[0] if len(lines) == 1 and isinstance(lines[0], list) else lines
        self.server.items += items  # type: ignore[attr-defined]
        self.server.auth.append(self.headers.get("Authorization", ""))  # type: ignore[attr-defined]
        answer = json.dumps(
            {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[HTTPServer, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.items = []  # type: ignore[attr-defined]
    server.auth = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, ca_path
    finally:
        server.shutdown()
        server.server_close()


def test_a_custom_event_reaches_application_insights_signed_by_the_identity(
    collector: tuple[HTTPServer, Path], tmp_path: Path
) -> None:
    server, ca_path = collector
    port = server.server_address[1]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "OTEL_"))
    }
    env.update(
        APPLICATIONINSIGHTS_CONNECTION_STRING=(
            "InstrumentationKey=22222222-2222-2222-2222-222222222222;"
            f"IngestionEndpoint=https://127.0.0.1:{port}/"
        ),
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",
        AZURE_CLIENT_ID=CLIENT_ID,
        REQUESTS_CA_BUNDLE=str(ca_path),
        TMPDIR=str(tmp_path),  # the exporter's offline storage, if it keeps any
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child == {"asked": [CLIENT_ID], "configured": [True, True]}  # once, by the identity
    events = [i for i in server.items if i.get("name") == "Microsoft.ApplicationInsights.Event"]  # type: ignore[attr-defined]
    assert len(events) == 1, server.items  # type: ignore[attr-defined]
    data = events[0]["data"]["baseData"]
    assert data["name"] == "scan.completed"
    assert {k: data["properties"][k] for k in ("run_id", "status", "clusters", "findings")} == {
        "run_id": "scan-1", "status": "complete", "clusters": "3", "findings": "2",
    }  # fmt: skip
    assert "Bearer ai-token" in server.auth  # type: ignore[attr-defined]


def test_without_a_connection_string_nothing_is_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert compose.configure_telemetry({"AZURE_CLIENT_ID": CLIENT_ID}) is False
    # the event is still a log line with its attributes (what the distro would export)
    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        custom_event("scan.completed", {"clusters": 2, "name": "x"})
    (record,) = [r for r in caplog.records if r.name == EVENTS_LOGGER]
    assert getattr(record, EVENT_NAME_ATTRIBUTE) == "scan.completed"
    assert record.clusters == 2  # type: ignore[attr-defined]
    assert record.tw_name == "x"  # type: ignore[attr-defined]  # 'name' is the LogRecord's own
