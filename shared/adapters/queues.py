"""The probe-requests queue over azure-storage-queue: send and read ProbeRequest messages.

Messages are base64-encoded JSON, the encoding the Functions host decodes by default
(host.json `extensions.queues.messageEncoding` = base64), so a queue-triggered function receives
exactly the JSON `ProbeRequest.to_json` wrote. A delayed retry is a new message with a visibility
timeout (a queue trigger cannot delay its own message).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    QueueClient,
    TextBase64EncodePolicy,
)

from shared.errors import InputError
from shared.probe_requests import ProbeRequest

__all__ = ["ProbeQueue"]

log = logging.getLogger(__name__)
MAX_DELAY_SECONDS = 7 * 24 * 3600  # the queue service's visibility timeout limit


class ProbeQueue:
    """Sends probe requests; the client is passed in (connection string or identity)."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> ProbeQueue:
        client = QueueClient.from_connection_string(
            connection_string,
            queue_name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy(),
        )
        return cls(client)

    @classmethod
    def from_account_url(
        cls, account_url: str, queue_name: str, credential: TokenCredential
    ) -> ProbeQueue:
        client = QueueClient(
            account_url=account_url,
            queue_name=queue_name,
            credential=credential,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy(),
        )
        return cls(client)

    @property
    def name(self) -> str:
        return str(self._client.queue_name)

    def ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._client.create_queue()

    def send(self, request: ProbeRequest, *, delay_seconds: int = 0) -> None:
        body = request.to_json()  # validates first: nothing malformed leaves this process
        delay = max(0, min(delay_seconds, MAX_DELAY_SECONDS))
        self._client.send_message(body, visibility_timeout=delay or None)
        log.info(
            "queued %s probe of %s/%s (cluster %s, attempt %d, delay %ds)",
            request.kind.value, request.vmss, request.instance_id, request.cluster_id,
            request.attempt, delay,
        )  # fmt: skip

    def send_all(self, requests: Iterable[ProbeRequest]) -> int:
        count = 0
        for request in requests:
            self.send(request)
            count += 1
        return count

    def peek(self, max_messages: int = 32) -> Iterator[ProbeRequest | InputError]:
        """Reads without removing (tests, the CLI); a bad message comes back as its error."""
        for message in self._client.peek_messages(max_messages=max_messages):
            raw = message.content
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            try:
                yield ProbeRequest.from_json(text, f"queue {self.name} message {message.id}")
            except InputError as exc:
                yield exc
