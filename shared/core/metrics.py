"""SNAT metrics as the scan asks for and receives them: which resources, and what was read.

The adapter (shared/adapters/metrics.py) reads Azure Monitor; the bodies are in the REST shape
shared.analysis.snat.parse_metrics reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.inventory.model import id_key

__all__ = ["MetricsRead", "MetricsTarget"]


@dataclass(frozen=True, slots=True)
class MetricsTarget:
    """A resource whose SNAT metrics to read; `region` is its ARM location ("eastus")."""

    resource_id: str
    region: str
    nat_gateway: bool


@dataclass(frozen=True, slots=True)
class MetricsRead:
    """Metrics bodies and failures by id_key(resource id); `notes` are fallbacks taken."""

    metrics: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def body(self, resource_id: str) -> dict[str, Any] | None:
        return self.metrics.get(id_key(resource_id))

    def error(self, resource_id: str) -> str:
        return self.errors.get(id_key(resource_id), "its metrics were not read")
