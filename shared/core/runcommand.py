"""A run command's outcome as a value: the output, or what went wrong, classified by what the
probe worker must do about it (the adapter, shared/adapters/runcommand.py, says which Azure
answers are which).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.analysis.runcommand import RunCommandOutput

__all__ = ["Failure", "RunOutcome"]


class Failure(StrEnum):
    BUSY = "busy"
    NOT_RUNNING = "not_running"
    DENIED = "denied"
    THROTTLED = "throttled"
    NOT_FOUND = "not_found"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one run command gave: `output`, or `failure` with Azure's code and message."""

    output: RunCommandOutput | None = None
    failure: Failure | None = None
    status: int | None = None  # the HTTP status of a refused call
    code: str = ""  # Azure's error code (Conflict, AuthorizationFailed, ...)
    message: str = ""
    retry_after: float | None = None  # seconds, from a 429's Retry-After
    seconds: float = 0.0  # how long the call and its operation took
