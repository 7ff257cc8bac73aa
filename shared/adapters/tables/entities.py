"""Converting stored records to and from Table entities (plain dicts), within the limits.

Pure: no SDK import. Writing fits every text into the entity limits (limits.py) and masks
credentials (shared.redaction); reading checks every property and raises `InputError` naming
the table, the entity's keys and the property when a row is malformed (edited by hand, or
written by a future version), never anything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from shared.adapters.tables.keys import incident_until
from shared.adapters.tables.limits import (
    MAX_PROPERTIES,
    MAX_STRING_BYTES,
    TRUNCATION_MARK,
    fit_json_list,
    fit_json_mapping,
    fit_text,
    utf16_size,
)
from shared.adapters.tables.model import (
    SCAN_SCOPE,
    Event,
    FindingState,
    HistoryEvent,
    RunStatus,
    ScanRun,
    StoredFinding,
)
from shared.analysis.findings import Cause, Finding, Kind, Origin, Remediation, Severity, Subject
from shared.core.incidents import Incident
from shared.errors import InputError
from shared.redaction import redact

__all__ = [
    "finding_properties",
    "history_from_entity",
    "history_properties",
    "incident_from_entity",
    "incident_properties",
    "run_from_entity",
    "run_properties",
    "stored_from_entity",
    "stored_properties",
]

_IDENTITY_BYTES = 16 * 1024  # ids, check names, keys: short in practice, bounded here
_TITLE_BYTES = 8 * 1024
_E = TypeVar("_E", bound=StrEnum)
Entity = dict[str, Any]


class _Fitter:
    """Fits values and remembers whether anything was cut."""

    def __init__(self) -> None:
        self.cut = False

    def text(self, value: str, limit: int, *, secret_safe: bool = False) -> str:
        out, cut = fit_text(value if secret_safe else redact(value), limit)
        self.cut |= cut
        return out

    def ident(self, value: str) -> str:
        # Identity fields are not redacted: that would change what they identify.
        return self.text(value, _IDENTITY_BYTES, secret_safe=True)

    def lines(self, values: tuple[str, ...], limit: int = MAX_STRING_BYTES) -> str:
        out, cut = fit_json_list([redact(v) for v in values], limit)
        self.cut |= cut
        return out

    def commands(self, values: tuple[str, ...], limit: int) -> list[str]:
        """Commands whole, in order, or not at all: a cut or masked command would run as
        another one, and a later step without the one before may fix nothing. From the first
        that does not fit (or that redaction would change), the rest give way to one marker
        saying how many were left out."""
        kept: list[str] = []
        used = 2 + 512  # the brackets, and room for the marker
        for i, command in enumerate(values):
            size = utf16_size(json.dumps(command, ensure_ascii=False)) + 4
            masked = redact(command) != command
            if masked or used + size > limit:
                why = "one holds text that looks like a secret" if masked else "too long to store"
                kept.append(
                    f"{TRUNCATION_MARK} {len(values) - i} of {len(values)} command(s) left out, "
                    f"{why}; the scan or analyze output shows them whole]"
                )
                self.cut = True
                break
            kept.append(command)
            used += size
        return kept

    def ids(self, values: tuple[str, ...]) -> str:
        out, cut = fit_json_list(values, MAX_STRING_BYTES)
        self.cut |= cut
        return out

    def counts(self, values: Mapping[str, int]) -> str:
        out, cut = fit_json_mapping(values)
        self.cut |= cut
        return out


def _remediation_json(fit: _Fitter, rem: Remediation) -> str:
    return json.dumps(
        {
            "summary": fit.text(rem.summary, _TITLE_BYTES),
            "commands": fit.commands(rem.commands, 24 * 1024),
            "notes": json.loads(fit.lines(rem.notes, 24 * 1024)),
        },
        ensure_ascii=False,
    )


def _finding_props(fit: _Fitter, finding: Finding) -> Entity:
    s = finding.subject
    props: Entity = {
        "check": fit.ident(finding.check),
        "kind": finding.kind.value,
        "severity": finding.severity.value,
        "origin": finding.origin.value,
        "title": fit.text(finding.title, _TITLE_BYTES),
        "key": fit.ident(finding.key),
        "subject_subscription": fit.ident(s.subscription),
        "subject_cluster": fit.ident(s.cluster),
        "subject_node_pool": fit.ident(s.node_pool),
        "subject_node": fit.ident(s.node),
        "subject_resource": fit.ident(s.resource),
        "evidence": fit.lines(finding.evidence),
    }
    # Absent properties stand for None: tables store no nulls.
    if finding.cause is not None:
        props["cause"] = int(finding.cause)
    if finding.remediation is not None:
        props["remediation"] = _remediation_json(fit, finding.remediation)
    if finding.first_seen is not None:
        props["first_seen"] = finding.first_seen
    if finding.last_seen is not None:
        props["last_seen"] = finding.last_seen
    return props


def _checked(entity: Entity) -> Entity:
    custom = [k for k in entity if k not in {"PartitionKey", "RowKey"}]
    if len(custom) > MAX_PROPERTIES:  # a bug of ours, not of the data
        raise AssertionError(f"entity has {len(custom)} properties (limit {MAX_PROPERTIES})")
    return entity


def finding_properties(finding: Finding) -> tuple[Entity, bool]:
    """A finding's own properties (no keys, no state); True when some text was cut."""
    fit = _Fitter()
    return _finding_props(fit, finding), fit.cut


