"""Custom events for Application Insights (`customEvents`), through the OpenTelemetry distro.

An event is a log record on the `tunnelwatch.events` logger carrying the attribute
`microsoft.custom_event.name`: the distro (azure-monitor-opentelemetry), which the composition
root configures only when APPLICATIONINSIGHTS_CONNECTION_STRING is set, exports such a record as
an event with its other attributes as custom dimensions. The Functions Python worker's own log
path drops `extra=` attributes, so without the distro a record is only a log line; locally it is
just that. Values are counts, ids and status words: never a secret or a URL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = ["EVENTS_LOGGER", "custom_event"]

EVENTS_LOGGER = "tunnelwatch.events"
EVENT_NAME_ATTRIBUTE = "microsoft.custom_event.name"  # what the exporter reads (its constant)

_log = logging.getLogger(EVENTS_LOGGER)
_log.setLevel(logging.INFO)  # events are INFO records: a WARNING root level must not drop them


def custom_event(name: str, properties: Mapping[str, str | int | float | bool]) -> None:
    """Emit the event `name` with `properties` (custom dimensions)."""
    extra: dict[str, object] = {
        (f"tw_{k}" if k in _RESERVED else k): v for k, v in properties.items()
    }
    extra[EVENT_NAME_ATTRIBUTE] = name
    _log.info("%s %s", name, " ".join(f"{k}={v}" for k, v in properties.items()), extra=extra)


# LogRecord attributes an `extra` key may not overwrite (logging raises KeyError for them).
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
