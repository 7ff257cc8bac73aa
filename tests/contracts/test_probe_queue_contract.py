"""The probe queue's contract (ProbeSender, and the reads ProbeQueue offers), held by the
in-memory fake (tests/fakes/storage.py) and the real ProbeQueue on Azurite alike."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from shared.adapters.queues import ProbeQueue
from shared.probe_requests import ProbeKind, ProbeRequest
from tests.azurite import azurite  # noqa: F401  (the session fixture)
from tests.fakes.storage import FakeProbeQueue

SUB = "0b1f6471-1bf0-4dda-aec3-44445555c0de"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod"
_names = itertools.count()
MakeQueue = Callable[[], FakeProbeQueue | ProbeQueue]


@pytest.fixture(params=["fake", "azurite"])
def make_queue(request: pytest.FixtureRequest) -> MakeQueue:
    """() -> an empty, existing queue of the parametrized kind (a new name each call)."""
    if request.param == "fake":
        return lambda: FakeProbeQueue(f"fake-{next(_names)}")
    conn: str = request.getfixturevalue("azurite")

    def make() -> ProbeQueue:
        queue = ProbeQueue.from_connection_string(conn, f"contract-{next(_names)}-{id(conn) % 997}")
        queue.ensure()
        return queue

    return make


def _request(instance: str, kind: ProbeKind = ProbeKind.TRIAGE) -> ProbeRequest:
    return ProbeRequest.new(
        kind, scan_id="scan-1", subscription=SUB, cluster_id=CLUSTER,
        node_resource_group="rg-aks-nodes", vmss="aks-system-1-vmss", instance_id=instance,
        reason="contract", now=datetime(2026, 11, 22, tzinfo=UTC),
    )  # fmt: skip


def test_sent_requests_come_back_as_sent_in_order(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.ensure()  # idempotent
    sent = [_request("0"), _request("1"), _request("2", ProbeKind.DEEP)]
    assert queue.send_all(sent) == 3
    assert list(queue.peek()) == sent
    assert list(queue.peek()) == sent  # peeking removes nothing
    assert queue.send_all([]) == 0


def test_take_hands_over_the_json_the_host_would_and_removes_it(make_queue: MakeQueue) -> None:
    queue = make_queue()
    sent = [_request("0"), _request("1")]
    queue.send_all(sent)
    texts = queue.take()
    assert [ProbeRequest.from_json(t) for t in texts] == sent
    assert queue.take() == [] and list(queue.peek()) == []


def test_a_delayed_request_is_not_visible_yet(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.send(_request("5"), delay_seconds=3600)
    assert list(queue.peek()) == [] and queue.take() == []
    queue.send(_request("6"))
    assert [r.instance_id for r in queue.peek() if isinstance(r, ProbeRequest)] == ["6"]


def test_a_sibling_is_another_queue(make_queue: MakeQueue) -> None:
    queue = make_queue()
    poison = queue.sibling(f"{queue.name}-poison")
    poison.ensure()
    poison.send(_request("9"))
    assert list(queue.peek()) == []
    assert [r.instance_id for r in poison.peek() if isinstance(r, ProbeRequest)] == ["9"]
    assert poison.name == f"{queue.name}-poison"