def stored_properties(pk: str, rk: str, stored: StoredFinding) -> Entity:
    """The entity of a current finding (findings table and open index share it)."""
    fit = _Fitter()
    entity: Entity = {
        "PartitionKey": pk,
        "RowKey": rk,
        "fingerprint": stored.fingerprint,
        "cluster_id": fit.ident(stored.cluster_id),
        "subscription": fit.ident(stored.subscription),
        "state": stored.state.value,
        "opened_at": stored.opened_at,
        "reopen_count": stored.reopen_count,
        "run_id": fit.ident(stored.run_id),
        "scope": fit.ident(stored.scope),
        "streak": stored.streak,
        "missed": stored.missed,
    }
    entity.update(_finding_props(fit, stored.finding))
    if stored.resolved_at is not None:
        entity["resolved_at"] = stored.resolved_at
    entity["truncated"] = stored.truncated or fit.cut
    return _checked(entity)


def history_properties(pk: str, rk: str, event: HistoryEvent) -> Entity:
    fit = _Fitter()
    entity: Entity = {
        "PartitionKey": pk,
        "RowKey": rk,
        "at": event.at,
        "event": event.event.value,
        "cluster_id": fit.ident(event.cluster_id),
        "fingerprint": event.fingerprint,
        "run_id": fit.ident(event.run_id),
        "reason": fit.text(event.reason, _TITLE_BYTES),
        "held": fit.ids(event.held),
    }
    if event.finding is not None:
        entity.update(_finding_props(fit, event.finding))
    entity["truncated"] = fit.cut
    return _checked(entity)


def run_properties(pk: str, rk: str, run: ScanRun) -> Entity:
    fit = _Fitter()
    entity: Entity = {
        "PartitionKey": pk,
        "RowKey": rk,
        "run_id": fit.ident(run.run_id),
        "started": run.started,
        "status": run.status.value,
        "subscriptions": fit.ids(run.subscriptions),
        "clusters_scanned": _int_value(run.clusters_scanned),
        "clusters_failed": fit.ids(run.clusters_failed),
        "clusters_failed_count": len(run.clusters_failed),
        "arm_calls": _int_value(run.arm_calls),
        "arm_calls_by_operation": fit.counts(run.arm_calls_by_operation),
        "finding_counts": fit.counts(run.finding_counts),
        "errors": fit.lines(run.errors),
    }
    if run.finished is not None:
        entity["finished"] = run.finished
    entity["truncated"] = fit.cut
    return _checked(entity)


