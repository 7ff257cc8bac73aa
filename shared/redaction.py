"""Masking credentials in text: the one `redact()` every exit of the product goes through.

Exits: log records (`install_log_redaction`, once per process, in function_app.py and the
CLI's main), exceptions leaving a Functions trigger (`redacted_exceptions`: the worker sends
their text to the host, not through logging), the CLI's stderr and its output (text and
--json), Table Storage rows and queue messages. Pure: no I/O, no azure import.

Masked (the value becomes `***`, the name or host before it stays, so a reader still sees
what kind of secret was there):
- `name=value` and `name%3Dvalue` for storage and Service Bus keys, SAS signatures, passwords,
  secrets, tokens and API keys (connection strings, SAS query strings), and `?code=` / `&code=`
  (Functions keys in URLs);
- JSON or Python-repr fields whose name is a password, secret, token, key or signature
  (`"password": "..."`, `'client_secret': '...'`, `"accountKey": "..."`);
- `Bearer <token>`, `Basic <base64 of user:password>`, `SharedKey account:<signature>`;
- bare JWTs (`eyJ...` header, payload, signature);
- raw storage account keys (88 base64 characters ending `==`);
- the path and query of Teams, Workflows (Logic Apps, Power Automate) and Slack webhook URLs;
- the `user:password@` of any URL.
SAS parameters other than `sig` (sv, se, sp, sr, ...) are kept: they grant nothing alone and
say which token it was.

Every pattern runs in linear time on any input: a match can start only where its first run of
characters starts (a lookbehind or a literal anchors it), and a repeat is either bounded or ends
the pattern, so a crafted line costs a few passes, never a backtracking search. `redact` is
idempotent: redacting its output changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "MASK",
    "RedactedError",
    "install_log_redaction",
    "redact",
    "redact_json",
    "redact_record",
    "redacted_exceptions",
]

MASK = "***"

# Names whose `=` value is a credential. Lookbehind: not the tail of a longer name
# (`SharedAccessKeyName=` and `skiptoken=` are kept; they grant nothing).
_KV = re.compile(
    r"(?i)(?<![\w-])(AccountKey|SharedAccessKey|SharedAccessSignature|sig|signature|"
    r"client_?secret|secret|password|passwd|pwd|access_?token|refresh_?token|id_?token|token|"
    r"api_?key|subscription-key)(=|%3D)([\"']?)[^;&\s\"'<>]+"
)
# A Functions key in a URL; `code=` alone is too common in ordinary text (error codes).
_CODE = re.compile(r"(?i)([?&]code=)[^&\s\"'<>#]+")
# JSON and Python-repr fields: "name": "value" (either quote, escapes honoured), and JSON quoted
# inside a JSON string (ARM error messages do that). A value cut before its closing quote is
# masked to the end of its line.
_FIELD_NAME = (
    r"(?:client_?|access_?|refresh_?|id_?|account_?|api_?|primary_?|secondary_?|"
    r"shared_?access_?|master_?|sas_?)?(?:password|passwd|pwd|secret|token|key|signature|sig)"
)
_FIELD = re.compile(
    rf"(?i)((\\?[\"']){_FIELD_NAME}\2[ \t]{{0,8}}:[ \t]{{0,8}})"
    r"(?:(\\\")[^\"\\\n]*(\\\")?"  # JSON inside a JSON string: \"password\": \"...\"
    r"|(\")[^\"\\\n]*(?:\\.[^\"\\\n]*)*(\"?)"
    r"|(')[^'\\\n]*(?:\\.[^'\\\n]*)*('?))"
)
_BEARER = re.compile(r"(?i)\b(Bearer\s{1,8})[A-Za-z0-9._~+/=-]{8,}")
_BASIC = re.compile(r"(?i)\b(Basic\s{1,8})([A-Za-z0-9+/]{4,}={0,2})")
_SHARED_KEY = re.compile(r"(?i)\b(SharedKey(?:Lite)?\s{1,8}[^:\s]{1,256}:)[A-Za-z0-9+/]{8,}={0,2}")
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_.-]*")
_ACCOUNT_KEY = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,15}://)[^/\s:@]{1,256}:[^/\s@]{1,256}@")
_URL = re.compile(r"(?i)\b(https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?)(/[^\s\"'<>]*)")

# Webhook hosts: the URL itself is the credential (its path or its sig), so all of the path
# and query go. (host suffix, path prefix the host uses for webhooks)
_WEBHOOKS = (
    (".webhook.office.com", "/"),  # Teams incoming webhooks
    ("outlook.office.com", "/webhook"),  # their legacy host
    ("outlook.office365.com", "/webhook"),
    (".logic.azure.com", "/"),  # Workflows (Teams Workflows, Logic Apps triggers)
    (".environment.api.powerplatform.com", "/"),  # Power Automate workflows
    ("hooks.slack.com", "/"),
    ("discord.com", "/api/webhooks"),
)


def _webhook(match: re.Match[str]) -> str:
    base, path = match.group(1), match.group(2)
    host = base.split("://", 1)[1].split(":", 1)[0].lower()
    for suffix, prefix in _WEBHOOKS:
        if (host.endswith(suffix) or host == suffix.lstrip(".")) and path.lower().startswith(
            prefix
        ):
            return f"{base}/{MASK}"
    return match.group(0)


def _basic(match: re.Match[str]) -> str:
    # Only what decodes to user:password: "Basic networking" in a sentence stays.
    try:
        decoded = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return match.group(1) + MASK if b":" in decoded else match.group(0)


_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_URL, _webhook),
    (_USERINFO, rf"\1{MASK}@"),
    (_KV, rf"\1\2\3{MASK}"),
    (_CODE, rf"\1{MASK}"),
    (_FIELD, rf"\1\3\5\7{MASK}\4\6\8"),
    (_BEARER, rf"\1{MASK}"),
    (_BASIC, _basic),
    (_SHARED_KEY, rf"\1{MASK}"),
    (_JWT, MASK),
    (_ACCOUNT_KEY, MASK),
)


def redact(text: str) -> str:
    """`text` with every credential format listed in the module docstring masked."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_json(value: Any) -> Any:
    """A JSON-able document with every string value redacted (keys are ours and kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(item) for item in value]
    return value


_EXCEPTIONS = logging.Formatter()


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Rewrites `record` in place: its message (msg % args), exception and stack redacted.

    The exception becomes text (`exc_text`, which every Formatter prints) and `exc_info` is
    dropped, so a handler that reads the exception object itself (App Insights exporters do)
    cannot send its unredacted message.
    """
    try:
        message = record.getMessage()
    except (TypeError, ValueError, KeyError):
        # A bad format string: keep both parts rather than lose the line or raise in the caller.
        message = f"{record.msg} {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = redact(_EXCEPTIONS.formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def install_log_redaction() -> None:
    """Redact every log record of this process where it is made (idempotent).

    A record factory rather than a logging.Filter: a filter on a logger does not see its child
    loggers' records, and one on a handler misses the handlers added later (the Functions
    worker's, exporters'). The factory wraps the current one, so other factories still run.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "tunnelwatch_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(current(*args, **kwargs))

    factory.tunnelwatch_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RedactedError(Exception):
    """Raised in place of an exception whose text held a credential (the text, redacted)."""


@contextmanager
def redacted_exceptions() -> Iterator[None]:
    """An exception leaving this block keeps its text only if redaction leaves it unchanged;
    otherwise a RedactedError with the redacted text takes its place, not chained to the
    original (a printed traceback would show the original's text). The host still sees a
    failure, so its retries and poison queue work as before."""
    try:
        yield
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        masked = redact(text)
        if masked == text:
            raise
        raise RedactedError(masked) from None
