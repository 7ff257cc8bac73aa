"""Table names, PartitionKey/RowKey construction and the (parameterized) queries over them.

Pure: no SDK import, so the exact filter strings can be tested on their own. Every query
here is a key lookup or a key range; none scans a table:

    findings of a cluster   PartitionKey eq @pk                                  (one partition)
    open findings           PartitionKey eq 'open' [and RowKey in a prefix range]
    history window          PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi
    scan runs by time       PartitionKey ge @plo and PartitionKey le @phi and RowKey ge @lo
                            and RowKey lt @hi      (month partitions, time-ordered rows)
    incidents open at T     PartitionKey eq @pk and RowKey lt @hi and until gt @t
    recent incidents        PartitionKey eq @pk and until ge @lo   (one partition)

Values only ever travel as `parameters`; the SDK quotes them. Filters keep each `@name`
between single spaces, which is what the SDK's substitution splits on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.adapters.tables.model import FindingState

__all__ = [
    "CLUSTER_LEVEL",
    "OPEN_PARTITION",
    "OPEN_UNTIL",
    "TableNames",
    "TableQuery",
    "cluster_key",
    "cluster_query",
    "history_query",
    "history_row_key",
    "incident_until",
    "incidents_open_at_query",
    "incidents_recent_query",
    "month_key",
    "open_query",
    "open_row_key",
    "run_row_key",
    "runs_query",
    "scope_key",
    "subscription_of",
    "time_key",
]

OPEN_PARTITION = "open"
CLUSTER_LEVEL = "-"  # the RowKey suffix of cluster-level history rows; sorts before hex
_KEY_MAX_CHARS = 512  # keys may be 1 KiB; counted as UTF-16, 512 characters always fit
_TABLE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,48}")
_RUN_ID_SAFE = re.compile(r"[A-Za-z0-9._~:-]")
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TableNames:
    """The five tables, named `<prefix>Runs`, `<prefix>Findings`, ... (alphanumeric only)."""

    prefix: str = "tunnelwatch"

    def __post_init__(self) -> None:
        # Table names are 3-63 letters and digits; the longest suffix adds 14.
        if not _TABLE_PREFIX.fullmatch(self.prefix):
            raise ValueError(
                f"table prefix {self.prefix!r}: letters and digits only, starting with a letter, "
                "at most 49 characters"
            )

    @property
    def runs(self) -> str:
        return f"{self.prefix}Runs"

    @property
    def findings(self) -> str:
        return f"{self.prefix}Findings"

    @property
    def history(self) -> str:
        return f"{self.prefix}FindingHistory"

    @property
    def open(self) -> str:
        return f"{self.prefix}OpenFindings"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}Incidents"

    def all(self) -> tuple[str, str, str, str, str]:
        return (self.runs, self.findings, self.history, self.open, self.incidents)


@dataclass(frozen=True, slots=True)
class TableQuery:
    """A filter with its parameters, ready for `TableClient.query_entities`."""

    table: str
    filter: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


def scope_key(resource_id: str) -> str:
    """A stable, key-safe partition key for an ARM id: sha256 of the lower-cased id, 32 hex.

    ARM ids are case-insensitive and contain '/', which keys may not hold; hashing also
    makes quotes, '#', '?' and unicode in ids harmless.
    """
    return hashlib.sha256(resource_id.strip().lower().encode("utf-8")).hexdigest()[:32]


def cluster_key(cluster_id: str) -> str:
    if not cluster_id.strip():
        raise ValueError("cluster id must not be empty")
    return scope_key(cluster_id)


def subscription_of(resource_id: str) -> str:
    """The subscription id of an ARM resource id ('' when it is not one)."""
    match = _SUBSCRIPTION.match(resource_id.strip())
    return match.group(1).lower() if match else ""


def time_key(moment: datetime) -> str:
    """Fixed-width UTC time for keys: lexical order is time order (years 0001-9999)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware (UTC) time")
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="microseconds") + "Z"


def month_key(moment: datetime) -> str:
    return time_key(moment)[:7]


