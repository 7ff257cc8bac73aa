"""The exceptions of tunnelwatch, drawn here as one hierarchy.

    TunnelwatchError
     +-- InputError    a file, argument or message we were given is malformed
     +-- ConfigError   settings are missing or invalid (every problem listed at once)

A broken cluster is not an exception: it is a Finding. These are for input we cannot read.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError", "TunnelwatchError"]


class TunnelwatchError(Exception):
    """Base of every error tunnelwatch raises on purpose."""


class InputError(TunnelwatchError):
    """Input that cannot be understood; names the input, the place and what is wrong."""

    def __init__(self, source: str, message: str, *, line: int | None = None) -> None:
        self.source = source
        self.message = message
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class ConfigError(TunnelwatchError):
    """Invalid settings; `problems` holds one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))
