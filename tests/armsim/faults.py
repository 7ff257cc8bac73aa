"""Deterministic fault injection: throttling (429 + Retry-After), failures, latency.

Rules match an operation name (`managedClusters.list`, `*` for any) and optionally a fragment
of the request path (case-insensitive), so "500 for one cluster's agent pools" is
`Failure("agentPools.list", path_contains="/managedClusters/aks-bad/")`. Counting is per rule
and thread-safe; nothing depends on the clock, so tests never race.

`Chaos(rate, seed)` fails a share of calls at random, yet the same calls on every run: whether
a call fails is a hash of the seed, the operation, the path and how many times that path was
called before, so the threads of a scan may arrive in any order.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

__all__ = ["Chaos", "Failure", "Faults", "Injected", "Throttle"]


@dataclass(frozen=True, slots=True)
class Throttle:
    """429 TooManyRequests for the first `first` matching calls, and/or every `every`-th one."""

    operation: str = "*"
    first: int = 0
    every: int = 0
    retry_after: int = 1  # seconds, in the Retry-After header
    path_contains: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    """An ARM error for matching calls: always, or only the first `times` of them."""

    operation: str = "*"
    status: int = 500
    code: str = "InternalServerError"
    message: str = "Encountered internal server error. Diagnostic information: armsim injected."
    path_contains: str = ""
    times: int | None = None


@dataclass(frozen=True, slots=True)
class Chaos:
    """A seeded share `rate` (0-1) of matching calls fails with one of `statuses` (429: no
    Retry-After, so clients back off on their own schedule)."""

    rate: float
    seed: int = 0
    statuses: tuple[int, ...] = (500, 503, 429, 403)
    operation: str = "*"

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1 or not self.statuses:
            raise ValueError("Chaos: rate is 0-1 and statuses must not be empty")

    def draw(self, operation: str, path: str, n: int) -> int | None:
        """The status of the `n`-th call of `operation` on `path`, or None to answer it."""
        digest = hashlib.sha256(f"{self.seed}|{operation}|{path.lower()}|{n}".encode()).digest()
        if int.from_bytes(digest[:4]) / 2**32 >= self.rate:
            return None
        return self.statuses[digest[4] % len(self.statuses)]


_CHAOS_ANSWER = {
    403: ("AuthorizationFailed", "The client does not have authorization (armsim chaos)."),
    429: ("TooManyRequests", "The request is being throttled (armsim chaos)."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable (armsim chaos)."),
}


@dataclass(frozen=True, slots=True)
class Injected:
    """What the server must answer instead of the real response."""

    status: int
    code: str
    message: str
    retry_after: int | None = None


def _matches(rule_op: str, rule_path: str, operation: str, path: str) -> bool:
    return (rule_op in ("*", operation)) and (rule_path.lower() in path.lower())


@dataclass
class Faults:
    throttles: list[Throttle] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    latency: float = 0.0  # seconds added to every call
    latency_by_operation: dict[str, float] = field(default_factory=dict)
    chaos: Chaos | None = None
    _seen: dict[int, int] = field(default_factory=dict, repr=False)
    _paths: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def delay_for(self, operation: str) -> float:
        return self.latency_by_operation.get(operation, self.latency)

    def check(self, operation: str, path: str) -> Injected | None:
        """Count this call against every matching rule; the first rule that fires wins."""
        with self._lock:
            hit: Injected | None = None
            for i, t in enumerate(self.throttles):
                if not _matches(t.operation, t.path_contains, operation, path):
                    continue
                n = self._seen[i] = self._seen.get(i, 0) + 1
                if hit is None and (n <= t.first or (t.every and n % t.every == 0)):
                    hit = Injected(
                        429, "TooManyRequests",
                        "The request is being throttled as the limit has been reached for "
                        "operation type - Read_ObservationWindow_00:05:00. armsim injected.",
                        t.retry_after,
                    )  # fmt: skip
            for j, f in enumerate(self.failures):
                if not _matches(f.operation, f.path_contains, operation, path):
                    continue
                key = 10_000 + j
                n = self._seen[key] = self._seen.get(key, 0) + 1
                if hit is None and (f.times is None or n <= f.times):
                    hit = Injected(f.status, f.code, f.message)
            chaos = self.chaos
            if hit is None and chaos is not None and chaos.operation in ("*", operation):
                key2 = (operation, path.lower())
                n = self._paths[key2] = self._paths.get(key2, 0) + 1
                status = chaos.draw(operation, path, n)
                if status is not None:
                    code, message = _CHAOS_ANSWER.get(
                        status, ("InternalServerError", "Internal server error (armsim chaos).")
                    )
                    hit = Injected(status, code, message)
            return hit

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self._paths.clear()