def _int_value(value: int) -> int:
    # Int32 is what the SDK writes for a Python int; anything larger is out of range for
    # these counters, so clamp rather than fail a whole scan's bookkeeping.
    return max(0, min(value, 2**31 - 1))


# ---- reading -------------------------------------------------------------------------


class _Reader:
    """Typed access to one entity's properties; every failure names the row and property."""

    def __init__(self, table: str, entity: Mapping[str, Any]) -> None:
        self.entity = entity
        pk, rk = entity.get("PartitionKey", "?"), entity.get("RowKey", "?")
        self.source = f"table {table} entity {pk!s}/{rk!s}"

    def fail(self, name: str, what: str) -> InputError:
        return InputError(self.source, f"property {name!r}: {what}")

    def text(self, name: str, *, default: str | None = None) -> str:
        value = self.entity.get(name, default)
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {type(value).__name__}")
        return value

    def integer(self, name: str, *, default: int | None = None) -> int:
        value = self.entity.get(name, default)
        # Int64 values come back as an (value, edm_type) pair.
        if isinstance(value, tuple) and len(value) == 2:
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {type(value).__name__}")
        return value

    def flag(self, name: str) -> bool:
        value = self.entity.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(name, f"expected a boolean, got {type(value).__name__}")
        return value

    def time(self, name: str) -> datetime:
        value = self.entity.get(name)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self.fail(name, "expected a UTC DateTime")
        # A plain datetime in UTC: the SDK's datetime subclass stays behind this boundary.
        try:
            utc = value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise self.fail(name, f"{value!r} is out of range") from None
        return datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=UTC)

    def optional_time(self, name: str) -> datetime | None:
        return None if self.entity.get(name) is None else self.time(name)

    def enum(self, name: str, kind: type[_E]) -> _E:
        raw = self.text(name)
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise self.fail(name, f"{raw!r} is not one of {allowed}") from None

    def json_value(self, name: str, check: Callable[[Any], bool], what: str, default: str) -> Any:
        raw = self.text(name, default=default)
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
            raise self.fail(name, f"not JSON ({type(exc).__name__}: {exc})") from None
        if not check(value):
            raise self.fail(name, f"expected {what}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.json_value(
            name,
            lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
            "a JSON list of strings",
            "[]",
        )
        return tuple(value)

    def counts(self, name: str) -> dict[str, int]:
        return dict(
            self.json_value(
                name,
                lambda v: (
                    isinstance(v, dict)
                    and all(isinstance(n, int) and not isinstance(n, bool) for n in v.values())
                ),
                "a JSON object of integers",
                "{}",
            )
        )


def _remediation(r: _Reader) -> Remediation | None:
    if r.entity.get("remediation") is None:
        return None

    def valid(v: Any) -> bool:
        return (
            isinstance(v, dict)
            and isinstance(v.get("summary"), str)
            and all(
                isinstance(v.get(part), list) and all(isinstance(i, str) for i in v[part])
                for part in ("commands", "notes")
            )
        )

    value = r.json_value("remediation", valid, "an object with summary, commands, notes", "")
    return Remediation(value["summary"], tuple(value["commands"]), tuple(value["notes"]))


def _finding(r: _Reader) -> Finding:
    cause: Cause | None = None
    if r.entity.get("cause") is not None:
        number = r.integer("cause")
        try:
            cause = Cause(number)
        except ValueError:
            raise r.fail("cause", f"{number} is not a cause (1-6)") from None
    return Finding(
        check=r.text("check"),
        cause=cause,
        kind=r.enum("kind", Kind),
        severity=r.enum("severity", Severity),
        subject=Subject(
            subscription=r.text("subject_subscription", default=""),
            cluster=r.text("subject_cluster", default=""),
            node_pool=r.text("subject_node_pool", default=""),
            node=r.text("subject_node", default=""),
            resource=r.text("subject_resource", default=""),
        ),
        title=r.text("title"),
        evidence=r.str_list("evidence"),
        remediation=_remediation(r),
        key=r.text("key", default=""),
        origin=r.enum("origin", Origin),
        first_seen=r.optional_time("first_seen"),
        last_seen=r.optional_time("last_seen"),
    )


