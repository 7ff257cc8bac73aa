"""The probe-requests queue over azure-storage-queue: send and read ProbeRequest messages.

Messages are base64-encoded JSON, the encoding the Functions host decodes by default
(host.json `extensions.queues.messageEncoding` = base64), so a queue-triggered function receives
exactly the JSON `ProbeRequest.to_json` wrote. A delayed retry is a new message with a visibility
timeout (a queue trigger cannot delay its own message).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    ExponentialRetry,
    QueueClient,
    TextBase64EncodePolicy,
)

from shared.adapters.arm_inventory import describe_error
from shared.adapters.clients import queue_clients
from shared.errors import InputError, StorageError
from shared.probe_requests import ProbeRequest

__all__ = ["ProbeQueue"]

log = logging.getLogger(__name__)
MAX_DELAY_SECONDS = 7 * 24 * 3600  # the queue service's visibility timeout limit
STORAGE_CONNECT_TIMEOUT = 10  # seconds, for the queue and the table clients alike
STORAGE_READ_TIMEOUT = 30


def _options() -> dict[str, Any]:
    """Client options: the host's encoding, and bounds. The SDK's default retry waits 15, 18
    and 24 s; with storage down that stalled a scan about a minute per message, so retries
    wait about 1, 3 and 5 s, and no request hangs on a storage account that stopped answering."""
    return {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": BinaryBase64DecodePolicy(),
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3),
        "connection_timeout": STORAGE_CONNECT_TIMEOUT,
        "read_timeout": STORAGE_READ_TIMEOUT,
    }


class ProbeQueue:
    """Sends probe requests; the client is passed in (connection string or identity)."""

    def __init__(
        self, client: QueueClient, *, factory: Callable[[str], QueueClient] | None = None
    ) -> None:
        self._client = client
        self._factory = factory  # queue name -> client of the same account

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> ProbeQueue:
        make = queue_clients(_options(), connection_string=connection_string)
        return cls(make(queue_name), factory=make)

    @classmethod
    def from_account_url(
        cls, account_url: str, queue_name: str, credential: TokenCredential
    ) -> ProbeQueue:
        make = queue_clients(_options(), account_url=account_url, credential=credential)
        return cls(make(queue_name), factory=make)

    def sibling(self, queue_name: str) -> ProbeQueue:
        """Another queue of the same account, same credential and encoding (the poison queue)."""
        if self._factory is None:
            raise ValueError("this ProbeQueue was built from a bare client; build the other too")
        return ProbeQueue(self._factory(queue_name), factory=self._factory)

    @property
    def name(self) -> str:
        return str(self._client.queue_name)

    def ensure(self) -> None:
        try:
            with contextlib.suppress(ResourceExistsError):
                self._client.create_queue()
        except AzureError as exc:
            raise StorageError(f"create queue {self.name}", describe_error(exc)) from None

    def send(self, request: ProbeRequest, *, delay_seconds: int = 0) -> None:
        """One message; StorageError when the queue service fails (after the SDK's retries:
        a duplicate message is harmless, the ledger drops a second copy of a request)."""
        body = request.to_json()  # validates first: nothing malformed leaves this process
        delay = max(0, min(delay_seconds, MAX_DELAY_SECONDS))
        try:
            self._client.send_message(body, visibility_timeout=delay or None)
        except AzureError as exc:
            raise StorageError(f"queue to {self.name}", describe_error(exc)) from None
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

    def take(self, max_messages: int = 32) -> list[str]:
        """Receive and delete up to `max_messages` visible messages, as text.

        What the Functions host does for a queue trigger; the demo and the tests use it to
        hand messages to the worker the same way.
        """
        texts = []
        for message in self._client.receive_messages(
            max_messages=max_messages, visibility_timeout=60
        ):
            raw = message.content
            texts.append(
                raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            )
            self._client.delete_message(message)
        return texts

    def peek(self, max_messages: int = 32) -> Iterator[ProbeRequest | InputError]:
        """Reads without removing (tests, the CLI); a bad message comes back as its error."""
        for message in self._client.peek_messages(max_messages=max_messages):
            raw = message.content
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            try:
                yield ProbeRequest.from_json(text, f"queue {self.name} message {message.id}")
            except InputError as exc:
                yield exc
