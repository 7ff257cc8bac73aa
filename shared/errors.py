"""The exceptions of tunnelwatch, drawn here as one hierarchy.

    TunnelwatchError
     +-- InputError    a file, argument or message we were given is malformed
     +-- ConfigError   settings are missing or invalid (every problem listed at once)
     +-- StorageError  Table or Queue storage could not be written or read (after retries)
     +-- ArmError      Azure Resource Manager could not be read (after the clients' retries)

A broken cluster is not an exception: it is a Finding. These are for input we cannot read.
"""

from __future__ import annotations

__all__ = ["ArmError", "ConfigError", "InputError", "StorageError", "TunnelwatchError", "excerpt"]

EXCERPT_CHARS = 120  # what an error message quotes of the input it complains about
_MESSAGE_CHARS = 600  # a whole message (excerpts, names, reasons) is never longer than this


def excerpt(text: object, limit: int = EXCERPT_CHARS) -> str:
    """`text` quoted (repr) for an error message, shortened to about `limit` characters.

    A node or a file may hand us a 1 MB line: an error names the place and shows enough to
    recognise it, never the whole line. The shortened form keeps the start and says the length.
    A value that is not text (a JSON number, list, bool where text was expected) is shown as
    its repr, shortened the same way.
    """
    if not isinstance(text, str):
        shown = repr(text)
        return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown):,} characters)"
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


class TunnelwatchError(Exception):
    """Base of every error tunnelwatch raises on purpose."""


class InputError(TunnelwatchError):
    """Input that cannot be understood; names the input, the place and what is wrong."""

    def __init__(self, source: str, message: str, *, line: int | None = None) -> None:
        if len(message) > _MESSAGE_CHARS:  # a safety net for a message quoting input whole
            message = f"{message[:_MESSAGE_CHARS]}... ({len(message):,} characters)"
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


class StorageError(TunnelwatchError):
    """Table or Queue storage failed after the retries that are safe; `operation` says what
    was being done. The message carries the service's status and code, never a key or URL."""

    def __init__(self, operation: str, message: str) -> None:
        self.operation = operation
        self.message = message
        super().__init__(f"storage: {operation}: {message}")


class ArmError(TunnelwatchError):
    """An ARM (or Azure Monitor) read failed after the clients' retries; raised by the adapters
    instead of the SDK's own errors, so jobs never see an SDK type. `operation` says what was
    read; `message` carries the HTTP status and ARM error code, or `kind` (the SDK error's
    class name, e.g. ServiceRequestError when nothing answered), never a token or header."""

    def __init__(self, operation: str, message: str, *, kind: str = "") -> None:
        self.operation = operation
        self.message = message
        self.kind = kind or "ArmError"
        super().__init__(f"{operation}: {message}")