def _encode_run_id(run_id: str) -> str:
    # Run ids are ours, but keys forbid '/', '\\', '#', '?' and control characters: escape
    # everything outside a small safe set (as %XX of its UTF-8 bytes) so any id fits.
    if not run_id:
        raise ValueError("run id must not be empty")
    out = []
    for ch in run_id:
        if _RUN_ID_SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    encoded = "".join(out)
    if len(encoded) > _KEY_MAX_CHARS - 40:
        raise ValueError(f"run id too long for a key ({len(run_id)} characters)")
    return encoded


def run_row_key(started: datetime, run_id: str) -> str:
    return f"{time_key(started)}_{_encode_run_id(run_id)}"


def history_row_key(at: datetime, fingerprint: str) -> str:
    return f"{time_key(at)}_{fingerprint or CLUSTER_LEVEL}"


def open_row_key(subscription: str, cluster_id: str, fingerprint: str) -> str:
    # subscription first, so "open findings of subscription S" is a RowKey prefix range.
    return f"{scope_key(subscription)}_{cluster_key(cluster_id)}_{fingerprint}"


def cluster_query(
    names: TableNames, cluster_id: str, state: FindingState | None = None
) -> TableQuery:
    """Current findings of one cluster: one partition (plus a property filter on state)."""
    params: dict[str, Any] = {"pk": cluster_key(cluster_id)}
    text = "PartitionKey eq @pk"
    if state is not None:
        text += " and state eq @state"
        params["state"] = state.value
    return TableQuery(names.findings, text, params)


def open_query(
    names: TableNames, subscription: str | None = None, cluster_id: str | None = None
) -> TableQuery:
    """All open findings: the 'open' partition of the index, optionally one key prefix."""
    params: dict[str, Any] = {"pk": OPEN_PARTITION}
    if subscription is None:
        if cluster_id is not None:
            raise ValueError("open_query: a cluster needs its subscription")
        return TableQuery(names.open, "PartitionKey eq @pk", params)
    prefix = scope_key(subscription) + "_"
    if cluster_id is not None:
        prefix += cluster_key(cluster_id) + "_"
    # '_' + 1 == '`': the range [prefix, prefix[:-1] + '`') holds exactly the keys
    # that start with the prefix, since every part before the '_' has a fixed width.
    params.update(lo=prefix, hi=prefix[:-1] + "`")
    return TableQuery(names.open, "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi", params)


def history_query(names: TableNames, cluster_id: str, start: datetime, end: datetime) -> TableQuery:
    """History of one cluster in [start, end): one partition, one RowKey range."""
    lo, hi = time_key(start), time_key(end)
    if hi < lo:
        raise ValueError(f"history window ends ({hi}) before it starts ({lo})")
    return TableQuery(
        names.history,
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        {"pk": cluster_key(cluster_id), "lo": lo, "hi": hi},
    )


def runs_query(names: TableNames, start: datetime, end: datetime) -> TableQuery:
    """Scan runs started in [start, end): a range of month partitions, rows by start time."""
    lo, hi = time_key(start), time_key(end)
    if hi < lo:
        raise ValueError(f"run window ends ({hi}) before it starts ({lo})")
    return TableQuery(
        names.runs,
        "PartitionKey ge @plo and PartitionKey le @phi and RowKey ge @lo and RowKey lt @hi",
        {"plo": lo[:7], "phi": hi[:7], "lo": lo, "hi": hi},
    )


OPEN_UNTIL = "~"  # `until` of an open incident: sorts after every time key


def incident_until(resolved_at: datetime | None) -> str:
    """An incident's `until` property: its resolution's time key, or `~` while open."""
    return OPEN_UNTIL if resolved_at is None else time_key(resolved_at)


def incidents_open_at_query(names: TableNames, cluster_id: str, moment: datetime) -> TableQuery:
    """Incidents of one cluster open at `moment`: opened at or before it (the RowKey starts
    with the opening time) and resolved after it (`until`, a property filter)."""
    t = time_key(moment)
    return TableQuery(
        names.incidents,
        "PartitionKey eq @pk and RowKey lt @hi and until gt @t",
        {"pk": cluster_key(cluster_id), "hi": t + "`", "t": t},
    )


def incidents_recent_query(names: TableNames, cluster_id: str, since: datetime) -> TableQuery:
    """Incidents of one cluster open now or resolved at or after `since`."""
    return TableQuery(
        names.incidents,
        "PartitionKey eq @pk and until ge @lo",
        {"pk": cluster_key(cluster_id), "lo": time_key(since)},
    )
