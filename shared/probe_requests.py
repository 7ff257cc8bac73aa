"""The `probe-requests` queue message: what the scan asks the node-probe worker to do.

Version 2, JSON (the queue adapter base64-encodes it, as the Functions host decodes by default):

    {"v": 2, "kind": "triage" | "deep", "request_id": "<uuid4>", "run_id": "<run id>",
     "subscription": "<guid>", "cluster_id": "<ARM id of the managed cluster>",
     "node_resource_group": "<name>", "vmss": "<scale set name>", "instance_id": "<digits>",
     "reason": "<why, for the record>", "attempt": 1, "requested_at": "<ISO 8601 UTC>"}

`run_id` is the scan run or the probe cycle that asked (the ledger files the request under it).
Version 1 called it `scan_id` (though a probe cycle's id travelled in it too): a version 1
message still queued is read, as exactly version 1 (with `scan_id`, never `run_id`); only
version 2 is written.

The message carries identifiers only, never script text or addresses to probe: the worker
looks every identifier up in a fresh inventory and derives what to probe from it, so a forged
message can at most ask for a probe of a node the scan already knows. Every field is checked
against a strict rule on both sides (encode refuses what decode would refuse), always over the
whole value (`fullmatch`: a trailing newline is not a name), with exact JSON types (`true` is not
the version 1, `1.0` is not an attempt, every other field is a string).

The names follow Azure's own rules, not a narrower ASCII guess: a resource group may hold letters
and digits of any script (`rg-café`) and `- _ . ( )`, so a real estate never produces a request
this module refuses. Those names only travel in ARM URLs, where the SDK percent-encodes each one;
none of them reaches a node. What reaches a node are the run-command parameters, built from the
inventory's addresses and FQDN and checked far more strictly (shared.probe.params).
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.errors import InputError
from shared.redaction import redact

__all__ = [
    "SCHEMA_VERSION",
    "ProbeKind",
    "ProbeRequest",
    "cluster_id_ok",
    "excerpt",
    "printable",
    "resource_group_ok",
    "scale_set_ok",
]

SCHEMA_VERSION = 2
# The message key of the run id in each version read (version 1 named it scan_id).
_RUN_ID_KEY = {1: "scan_id", 2: "run_id"}
MAX_ATTEMPTS = 10
MAX_MESSAGE_BYTES = 4096  # far below the queue's 64 KiB; a larger message is not one of ours

# Every pattern here is used with fullmatch only.
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ANY_CASE_GUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_INSTANCE = re.compile(r"[0-9]{1,10}")  # scale-set (Uniform) instance ids are whole numbers
# managedClusters: ASCII letters, digits, `_` and `-`, 1-63 (the REST spec's pattern).
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,62}")
_RUN_ID = re.compile(r"[A-Za-z0-9_\-:.]{1,64}")
_REASON = re.compile(r"[\x20-\x7e]{0,200}")  # printable ASCII, for logs and tables only
_TIME = re.compile(r"[0-9T:.+\-Z]{10,40}")  # what isoformat() writes; fromisoformat decides
# Letters and digits of any script: .NET's Char.IsLetterOrDigit (what the resource-group rule
# names) plus the rest of its regex `\w` (combining marks, connector punctuation), which the REST
# spec's pattern `^[-\w\._\(\)]+$` uses. No separators, symbols or control characters.
_WORD = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Nd", "Pc"})


def _word(ch: str) -> bool:
    return unicodedata.category(ch) in _WORD


def resource_group_ok(name: str) -> bool:
    """Azure's resource group rule: 1-90 letters or digits of any script, `- _ . ( )`, not
    ending with a period."""
    return (
        1 <= len(name) <= 90
        and not name.endswith(".")
        and all(ch in "-_.()" or _word(ch) for ch in name)
    )


def scale_set_ok(name: str) -> bool:
    """Scale set names: 1-80 letters or digits of any script, `- _ .` (Azure refuses spaces,
    control characters and `~!@#$%^&*()=+[]{}\\|;:'",<>/?` in them)."""
    return 1 <= len(name) <= 80 and all(ch in "-_." or _word(ch) for ch in name)


def cluster_id_ok(value: str) -> bool:
    """/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.ContainerService/
    managedClusters/<name>, the literal parts in any case (ARM ids are case-insensitive)."""
    parts = value.split("/")
    return (
        len(value) <= 300
        and len(parts) == 9
        and parts[0] == ""
        and parts[1].lower() == "subscriptions"
        and _ANY_CASE_GUID.fullmatch(parts[2]) is not None
        and parts[3].lower() == "resourcegroups"
        and resource_group_ok(parts[4])
        and parts[5].lower() == "providers"
        and parts[6].lower() == "microsoft.containerservice"
        and parts[7].lower() == "managedclusters"
        and _CLUSTER_NAME.fullmatch(parts[8]) is not None
    )


def _pattern(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda value: pattern.fullmatch(value) is not None


_RULES: tuple[tuple[str, Callable[[str], bool], str], ...] = (
    ("request_id", _pattern(_GUID), "a lower-case uuid"),
    ("run_id", _pattern(_RUN_ID), "1-64 of A-Z a-z 0-9 _ - : ."),
    ("subscription", _pattern(_GUID), "a lower-case subscription id"),
    ("cluster_id", cluster_id_ok, "a managed cluster's ARM id"),
    ("node_resource_group", resource_group_ok, "1-90 letters, digits, - _ . ( ), no final ."),
    ("vmss", scale_set_ok, "1-80 letters, digits, - _ ."),
    ("instance_id", _pattern(_INSTANCE), "1-10 digits"),
    ("reason", _pattern(_REASON), "0-200 printable ASCII characters"),
)


def excerpt(value: object, limit: int = 80) -> str:
    """`value` for an error message: repr (control characters escaped, so a value cannot
    start a log line of its own), at most `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """`text` in printable ASCII (anything else becomes `?`), for the free-text reason."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


_FIELDS = frozenset(
    {
        "v",
        "kind",
        "request_id",
        "run_id",
        "subscription",
        "cluster_id",
        "node_resource_group",
        "vmss",
        "instance_id",
        "reason",
        "attempt",
        "requested_at",
    }
)  # fmt: skip  (version 2's; version 1 has scan_id for run_id)


class ProbeKind(StrEnum):
    TRIAGE = "triage"  # one node tests every node of its cluster on 10250, and the API server
    DEEP = "deep"  # a node found unreachable or suspect reads its own UFW and rulesets


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    kind: ProbeKind
    request_id: str
    run_id: str  # the scan run or probe cycle that asked (the ledger's partition)
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
        run_id: str = "",
        subscription: str,
        cluster_id: str,
        node_resource_group: str,
        vmss: str,
        instance_id: str,
        reason: str,
        now: datetime,
        request_id: str | None = None,
        scan_id: str = "",
    ) -> ProbeRequest:
        """A first attempt; `request_id` defaults to a new uuid4 (give a derived one to make
        a request that a redelivery would repeat recognisable). `reason` may quote an ARM
        error: it is redacted, made printable and cut to 200 characters. `scan_id` is
        run_id's old name, for callers not yet moved over (give one of the two)."""
        if bool(run_id) == bool(scan_id):
            raise ValueError("ProbeRequest.new: give run_id (or its old name scan_id), once")
        request = cls(
            kind, request_id or str(uuid.uuid4()), run_id or scan_id, subscription.lower(),
            cluster_id,
            node_resource_group, vmss, instance_id, printable(redact(reason))[:200], 1,
            now.astimezone(UTC),
        )  # fmt: skip
        request.validate()
        return request

    def validate(self, source: str = "probe request") -> None:
        problems = []
        for name, ok, rule in _RULES:
            value = getattr(self, name)
            if type(value) is not str or not ok(value):
                problems.append(f"{name}: {excerpt(value)} is not {rule}")
        if type(self.attempt) is not int or not 1 <= self.attempt <= MAX_ATTEMPTS:
            problems.append(
                f"attempt: {excerpt(self.attempt)} is not a whole number 1-{MAX_ATTEMPTS}"
            )
        if type(self.cluster_id) is str and cluster_id_ok(self.cluster_id):
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
        """The request in `text`; InputError (naming the field, quoting at most a short
        excerpt of a value) for anything that is not exactly a message `to_json` writes."""
        if type(text) is not str:
            raise InputError(source, f"expected text, got {type(text).__name__}")
        if (
            len(text) > MAX_MESSAGE_BYTES
            or len(text.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES
        ):
            raise InputError(source, f"message larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            doc = json.loads(text, object_pairs_hook=_no_repeats)
        except (ValueError, RecursionError) as exc:
            raise InputError(source, f"not JSON: {excerpt(str(exc), 120)}") from None
        if type(doc) is not dict:
            raise InputError(source, f"not a JSON object but {type(doc).__name__}")
        version = doc.get("v")
        if type(version) is not int or version not in _RUN_ID_KEY:
            raise InputError(
                source, f"v: schema version {excerpt(version)}, expected 1 or {SCHEMA_VERSION}"
            )
        # an older message still queued is checked against its own version's key names
        key = _RUN_ID_KEY[version]
        fields = (_FIELDS - {"run_id"}) | {key}
        unknown = sorted(k[:40] for k in set(doc) - fields)[:10]
        missing = sorted(fields - set(doc))
        if unknown or missing:
            raise InputError(source, f"fields: unknown {unknown}, missing {missing}")
        wrong = [
            f"{k}: {type(doc[k]).__name__}, expected {'int' if k == 'attempt' else 'str'}"
            for k in sorted(fields - {"v"})
            if type(doc[k]) is not (int if k == "attempt" else str)
        ]
        if wrong:
            raise InputError(source, "; ".join(wrong))
        try:
            kind = ProbeKind(doc["kind"])
        except ValueError:
            raise InputError(
                source, f"kind: {excerpt(doc['kind'])} is not triage or deep"
            ) from None
        stamp = doc["requested_at"]
        try:
            when = datetime.fromisoformat(stamp) if _TIME.fullmatch(stamp) else None
        except ValueError:
            when = None
        if when is None:
            raise InputError(source, f"requested_at: {excerpt(stamp)} is not an ISO 8601 time")
        if when.tzinfo is None:
            raise InputError(source, "requested_at: no time zone")
        request = cls(
            kind,
            run_id=doc[key],
            **{k: doc[k] for k in (
                "request_id", "subscription", "cluster_id",
                "node_resource_group", "vmss", "instance_id", "reason",
            )},
            attempt=doc["attempt"],
            requested_at=when,
        )  # fmt: skip
        try:
            request.validate(source)
        except InputError as exc:
            if key == "run_id":
                raise
            # name the field as the (older) message does
            raise InputError(source, exc.message.replace("run_id:", f"{key}:", 1)) from None
        return request


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (which of two `kind`s would count?)."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return doc
