"""Settings: one frozen object read from the environment (app settings), validated at start.

`Settings.from_env(environ)` reports every bad key at once (ConfigError.problems), so a deployment
with three typos fails with three lines, not one per restart. Every key is listed, with its
default and meaning, in SETTINGS below; README.md and local.settings.sample.json are checked
against this list by the tests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.core.lifecycle import Damping
from shared.errors import ConfigError

__all__ = ["SETTINGS", "TRIGGER_STORAGE", "Setting", "Settings"]

# The connection the queue triggers read (functions/probe_worker.py). A trigger's connection is
# fixed in the binding when the host indexes the app, so it cannot follow STORAGE_CONNECTION:
# the senders must use this same name, or probe requests go to a queue no worker reads.
TRIGGER_STORAGE = "AzureWebJobsStorage"

_QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]")  # fullmatch only
_TABLE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")
_CRON_FIELD = re.compile(r"[0-9*/,\-A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    default: str | None  # None: required
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "TUNNELWATCH_SUBSCRIPTIONS",
        None,
        "comma-separated subscription ids to scan (the deployment's own subscription)",
    ),
    Setting(
        "SCAN_SCHEDULE",
        "0 */5 * * * *",
        "NCRONTAB (6 fields, UTC) of the scan timer; default every 5 minutes",
    ),
    Setting(
        "PROBE_SCHEDULE",
        "0 7 * * * *",
        "NCRONTAB of the routine node probes; default hourly (minute 7, off the scan's beat)",
    ),
    Setting("PROBE_BUDGET", "20", "run commands allowed per probe cycle, all clusters together"),
    Setting("PROBE_QUEUE", "probe-requests", "queue of node probe requests"),
    Setting(
        "STORAGE_CONNECTION",
        TRIGGER_STORAGE,
        "app setting prefix of the storage; only the one the queue triggers read is accepted",
    ),
    Setting("TABLE_PREFIX", "tunnelwatch", "prefix of the Table Storage table names"),
    Setting(
        "ARM_ENDPOINT",
        "https://management.azure.com",
        "Azure Resource Manager endpoint (sovereign clouds: their own)",
    ),
    Setting("ARM_CA_BUNDLE", "", "extra CA bundle file for ARM (private endpoints, test rigs)"),
    Setting("SNAT_THRESHOLD_PERCENT", "80", "used/allocated SNAT ports that count as high"),
    Setting("SNAT_WINDOW_MINUTES", "5", "SNAT judgement window, in one-minute points"),
    Setting("SNAT_MIN_BAD_POINTS", "3", "high points in the window that make exhaustion"),
    Setting(
        "CHECK_LEGACY_TUNNEL_PORTS",
        "false",
        "also check TCP 9000 / UDP 1194 egress on clusters without tunnel-front/aks-link",
    ),
    Setting("SERVICE_TAGS_CACHE_HOURS", "24", "how long service tag prefixes are cached"),
    Setting("OPEN_AFTER", "1", "observations in a row that report a finding before it opens"),
    Setting(
        "RESOLVE_AFTER",
        "2",
        "complete scans in a row without a finding before it resolves (docs/storage.md)",
    ),
)


def _cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 6:
        raise ValueError(
            f"needs 6 NCRONTAB fields (second minute hour day month weekday), got {len(fields)}"
        )
    bad = [f for f in fields if not _CRON_FIELD.fullmatch(f)]
    if bad:
        raise ValueError(f"invalid field(s) {', '.join(bad)}")
    return " ".join(fields)


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value, 10)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is outside {low}-{high}")
        return number

    return parse


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{value!r} is not true/false")


def _subscriptions(value: str) -> tuple[str, ...]:
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise ValueError("no subscription id given")
    bad = []
    for sid in ids:
        try:
            uuid.UUID(sid)
        except ValueError:
            bad.append(sid)
    if bad:
        raise ValueError(f"not a subscription id (GUID): {', '.join(bad)}")
    return tuple(dict.fromkeys(sid.lower() for sid in ids))


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{value!r} is not an https:// URL")
    return value.rstrip("/")


def _match(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):  # the whole value, not a prefix before a newline
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


def _plain(value: str) -> str:
    return value


def _trigger_storage(value: str) -> str:
    # Never quoted: a connection string put here by mistake holds the account key.
    if value == TRIGGER_STORAGE:
        return value
    what = "a connection string" if "=" in value or ";" in value else "another setting"
    raise ValueError(
        f"names {what}, but the probe queue triggers read {TRIGGER_STORAGE}: the scan would "
        f"send probe requests where no worker reads them. Leave it unset (or {TRIGGER_STORAGE}) "
        f"and configure the storage under {TRIGGER_STORAGE}"
    )


_PARSERS: dict[str, Callable[[str], Any]] = {
    "TUNNELWATCH_SUBSCRIPTIONS": _subscriptions,
    "SCAN_SCHEDULE": _cron,
    "PROBE_SCHEDULE": _cron,
    "PROBE_BUDGET": _int_range(0, 10_000),
    "PROBE_QUEUE": _match(_QUEUE_NAME, "queue name (3-63 lower-case letters, digits, hyphens)"),
    "STORAGE_CONNECTION": _trigger_storage,
    "TABLE_PREFIX": _match(_TABLE_PREFIX, "table prefix (a letter, then letters and digits)"),
    "ARM_ENDPOINT": _https_url,
    "ARM_CA_BUNDLE": _plain,
    "SNAT_THRESHOLD_PERCENT": _int_range(1, 100),
    "SNAT_WINDOW_MINUTES": _int_range(1, 60),
    "SNAT_MIN_BAD_POINTS": _int_range(1, 60),
    "CHECK_LEGACY_TUNNEL_PORTS": _bool,
    "SERVICE_TAGS_CACHE_HOURS": _int_range(1, 168),
    "OPEN_AFTER": _int_range(1, 100),
    "RESOLVE_AFTER": _int_range(1, 100),
}


@dataclass(frozen=True, slots=True)
class Settings:
    subscriptions: tuple[str, ...]
    scan_schedule: str
    probe_schedule: str
    probe_budget: int
    probe_queue: str
    storage_connection: str
    table_prefix: str
    arm_endpoint: str
    arm_ca_bundle: str
    snat_threshold_percent: int
    snat_window_minutes: int
    snat_min_bad_points: int
    check_legacy_tunnel_ports: bool
    service_tags_cache_hours: int
    open_after: int
    resolve_after: int

    @property
    def damping(self) -> Damping:
        """OPEN_AFTER and RESOLVE_AFTER, for the finding store's lifecycle."""
        return Damping(open_after=self.open_after, resolve_after=self.resolve_after)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        values: dict[str, Any] = {}
        problems: list[str] = []
        for setting in SETTINGS:
            raw = environ.get(setting.key)
            if raw is None or (raw.strip() == "" and setting.default is None):
                if setting.default is None:
                    problems.append(f"{setting.key}: required ({setting.help})")
                    continue
                raw = setting.default
            try:
                values[setting.key] = _PARSERS[setting.key](raw.strip())
            except ValueError as exc:
                problems.append(f"{setting.key}: {exc}")
        if not problems and values["SNAT_MIN_BAD_POINTS"] > values["SNAT_WINDOW_MINUTES"]:
            problems.append(
                "SNAT_MIN_BAD_POINTS: "
                f"{values['SNAT_MIN_BAD_POINTS']} is more than SNAT_WINDOW_MINUTES "
                f"({values['SNAT_WINDOW_MINUTES']})"
            )
        if problems:
            raise ConfigError(problems)
        return cls(**{key.lower().replace("tunnelwatch_", ""): v for key, v in values.items()})
