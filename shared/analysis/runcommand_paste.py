"""The text forms a run-command answer is pasted in, other than its JSON.

Owns reading, in one pass each and without backtracking patterns:
- `az ... run-command invoke --query value -o tsv`: one row per status, the columns of the
  status sorted by name (code, displayStatus, level, message, time; knack's TSV output) and
  joined by tabs, `None` for an empty value; the message keeps its real newlines, so a row
  spans lines and ends with the `time` column;
- error texts: the az CLI's `ERROR: (Code) Message` + `Code:` / `Message:` lines and azure-core's
  `HttpResponseError` text (the same lines; `Exception Details:` indents each nested error by
  one more tab), msrestazure's `CloudError: Azure Error: Code` + `Message:`, PowerShell's
  `ErrorCode:` / `ErrorMessage:` / `StatusCode:` block (also word-wrapped inside the `| ` frame
  of PowerShell 7's concise error view);
- `az --debug` logs: `DEBUG:` and logger-name prefixes removed, the last `Response status:` and
  the JSON after the last `Response content:`.

What the error means (busy, denied ...) is decided in shared.analysis.runcommand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ArmError",
    "DebugResponse",
    "TsvRow",
    "is_debug_log",
    "looks_like_error",
    "read_debug_log",
    "read_error",
    "read_tsv",
]


@dataclass(frozen=True, slots=True)
class ArmError:
    """An error Azure answered instead of a result: its code, message and, when the paste
    shows it, the HTTP status; `inner` holds the codes of nested `details[]`, outermost first
    (the last one is the innermost, the most specific)."""

    code: str
    message: str
    status: int | None = None
    inner: tuple[str, ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        return ((self.code,) if self.code else ()) + self.inner

    @property
    def innermost(self) -> str:
        return self.inner[-1] if self.inner else self.code


def _code_word(text: str) -> str:
    """The leading code-shaped word of `text` ("" when it does not start with one)."""
    m = _CODE.match(text)
    return m[0] if m else ""


_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,80}")
_PAREN_CODE = re.compile(r"\((?P<code>[A-Za-z][A-Za-z0-9_.]{0,80})\) ?")
_STATUS_3 = re.compile(r"\d{3}\b")
# azure-core raises these for the statuses the generated operations map (error_map).
_EXCEPTION_STATUS = {
    "ResourceExistsError": 409,
    "ResourceNotFoundError": 404,
    "ClientAuthenticationError": 401,
}
_REASON_STATUS = {
    "conflict": 409,
    "forbidden": 403,
    "notfound": 404,
    "not found": 404,
    "toomanyrequests": 429,
    "too many requests": 429,
    "unauthorized": 401,
}


def _after(line: str, label: str) -> str | None:
    """The text after `label` when the (tab-stripped) line starts with it."""
    return line[len(label) :].strip() if line.startswith(label) else None


def _unframed(text: str) -> str:
    """PowerShell 7's concise error view wraps the message inside a `| ` frame at the console
    width, so `ErrorCode:` and its value may sit on two lines: join the frame into one line."""
    lines = text.split("\n")
    framed = [s.lstrip()[1:].strip() for s in lines if s.lstrip().startswith("|")]
    if len(framed) < 2 or not any(("ErrorCode:" in s or "StatusCode:" in s) for s in framed):
        return text
    return " ".join(s for s in framed if s and not set(s) <= {"~"})


_PS_LABELS = ("ErrorCode:", "ErrorMessage:", "ErrorTarget:", "StatusCode:", "ReasonPhrase:",
              "OperationID")  # fmt: skip


def _powershell(text: str) -> ArmError | None:
    """The Microsoft.Rest/Az.Compute block: labels in a fixed order, on lines or in one line."""
    i = text.find("ErrorCode:")
    if i < 0:
        return None
    fields: dict[str, str] = {}
    positions = sorted(
        (j, label) for label in _PS_LABELS if (j := text.find(label, i)) >= 0
    )  # each label once, from ErrorCode on
    for n, (j, label) in enumerate(positions):
        end = positions[n + 1][0] if n + 1 < len(positions) else len(text)
        value = text[j + len(label) : end]
        fields[label] = value.split("\n", 1)[0] if label == "ReasonPhrase:" else value
    code = _code_word(fields.get("ErrorCode:", "").strip())
    status_text = fields.get("StatusCode:", "").strip()
    m = _STATUS_3.match(status_text)
    status = int(m[0]) if m else _REASON_STATUS.get(fields.get("ReasonPhrase:", "").strip().lower())
    message = " ".join(fields.get("ErrorMessage:", "").split())
    return ArmError(code, message, status) if code else None


def read_error(text: str) -> ArmError | None:
    """The error in an error text (see the module docstring), or None when there is none."""
    text = _unframed(text.replace("\r\n", "\n"))
    ps = _powershell(text)
    if ps is not None:
        return ps
    code = message = ""
    status: int | None = None
    inner: list[tuple[int, str]] = []  # (depth, code)
    # A bare "(Word) text" line is an error only with its "Code:" line (azure-core prints
    # both) or a label: traditional netcat prints "(UNKNOWN) [10.0.0.5] 10250 (?) open".
    sure = False
    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip("\t"))
        line = raw.strip()
        labelled = False  # an "ERROR:" or an exception name says this line is an error
        for prefix in ("ERROR:", "Error:"):
            if line.startswith(prefix):
                line, labelled = line[len(prefix) :].strip(), True
        # "azure.core.exceptions.ResourceExistsError: (Conflict) ..." / "CloudError: ..."
        head, sep, rest = line.partition(": ")
        name = head.rsplit(".", 1)[-1]
        if sep and (name.endswith("Error") or name.endswith("Exception")) and " " not in head:
            status = status or _EXCEPTION_STATUS.get(name)
            line, labelled = rest.strip(), True
        if (v := _after(line, "Azure Error:")) is not None:  # msrestazure CloudError
            line = "Code: " + v
        if (v := _after(line, "Error Code:")) is not None:  # CloudError's details
            line = "Code: " + v
        if (v := _after(line, "Response status:")) is not None or (
            v := _after(line, "Status code:")
        ) is not None:
            m = _STATUS_3.match(v)
            status = int(m[0]) if m else status
            continue
        if (v := _after(line, "Code:")) is not None:
            word = _code_word(v)
            if word and depth == 0 and (not code or not sure):
                code, sure = word, True
            elif word and depth > 0:
                inner.append((depth, word))
            continue
        if (v := _after(line, "Message:")) is not None:
            if depth == 0 and not message:
                message = v
            continue
        if (v := _after(line, "Exception Details:")) is not None:
            line = v  # the first nested error's "(Code) ..." follows on the same line
            depth += 1
        m = _PAREN_CODE.match(line)
        if m:
            if depth == 0 and not code:
                code, message = m["code"], message or line[m.end() :].strip()
                sure = labelled
            elif depth > 0:
                inner.append((depth, m["code"]))
    if not code or not sure:
        return None
    seen = dict.fromkeys(c for _, c in sorted(inner, key=lambda dc: dc[0]))  # outermost first
    seen.pop(code, None)
    return ArmError(code, message, status, tuple(seen))


def looks_like_error(text: str) -> bool:
    """Whether `text` is worth reading as an error text (cheap checks on its lines)."""
    for raw in text.split("\n", 400)[:400]:
        line = raw.strip().lstrip("|").strip()
        if line.startswith(("ERROR:", "Code:", "Azure Error:", "Exception Details:")):
            return True
        if "ErrorCode:" in line or "Error: (" in line or "CloudError: " in line:
            return True
        if _PAREN_CODE.match(line):
            return True
    return False


# -- az ... --query value -o tsv ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TsvRow:
    code: str
    display_status: str
    level: str
    message: str
    whole: bool  # the row ends with its time column: the message is whole

    def as_status(self) -> dict[str, Any]:
        return {"code": self.code, "displayStatus": self.display_status, "level": self.level,
                "message": self.message}  # fmt: skip


_TSV_HEAD = re.compile(
    r"(?P<code>(?:ProvisioningState|ComponentStatus)/[^\t\n]{0,120})\t"
    r"(?P<display>[^\t\n]{0,200})\t(?P<level>[^\t\n]{0,40})\t"
)
_TSV_TIME = re.compile(r"None|\d{4}-\d\d-\d\d[T ][0-9:.]{1,20}(?:Z|[+-]\d\d:?\d\d)?")


def _none(value: str) -> str:
    return "" if value == "None" else value


def read_tsv(text: str) -> list[TsvRow] | None:
    """The rows of `--query value -o tsv` output, or None when `text` does not start with one."""
    lines = text.replace("\r\n", "\n").split("\n")
    first = next((i for i, s in enumerate(lines) if s.strip()), None)
    if first is None or not _TSV_HEAD.match(lines[first]):
        return None
    heads = [(i, m) for i in range(first, len(lines)) if (m := _TSV_HEAD.match(lines[i]))]
    rows: list[TsvRow] = []
    for n, (start, head) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        body = "\n".join([lines[start][head.end() :], *lines[start + 1 : end]])
        body = body.rstrip("\n")  # the row's own newline, and blank lines after the last row
        tab = body.rfind("\t")
        whole = tab >= 0 and _TSV_TIME.fullmatch(body[tab + 1 :]) is not None
        message = body[:tab] if whole else body
        rows.append(
            TsvRow(head["code"], _none(head["display"]), _none(head["level"]),
                   _none(message), whole)
        )  # fmt: skip
    return rows


# -- az --debug -----------------------------------------------------------------------------------

# "DEBUG: " (older az), then the logger's dotted name ("cli.azure.cli.core.sdk.policies: ",
# "msrest.http_logger: ", "urllib3.connectionpool: ").
_LOGGER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}(?:\.[A-Za-z0-9_]{1,40}){1,12}: ?")
_DEBUG_PREFIXES = ("DEBUG: ", "INFO: ", "WARNING: ")


@dataclass(frozen=True, slots=True)
class DebugResponse:
    status: int | None  # the last "Response status:" before the content
    document: Any  # the decoded JSON after the last "Response content:", or None
    text: str  # the log with its prefixes removed (for an error text when there is no JSON)


def is_debug_log(text: str) -> bool:
    head = text[:20000]
    if head.lstrip().startswith("DEBUG:") or "\nDEBUG:" in head:
        return True
    return ("cli.azure.cli.core" in head or "msrest.http_logger" in head) and (
        "Response status:" in head or "Response content:" in head
    )


def _strip_prefixes(line: str) -> str:
    for prefix in _DEBUG_PREFIXES:
        if line.startswith(prefix):
            line = line[len(prefix) :]
            break
    m = _LOGGER.match(line)
    return line[m.end() :] if m else line


def read_debug_log(text: str) -> DebugResponse:
    """The last response of an `az --debug` log (its status and its JSON content). Only the
    last `Response content:` is decoded, once: the earlier ones are polls of the operation."""
    lines = [_strip_prefixes(s) for s in text.replace("\r\n", "\n").split("\n")]
    plain = "\n".join(lines)
    status: int | None = None
    content_at = -1  # where the last response's content starts in `plain`
    content_status: int | None = None
    offset = 0
    for line in lines:
        offset += len(line) + 1
        stripped = line.strip()
        v = _after(stripped, "Response status:")
        if v is not None:
            m = _STATUS_3.match(v)
            status = int(m[0]) if m else None
        elif stripped == "Response content:":
            content_at, content_status = offset, status
    document: Any = None
    if content_at >= 0:
        start = content_at
        while start < len(plain) and plain[start] in " \t\n":
            start += 1
        if start < len(plain) and plain[start] in "{[":
            try:
                document, _ = json.JSONDecoder().raw_decode(plain, start)
            except (json.JSONDecodeError, RecursionError):
                document = None
    return DebugResponse(content_status if document is not None else status, document, plain)
