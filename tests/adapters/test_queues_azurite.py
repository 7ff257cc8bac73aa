"""The probe queue on Azurite: messages arrive base64-encoded, as the Functions host decodes them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from azure.storage.queue import QueueClient

from shared.adapters.queues import ProbeQueue
from shared.errors import InputError
from shared.probe_requests import ProbeKind, ProbeRequest
from tests.azurite import azurite  # noqa: F401

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod"


def _request(instance: str) -> ProbeRequest:
    return ProbeRequest.new(
        ProbeKind.TRIAGE, run_id="scan-1", subscription=SUB, cluster_id=CLUSTER,
        node_resource_group="rg-aks-nodes", vmss="aks-system-1-vmss", instance_id=instance,
        reason="test", now=datetime(2026, 11, 22, tzinfo=UTC),
    )  # fmt: skip


def test_send_peek_and_host_decoding(azurite: str) -> None:  # noqa: F811
    queue = ProbeQueue.from_connection_string(azurite, "probe-requests-t1")
    queue.ensure()
    queue.ensure()  # idempotent
    sent = [_request("0"), _request("1")]
    assert queue.send_all(sent) == 2
    got = list(queue.peek())
    assert got == sent

    # What the Functions host sees: the raw message body is base64 of the JSON.
    raw = QueueClient.from_connection_string(azurite, "probe-requests-t1")
    bodies = [m.content for m in raw.peek_messages(max_messages=5)]
    decoded = [json.loads(base64.b64decode(b)) for b in bodies]
    assert [d["instance_id"] for d in decoded] == ["0", "1"]
    assert all(d["v"] == 2 and "script" not in d for d in decoded)


def test_delayed_message_is_invisible_and_bad_messages_surface_as_errors(azurite: str) -> None:  # noqa: F811
    queue = ProbeQueue.from_connection_string(azurite, "probe-requests-t2")
    queue.ensure()
    queue.send(_request("5"), delay_seconds=3600)
    assert list(queue.peek()) == []  # not visible for an hour
    raw = QueueClient.from_connection_string(azurite, "probe-requests-t2")
    raw.send_message(base64.b64encode(b'{"v": 1, "kind": "shell"}').decode())
    got = list(queue.peek())
    assert len(got) == 1
    assert isinstance(got[0], InputError)
