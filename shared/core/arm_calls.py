"""ARM call counts: what the scan records of the ARM (and metrics) calls a run made.

A snapshot of the adapters' counter (shared/adapters/callcount.py counts every HTTP attempt,
and every 429 answer, under a stable operation name); a job takes the difference over its run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallCounts"]


@dataclass(frozen=True, slots=True)
class CallCounts:
    """A snapshot of one counter: requests and 429 answers per operation name."""

    requests: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def total_throttled(self) -> int:
        return sum(self.throttled.values())

    @property
    def subscription_wide(self) -> int:
        return sum(n for op, n in self.requests.items() if " sub:" in op)

    @property
    def per_resource(self) -> int:
        return self.total - self.subscription_wide

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "subscription_wide": self.subscription_wide,
            "per_resource": self.per_resource,
            "throttled": self.total_throttled,
            "by_operation": dict(sorted(self.requests.items())),
            "throttled_by_operation": dict(sorted(self.throttled.items())),
        }