def stored_from_entity(table: str, entity: Mapping[str, Any]) -> StoredFinding:
    r = _Reader(table, entity)
    return StoredFinding(
        fingerprint=r.text("fingerprint"),
        cluster_id=r.text("cluster_id"),
        subscription=r.text("subscription", default=""),
        state=r.enum("state", FindingState),
        finding=_finding(r),
        opened_at=r.time("opened_at"),
        resolved_at=r.optional_time("resolved_at"),
        reopen_count=r.integer("reopen_count", default=0),
        run_id=r.text("run_id", default=""),
        truncated=r.flag("truncated"),
        scope=r.text("scope", default=SCAN_SCOPE),
        streak=r.integer("streak", default=0),
        missed=r.integer("missed", default=0),
    )


def history_from_entity(table: str, entity: Mapping[str, Any]) -> HistoryEvent:
    r = _Reader(table, entity)
    event = r.enum("event", Event)
    finding = _finding(r) if "check" in entity else None
    if event.is_flip and finding is None:
        raise r.fail("check", f"a {event.value} row must carry its finding")
    return HistoryEvent(
        at=r.time("at"),
        cluster_id=r.text("cluster_id"),
        event=event,
        run_id=r.text("run_id", default=""),
        fingerprint=r.text("fingerprint", default=""),
        finding=finding,
        reason=r.text("reason", default=""),
        held=r.str_list("held"),
    )


def run_from_entity(table: str, entity: Mapping[str, Any]) -> ScanRun:
    r = _Reader(table, entity)
    return ScanRun(
        run_id=r.text("run_id"),
        started=r.time("started"),
        finished=r.optional_time("finished"),
        status=r.enum("status", RunStatus),
        subscriptions=r.str_list("subscriptions"),
        clusters_scanned=r.integer("clusters_scanned", default=0),
        clusters_failed=r.str_list("clusters_failed"),
        arm_calls=r.integer("arm_calls", default=0),
        arm_calls_by_operation=r.counts("arm_calls_by_operation"),
        finding_counts=r.counts("finding_counts"),
        errors=r.str_list("errors"),
    )


def incident_properties(pk: str, incident: Incident) -> Entity:
    """The entity of an incident (RowKey: its id, which starts with its opening time)."""
    fit = _Fitter()
    entity: Entity = {
        "PartitionKey": pk,
        "RowKey": incident.incident_id,
        "incident_id": incident.incident_id,
        "cluster_id": fit.ident(incident.cluster_id),
        "group": fit.ident(incident.group),
        "opened_at": incident.opened_at,
        "until": incident_until(incident.resolved_at),
        "findings": fit.ids(incident.findings),
        "open_findings": fit.ids(incident.open_findings),
        "reopen_count": incident.reopen_count,
    }
    if incident.resolved_at is not None:
        entity["resolved_at"] = incident.resolved_at
    entity["truncated"] = fit.cut
    return _checked(entity)


def incident_from_entity(table: str, entity: Mapping[str, Any]) -> Incident:
    r = _Reader(table, entity)
    return Incident(
        incident_id=r.text("incident_id"),
        cluster_id=r.text("cluster_id"),
        group=r.text("group"),
        opened_at=r.time("opened_at"),
        resolved_at=r.optional_time("resolved_at"),
        findings=r.str_list("findings"),
        open_findings=r.str_list("open_findings"),
        reopen_count=r.integer("reopen_count", default=0),
    )
