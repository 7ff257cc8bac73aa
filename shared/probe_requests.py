"""The `probe-requests` queue message: what the scan asks the node-probe worker to do.

Version 1, JSON (the queue adapter base64-encodes it, as the Functions host decodes by default):

    {"v": 1, "kind": "triage" | "deep", "request_id": "<uuid4>", "scan_id": "<scan id>",
     "subscription": "<guid>", "cluster_id": "<ARM id of the managed cluster>",
     "node_resource_group": "<name>", "vmss": "<scale set name>", "instance_id": "<digits>",
     "reason": "<why, for the record>", "attempt": 1, "requested_at": "<ISO 8601 UTC>"}

The message carries identifiers only, never script text or addresses to probe: the worker
looks every identifier up in a fresh inventory and derives what to probe from it, so a forged
message can at most ask for a probe of a node the scan already knows. Every field is checked
against a strict pattern on both sides (encode refuses what decode would refuse).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.errors import InputError

__all__ = ["SCHEMA_VERSION", "ProbeKind", "ProbeRequest"]

SCHEMA_VERSION = 1
MAX_ATTEMPTS = 10
MAX_MESSAGE_BYTES = 4096  # far below the queue's 64 KiB; a larger message is not one of ours

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# ARM names: resource groups allow letters, digits, -_.() ; scale sets letters, digits, -_.
_RG = re.compile(r"^[A-Za-z0-9_\-.()]{1,90}$")
_VMSS = re.compile(r"^[A-Za-z0-9_\-.]{1,80}$")
_INSTANCE = re.compile(r"^[0-9]{1,10}$")
_CLUSTER_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[A-Za-z0-9_\-.()]{1,90}"
    r"/providers/Microsoft\.ContainerService/managedClusters/[A-Za-z0-9_\-]{1,63}$",
    re.IGNORECASE,
)
_SCAN_ID = re.compile(r"^[A-Za-z0-9_\-:.]{1,64}$")
_REASON = re.compile(r"^[\x20-\x7e]{0,200}$")  # printable ASCII, for logs and tables only
_FIELDS = frozenset(
    {
        "v", "kind", "request_id", "scan_id", "subscription", "cluster_id",
        "node_resource_group", "vmss", "instance_id", "reason", "attempt", "requested_at",
    }
)  # fmt: skip


class ProbeKind(StrEnum):
    TRIAGE = "triage"  # one node tests every node of its cluster on 10250, and the API server
    DEEP = "deep"  # a node found unreachable or suspect reads its own UFW and rulesets


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    kind: ProbeKind
    request_id: str
    scan_id: str
    subscription: str
    cluster_id: str
    node_resource_group: str
    vmss: str
    instance_id: str
    reason: str
    attempt: int
    requested_at: datetime

    @classmethod
    def new(
        cls,
        kind: ProbeKind,
        *,
        scan_id: str,
        subscription: str,
        cluster_id: str,
        node_resource_group: str,
        vmss: str,
        instance_id: str,
        reason: str,
        now: datetime,
        request_id: str | None = None,
    ) -> ProbeRequest:
        """A first attempt; `request_id` defaults to a new uuid4 (give a derived one to make
        a request that a redelivery would repeat recognisable)."""
        request = cls(
            kind, request_id or str(uuid.uuid4()), scan_id, subscription.lower(), cluster_id,
            node_resource_group, vmss, instance_id, reason[:200], 1, now.astimezone(UTC),
        )  # fmt: skip
        request.validate()
        return request

    def validate(self, source: str = "probe request") -> None:
        problems = []
        for name, value, pattern in (
            ("request_id", self.request_id, _GUID),
            ("scan_id", self.scan_id, _SCAN_ID),
            ("subscription", self.subscription, _GUID),
            ("cluster_id", self.cluster_id, _CLUSTER_ID),
            ("node_resource_group", self.node_resource_group, _RG),
            ("vmss", self.vmss, _VMSS),
            ("instance_id", self.instance_id, _INSTANCE),
            ("reason", self.reason, _REASON),
        ):
            if not isinstance(value, str) or not pattern.match(value):
                problems.append(f"{name}: {value!r} is not allowed here")
        if not isinstance(self.attempt, int) or not 1 <= self.attempt <= MAX_ATTEMPTS:
            problems.append(f"attempt: {self.attempt!r} is outside 1-{MAX_ATTEMPTS}")
        if isinstance(self.cluster_id, str) and _CLUSTER_ID.match(self.cluster_id):
            sub = self.cluster_id.split("/")[2].lower()
            if sub != self.subscription:
                problems.append("cluster_id: not in the message's subscription")
        if problems:
            raise InputError(source, "; ".join(problems))

    def retry(self) -> ProbeRequest:
        """The same request, one attempt later (the worker re-enqueues with a delay)."""
        later = replace(self, attempt=self.attempt + 1)
        later.validate()
        return later

    def to_json(self) -> str:
        self.validate()
        doc: dict[str, Any] = {"v": SCHEMA_VERSION, **asdict(self)}
        doc["kind"] = self.kind.value
        doc["requested_at"] = self.requested_at.isoformat()
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "probe request") -> ProbeRequest:
        if len(text.encode("utf-8", errors="replace")) > MAX_MESSAGE_BYTES:
            raise InputError(source, f"message larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InputError(source, f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InputError(source, "not a JSON object")
        if doc.get("v") != SCHEMA_VERSION:
            raise InputError(source, f"schema version {doc.get('v')!r}, expected {SCHEMA_VERSION}")
        unknown = sorted(set(doc) - _FIELDS)
        missing = sorted(_FIELDS - set(doc))
        if unknown or missing:
            raise InputError(source, f"fields: unknown {unknown}, missing {missing}")
        try:
            kind = ProbeKind(doc["kind"])
        except ValueError:
            raise InputError(source, f"kind: {doc['kind']!r} is not triage or deep") from None
        try:
            when = datetime.fromisoformat(str(doc["requested_at"]))
        except ValueError:
            raise InputError(source, "requested_at: not an ISO 8601 time") from None
        if when.tzinfo is None:
            raise InputError(source, "requested_at: no time zone")
        attempt = doc["attempt"]
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise InputError(source, f"attempt: {attempt!r} is not a whole number")
        request = cls(
            kind,
            **{k: doc[k] for k in (
                "request_id", "scan_id", "subscription", "cluster_id",
                "node_resource_group", "vmss", "instance_id", "reason",
            )},
            attempt=attempt,
            requested_at=when,
        )  # fmt: skip
        request.validate(source)
        return request
