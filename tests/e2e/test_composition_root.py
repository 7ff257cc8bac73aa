"""The composition root (shared/compose.py) keeps what it built for the whole process.

The Functions worker runs every invocation of the app in one process: two scan timer runs must
reuse one credential and one set of ARM clients (counted by the tokens their pipelines ask
for), and the second run must take the service tags from the cache the first one filled
(counted by the ARM simulator). Before the root, every run built everything again, so the
24-hour service-tag cache never outlived a run and tables and queues were re-created each time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.credentials import TokenCredential

from functions import probe_worker, scan_timer
from shared import compose
from shared.config import Settings
from tests.armsim import SCENARIOS, ArmSimulator, load_estate
from tests.armsim.credential import StaticTokenCredential
from tests.azurite import azurite  # noqa: F401

SUB = "11111111-1111-1111-1111-111111111111"


@pytest.fixture
def sim() -> Iterator[ArmSimulator]:
    with ArmSimulator(load_estate(SCENARIOS / "demo.json")) as s:
        yield s


def test_two_scan_runs_build_the_credential_and_clients_once_and_read_service_tags_once(
    sim: ArmSimulator,
    azurite: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials: list[StaticTokenCredential] = []

    def counted_credential(arm_endpoint: str) -> TokenCredential:
        assert arm_endpoint == sim.endpoint
        credentials.append(StaticTokenCredential())
        return credentials[-1]

    monkeypatch.setattr(compose, "make_credential", counted_credential)
    monkeypatch.setattr(compose, "_roots", {})  # a fresh process
    env = {
        "TUNNELWATCH_SUBSCRIPTIONS": SUB,
        "AzureWebJobsStorage": azurite,
        "TABLE_PREFIX": "twroot" + sim.endpoint.rsplit(":", 1)[1],
        "ARM_ENDPOINT": sim.endpoint,
        "ARM_CA_BUNDLE": sim.ca_path,
    }
    first = scan_timer.scan_once(env)
    assert first.run.clusters_scanned > 0 and not first.storage_error
    tokens = len(credentials[0].scopes)  # one per client pipeline that made a request
    tag_reads = sim.calls.get("serviceTags.list", 0)
    assert tokens > 0 and tag_reads > 0

    second = scan_timer.scan_once(env)
    assert second.run.clusters_scanned == first.run.clusters_scanned
    assert len(credentials) == 1  # the credential: built once
    assert len(credentials[0].scopes) == tokens  # no new client asked for a token
    assert sim.calls.get("serviceTags.list", 0) == tag_reads  # the cache served the second
    # each run counts its own ARM calls, although the clients' counters live on: the second
    # made the first's calls but the service-tag reads
    assert second.run.arm_calls == first.run.arm_calls - tag_reads

    # The probe worker of the same process shares the root (and its credential).
    settings = Settings.from_env(env)
    assert compose.root_for(settings, env) is compose.root_for(settings, dict(env))
    monkeypatch.setattr(probe_worker, "_deps", {})
    probe_worker.probe_once("not a probe request", env)
    assert len(credentials) == 1
