"""Webhook events: one finding flip as a CloudEvents 1.0 structured JSON event, and its
Standard Webhooks signature.

Pure: no I/O, no clock ("now" is passed in), no azure import. The sender (an adapter, not
here) calls `cloud_event()` + `render()` once per flip, and `sign()` at every delivery
attempt, so a retried delivery carries the same `webhook-id` and body with a fresh timestamp
(receivers reject timestamps more than 5 minutes off their clock).

- the event `id` is derived from the run id, the fingerprint and the kind of flip: a repeated
  delivery of one flip has the same id (receivers deduplicate on it), two flips never share one;
- `webhook-id` is that id; the signature is `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
  with the key decoded from a `whsec_<base64>` secret; during a rotation two secrets give two
  space-separated signatures, and a receiver holding either accepts the delivery;
- a secret is a `Secret`: its repr and str are masked, and no error message quotes it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from shared.analysis.findings import Finding
from shared.core.lifecycle import Event, HistoryEvent, StoredFinding
from shared.errors import InputError, excerpt

__all__ = [
    "CONTENT_TYPE",
    "EVENT_TYPE_PREFIX",
    "MAX_SECRETS",
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "FlipKind",
    "Secret",
    "cloud_event",
    "event_id",
    "render",
    "sign",
]

SPEC_VERSION = "1.0"
EVENT_TYPE_PREFIX = "io.tunnelwatch.finding."
# Structured mode over HTTP: the whole event is the body, with this media type.
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
MIN_SECRET_BYTES = 24  # Standard Webhooks: secrets of 24 to 64 random bytes
MAX_SECRET_BYTES = 64
MAX_SECRETS = 2  # the current secret and, during a rotation, the one it replaces


class FlipKind(StrEnum):
    """The flips a webhook announces (the lifecycle's NEW is "opened" to a receiver)."""

    OPENED = "opened"
    RESOLVED = "resolved"
    REOPENED = "reopened"

    @property
    def event_type(self) -> str:
        return f"{EVENT_TYPE_PREFIX}{self.value}"


_KINDS = {
    Event.NEW: FlipKind.OPENED,
    Event.RESOLVED: FlipKind.RESOLVED,
    Event.REOPENED: FlipKind.REOPENED,
}


class Secret:
    """A webhook signing key. Never shown: repr and str are masked, errors do not quote it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise InputError(
                "webhook secret",
                f"must be {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, got {len(key)}",
            )
        self._key = bytes(key)

    @classmethod
    def parse(cls, text: str, *, name: str = "webhook secret") -> Secret:
        """A `whsec_<base64>` secret; `name` (a destination or setting) is what errors name."""
        if not text.startswith(SECRET_PREFIX):
            raise InputError(name, f"a webhook secret starts with {SECRET_PREFIX!r}")
        try:
            key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            # from None: the decoder's own message may quote the input.
            raise InputError(name, "the part after 'whsec_' is not base64") from None
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise InputError(
                name, f"must decode to {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, got {len(key)}"
            )
        return cls(key)

    def signature(self, content: bytes) -> str:
        """`v1,<base64 HMAC-SHA256 of content>`."""
        digest = hmac.new(self._key, content, hashlib.sha256).digest()
        return f"v1,{base64.b64encode(digest).decode('ascii')}"

    def __repr__(self) -> str:
        return "Secret('whsec_***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickled into a queue message or a table
        raise TypeError("a webhook Secret is not serialised")


def event_id(run_id: str, fingerprint: str, kind: FlipKind) -> str:
    """The event's id: the same for every delivery of one flip, distinct across flips."""
    if not run_id.strip() or not fingerprint.strip():
        raise InputError("webhook event", "run id and fingerprint must not be empty")
    material = "\x1f".join((run_id, fingerprint, kind.value))
    return f"tw_{hashlib.sha256(material.encode()).hexdigest()[:40]}"


def _rfc3339(moment: datetime | None, what: str) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InputError("webhook event", f"{what} must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _data(
    kind: FlipKind, finding: Finding, state: StoredFinding, incident: str, run_id: str
) -> dict[str, Any]:
    s = finding.subject
    fix = finding.remediation
    return {
        "flip": kind.value,
        "fingerprint": state.fingerprint,
        "cluster_id": state.cluster_id,
        "subscription": state.subscription,
        "cause": None if finding.cause is None else int(finding.cause),
        "cause_title": None if finding.cause is None else finding.cause.title,
        "origin": finding.origin.value,
        "check": finding.check,
        "title": finding.title,
        "kind": finding.kind.value,
        "severity": finding.severity.value,
        "cluster": s.cluster,
        "node_pool": s.node_pool,
        "node": s.node,
        "resource": s.resource,
        "evidence": list(finding.evidence),
        "fix": None
        if fix is None
        else {"summary": fix.summary, "commands": list(fix.commands), "notes": list(fix.notes)},
        "first_seen": _rfc3339(finding.first_seen, "first_seen"),
        "last_seen": _rfc3339(finding.last_seen, "last_seen"),
        "reopen_count": state.reopen_count,
        "incident_id": incident,
        "run_id": run_id,
    }


def cloud_event(flip: HistoryEvent, state: StoredFinding, *, incident_id: str) -> dict[str, Any]:
    """The CloudEvents 1.0 event (as a JSON object) announcing `flip`.

    `state` is the finding's state the same observation wrote (in the transition's `changed`
    for opened and reopened, `resolved` for resolved): it carries the subscription and the
    reopen count. `incident_id` is the incident the finding belongs to (shared.core.incidents).
    Deterministic: the same arguments give the same event, so the same body.
    """
    kind = _KINDS.get(flip.event)
    if kind is None:
        raise InputError("webhook event", f"{flip.event.value} is not a flip")
    if flip.finding is None or not flip.fingerprint:
        raise InputError("webhook event", f"the {kind.value} flip carries no finding")
    if state.fingerprint != flip.fingerprint:
        raise InputError(
            "webhook event",
            f"the state of {excerpt(state.fingerprint)} does not belong to the flip of "
            f"{excerpt(flip.fingerprint)}",
        )
    if not incident_id.strip():
        raise InputError("webhook event", f"the flip of {flip.fingerprint} needs an incident id")
    subscription = state.subscription or flip.finding.subject.subscription
    if not subscription.strip():
        raise InputError("webhook event", f"the flip of {flip.fingerprint} has no subscription")
    return {
        "specversion": SPEC_VERSION,
        "id": event_id(flip.run_id, flip.fingerprint, kind),
        # A URI-reference: the subscription is percent-encoded, whatever it holds.
        "source": f"/tunnelwatch/{quote(subscription.lower(), safe='')}",
        "type": kind.event_type,
        "subject": flip.fingerprint,
        "time": _rfc3339(flip.at, "the flip's time"),
        "datacontenttype": "application/json",
        "data": _data(kind, flip.finding, state, incident_id, flip.run_id),
    }


def render(event: dict[str, Any]) -> bytes:
    """The request body: compact JSON, the same bytes for the same event.

    ASCII only (every other character \\u-escaped): any text a node hands us, a lone
    surrogate included, encodes and round-trips exactly, and a receiver that re-decodes the
    body cannot change the signed bytes."""
    return json.dumps(event, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode(
        "ascii"
    )


def sign(
    message_id: str, body: bytes, secrets: Sequence[Secret], *, now: datetime
) -> dict[str, str]:
    """The headers of one delivery attempt: `webhook-id`, `webhook-timestamp` (unix seconds
    of `now`), `webhook-signature` (one `v1,` signature per secret, space-separated) and the
    structured-mode content type. Call it at every attempt, with that attempt's `now`."""
    if not message_id or any(c in message_id for c in " \r\n,"):
        raise InputError("webhook delivery", f"bad message id {excerpt(message_id)}")
    if not 1 <= len(secrets) <= MAX_SECRETS:
        raise InputError("webhook delivery", f"needs 1-{MAX_SECRETS} secrets, got {len(secrets)}")
    if now.tzinfo is None:
        raise InputError("webhook delivery", "'now' must be timezone-aware")
    timestamp = str(int(now.timestamp()))
    content = f"{message_id}.{timestamp}.".encode() + body
    return {
        "content-type": CONTENT_TYPE,
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": " ".join(s.signature(content) for s in secrets),
    }
