"""A run-command result split into stdout and stderr, with what the service cut or hid.

Owns every shape a run command answers in:
- the action form's `RunCommandResult` (`{"value": [InstanceViewStatus, ...]}`, also what
  `az vm|vmss run-command invoke` prints): Linux puts both streams in one status whose message
  is "Enable succeeded: \\n[stdout]\\n<out>\\n[stderr]\\n<err>"; Windows returns two statuses,
  `ComponentStatus/StdOut/succeeded` and `ComponentStatus/StdErr/succeeded`;
- that message alone (`--query 'value[0].message' -o tsv`, or as a JSON string);
- an ARM error body (`{"error": {"code": "Conflict", ...}}`, a run command already running),
  nested `details[]` read down to the innermost code;
- a managed run command, or its `instanceView` (`executionState`, `exitCode`, `output`, `error`);
- the text forms of shared.analysis.runcommand_paste: `--query value -o tsv` rows, error texts of
  the az CLI, azure-core, msrestazure and PowerShell, and `az --debug` logs.

`outcome()` classifies a result: complete, truncated (cut), not final, busy (409 Conflict: try
later, not a failure), timed out, not running, denied, throttled, not found, failed.

Truncation: the Linux extension (Azure/run-command-extension-linux, main/cmds.go `maxTailLen`
and `tailFile` in logtail.go) seeks to the last 4,096 BYTES of each stream file and reads them:
no marker is added, and a cut may split a UTF-8 character (JSON encoding then shows U+FFFD). So
a stream of 4,096 bytes or more is "possibly truncated at the start"; exactly 4,096 bytes may
also be complete, which nothing can tell apart. "Enable succeeded" only says the extension ran:
the extension reports success whatever the script's exit status (cmds.go: "extension should not
fail if script throws error"), so the script must print its own status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from shared.analysis.findings import Finding, Kind, Origin, Remediation, Severity, Subject
from shared.analysis.jsoncut import json_cut
from shared.analysis.runcommand_paste import (
    ArmError,
    is_debug_log,
    looks_like_error,
    read_debug_log,
    read_error,
    read_tsv,
)
from shared.analysis.shell import Command, command, placeholder
from shared.errors import InputError

__all__ = [
    "OUTPUT_LIMIT_BYTES",
    "ArmError",
    "Outcome",
    "Platform",
    "Provisioning",
    "RunCommandOutput",
    "classify_error",
    "findings",
    "next_step",
    "outcome",
    "possibly_truncated",
    "split_result",
]

OUTPUT_LIMIT_BYTES = 4096


class Platform(StrEnum):
    LINUX = "linux"
    WINDOWS = "windows"
    UNKNOWN = "unknown"  # a managed run command's instance view does not say


class Provisioning(StrEnum):
    SUCCEEDED = "succeeded"  # the extension ran the script (not: the script succeeded)
    FAILED = "failed"  # the extension, the service or ARM failed; or a managed command failed
    RUNNING = "running"  # a managed run command not finished yet: output is not final
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RunCommandOutput:
    stdout: str
    stderr: str
    truncated_stdout: bool
    truncated_stderr: bool
    platform: Platform
    provisioning: Provisioning
    message: str  # the status text ("Enable succeeded", the error message ...)
    exit_code: int | None = None  # only managed run commands report one
    notes: tuple[str, ...] = ()
    # Why the capture may end before the result does (a paste or file cut at its END, unlike
    # the service's cut at a stream's start): a message without its [stderr] section, a bare
    # message (nothing marks where its stderr ends), a JSON document without its end. "" when
    # the capture proves its end (a JSON document read whole).
    ends_early: str = ""
    error: ArmError | None = None  # what Azure answered instead of a result

    @property
    def truncated(self) -> bool:
        return self.truncated_stdout or self.truncated_stderr or bool(self.ends_early)


def possibly_truncated(stream: str) -> bool:
    """Whether the service may have cut this stream: it keeps at most the last 4,096 bytes."""
    return len(stream.encode("utf-8", errors="surrogatepass")) >= OUTPUT_LIMIT_BYTES


_STDOUT = "[stdout]\n"
_STDERR = "\n[stderr]\n"
# The extension's handler commands report "<Command> succeeded|failed: ..." (cmds.go names them).
_STATUS_LINE = re.compile(
    r"^\s*(?P<verb>Enable|Install|Uninstall|Update|Disable) (?P<state>succeeded|failed)\b:? ?",
    re.IGNORECASE,
)


def _state(word: str) -> Provisioning:
    w = word.lower()
    if w in ("succeeded", "success"):
        return Provisioning.SUCCEEDED
    if w in ("failed", "error", "timedout", "canceled", "cancelled"):
        return Provisioning.FAILED
    if w in ("running", "pending", "transitioning", "creating", "updating"):
        return Provisioning.RUNNING
    return Provisioning.UNKNOWN


def _split_message(
    message: str, provisioning: Provisioning, platform: Platform, *, bare: bool = False
) -> RunCommandOutput:
    """The Linux message: "<Verb> <state>: \\n[stdout]\\n<out>\\n[stderr]\\n<err>".

    `bare`: the message as text, not inside the JSON that ends it: nothing shows where its
    stderr (printed last) ends, so a cut capture cannot be told from a whole one."""
    notes: list[str] = []
    if "[stdout]\r\n" in message:
        message = message.replace("\r\n", "\n")  # saved through a Windows editor or tool
        notes.append("CRLF line endings converted to LF")
    status_text = message
    m = _STATUS_LINE.match(message)
    if m and provisioning is Provisioning.UNKNOWN:
        provisioning = _state(m["state"])
    start = message.find(_STDOUT)
    if start < 0:
        cut = "the message ends before its [stdout] section (cut?)" if bare else ""
        return RunCommandOutput(
            "", "", False, False, platform, provisioning, message.strip(), notes=tuple(notes),
            ends_early=cut,
        )  # fmt: skip
    status_text = message[:start].strip().rstrip(":").strip()
    body = message[start + len(_STDOUT) :]
    sep = body.find(_STDERR)
    ends_early = ""
    if sep < 0:
        stdout, stderr = body, ""
        notes.append("no [stderr] section: the message may be incomplete")
        ends_early = "the message ends before its [stderr] section (cut?): stdout may go on"
    else:
        if bare:
            ends_early = (
                "the message alone does not show where it ends (its stderr is printed last, "
                "with no end marker); the JSON of the result (-o json) does"
            )
        stdout, stderr = body[:sep], body[sep + len(_STDERR) :]
        if body.count(_STDERR) > 1:
            # The marker cannot be escaped: a stream that prints it makes the split ambiguous.
            notes.append("'[stderr]' appears more than once; split at the first")
    out = _output(stdout, stderr, platform, provisioning, status_text, None, notes)
    return replace(out, ends_early=ends_early) if ends_early else out


def _output(
    stdout: str,
    stderr: str,
    platform: Platform,
    provisioning: Provisioning,
    message: str,
    exit_code: int | None,
    notes: list[str],
) -> RunCommandOutput:
    cut_out, cut_err = possibly_truncated(stdout), possibly_truncated(stderr)
    for name, cut in (("stdout", cut_out), ("stderr", cut_err)):
        if cut:
            notes.append(
                f"{name} is at the {OUTPUT_LIMIT_BYTES}-byte limit: possibly truncated at the start"
            )
    if provisioning is Provisioning.SUCCEEDED and exit_code is None:
        notes.append("'succeeded' means the script ran, not that it exited 0")
    return RunCommandOutput(
        stdout, stderr, cut_out, cut_err, platform, provisioning, message, exit_code, tuple(notes)
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _statuses(doc: Mapping[str, Any], source: str) -> RunCommandOutput:
    entries = [e for e in doc["value"] if isinstance(e, Mapping)]
    if not entries:
        raise InputError(source, "'value' holds no status entries")
    if not any(isinstance(e.get(k), str) for e in entries for k in ("code", "message")):
        # A metrics or NSG rule list has a 'value' list too: it is not a run-command result.
        raise InputError(
            source, "not a run-command result: no entry of 'value' has a 'code' or 'message'"
        )
    by_code = {_text(e.get("code")).lower(): e for e in entries}
    out = next((e for c, e in by_code.items() if c.startswith("componentstatus/stdout/")), None)
    err = next((e for c, e in by_code.items() if c.startswith("componentstatus/stderr/")), None)
    if out is not None or err is not None:
        code = _text((out or err or {}).get("code"))
        provisioning = _state(code.rsplit("/", 1)[-1])
        notes: list[str] = []
        if out is None or err is None:
            notes.append("only one of the StdOut/StdErr statuses is present")
        return _output(
            _text((out or {}).get("message")),
            _text((err or {}).get("message")),
            Platform.WINDOWS,
            provisioning,
            _text((out or err or {}).get("displayStatus")),
            None,
            notes,
        )
    entry = next((e for c, e in by_code.items() if c.startswith("provisioningstate/")), entries[0])
    code = _text(entry.get("code"))
    provisioning = _state(code.rsplit("/", 1)[-1]) if "/" in code else Provisioning.UNKNOWN
    if _text(entry.get("level")).lower() == "error":
        provisioning = Provisioning.FAILED
    return _split_message(_text(entry.get("message")), provisioning, Platform.LINUX)


def _instance_view(view: Mapping[str, Any], provisioning_state: str) -> RunCommandOutput:
    state = _text(view.get("executionState"))
    provisioning = _state(state) if state else _state(provisioning_state)
    if _state(provisioning_state) is Provisioning.FAILED:
        provisioning = Provisioning.FAILED
    exit_code = view.get("exitCode")
    code = exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None
    message = _text(view.get("executionMessage")) or state or provisioning_state
    notes = [] if code is None else [f"exit code {code}"]
    return _output(
        _text(view.get("output")),
        _text(view.get("error")),
        Platform.UNKNOWN,
        provisioning,
        message,
        code,
        notes,
    )


def _details(error: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _arm_error(error: Mapping[str, Any], status: int | None) -> ArmError:
    """An ARM error object; its `details[]` read breadth-first, so `inner` ends with the code
    of the deepest nested error (the innermost, most specific one)."""
    inner: dict[str, None] = {}  # ordered, each code once
    level = _details(error)
    while level:
        inner.update((c, None) for d in level if (c := _text(d.get("code"))))
        level = [d for parent in level for d in _details(parent)]
    code = _text(error.get("code"))
    inner.pop(code, None)
    return ArmError(code, _text(error.get("message")), status, tuple(inner))


def _failed(error: ArmError) -> RunCommandOutput:
    message = f"{error.code or 'error'}: {error.message}".strip()
    if error.inner:
        message += f" (innermost: {error.innermost})"
    return RunCommandOutput(
        "", "", False, False, Platform.UNKNOWN, Provisioning.FAILED, message, error=error
    )


def _from_doc(doc: Any, source: str, status: int | None = None) -> RunCommandOutput:
    if isinstance(doc, str):
        return _split_message(doc, Provisioning.UNKNOWN, Platform.LINUX)
    if isinstance(doc, list):
        return _from_doc({"value": doc}, source)
    if not isinstance(doc, Mapping):
        raise InputError(source, f"expected a JSON object, got {type(doc).__name__}")
    if isinstance(doc.get("value"), list):
        return _statuses(doc, source)
    if isinstance(doc.get("error"), Mapping):
        return _failed(_arm_error(doc["error"], status))
    code = doc.get("code")
    if isinstance(code, str) and isinstance(doc.get("message"), str):
        if code.lower().startswith(("provisioningstate/", "componentstatus/")):
            return _statuses({"value": [doc]}, source)  # one status (`--query value[0]`)
        return _failed(_arm_error(doc, status))  # an error object without its wrapper
    if isinstance(doc.get("output"), (Mapping, list)):
        return _from_doc(doc["output"], source)  # a long-running operation's status body
    props = doc.get("properties")
    if isinstance(props, Mapping):
        if isinstance(props.get("output"), (Mapping, list)):
            return _from_doc(props["output"], source)
        if isinstance(props.get("instanceView"), Mapping):
            return _instance_view(props["instanceView"], _text(props.get("provisioningState")))
    if isinstance(doc.get("instanceView"), Mapping):
        return _instance_view(doc["instanceView"], _text(doc.get("provisioningState")))
    if "executionState" in doc or "exitCode" in doc:
        return _instance_view(doc, "")
    raise InputError(
        source,
        "not a run-command result: expected 'value' (RunCommandResult), 'instanceView', "
        "'executionState' or an ARM 'error'",
    )


def _checked(doc: Any, source: str) -> RunCommandOutput:
    try:
        return _from_doc(doc, source)
    except RecursionError:
        raise InputError(source, "JSON nested too deeply") from None


def split_result(text_or_doc: str | Mapping[str, Any], source: str) -> RunCommandOutput:
    """Stdout and stderr of any run-command answer (see the module docstring for the shapes).

    A string is read as JSON when it looks like JSON, else as the message text itself. A
    mapping is taken as the already-decoded JSON (what the SDK's `as_dict()` gives). Raises
    InputError for anything that is not a run-command result.
    """
    if isinstance(text_or_doc, Mapping):
        return _checked(text_or_doc, source)
    text = text_or_doc.lstrip("\ufeff")
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"'):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            lacking = json_cut(text)
            if lacking is not None:  # a cut capture: inconclusive, not unreadable
                why = f"capture incomplete: {lacking}"
                return RunCommandOutput(
                    "", "", False, False, Platform.UNKNOWN, Provisioning.UNKNOWN, why,
                    notes=(why,), ends_early=why,
                )  # fmt: skip
            raise InputError(source, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
        except RecursionError:
            raise InputError(source, "JSON nested too deeply") from None
        return _checked(doc, source)
    return _from_text(text, source)


def _from_tsv(text: str, source: str) -> RunCommandOutput | None:
    rows = read_tsv(text)
    if rows is None:
        return None
    out = _statuses({"value": [r.as_status() for r in rows]}, source)
    windows = any(r.code.lower().startswith("componentstatus/") for r in rows)
    why = ""
    if not rows[-1].whole:
        why = "the last row ends before its time column (cut?): its message may go on"
    elif windows and len(rows) < 2:
        why = "one ComponentStatus row where Windows prints two (StdOut, StdErr): cut?"
    notes = (*out.notes, "read from --query value -o tsv rows")
    return replace(out, notes=notes, ends_early=why or out.ends_early)


def _from_debug_log(text: str, source: str) -> RunCommandOutput:
    response = read_debug_log(text)
    if response.document is not None:
        if isinstance(response.document, Mapping) and isinstance(
            response.document.get("error"), Mapping
        ):
            return _failed(_arm_error(response.document["error"], response.status))
        doc = response.document
        state = doc.get("status") if isinstance(doc, Mapping) else None
        if isinstance(state, str) and state.lower() in ("inprogress", "running", "accepted"):
            why = f"the log ends while the operation is still {state}: its result is not in it"
            return RunCommandOutput(
                "", "", False, False, Platform.UNKNOWN, Provisioning.RUNNING, why,
                notes=(why,), ends_early=why,
            )  # fmt: skip
        try:
            return _checked(response.document, source)
        except InputError:
            pass  # the last response is not a result: look for an error text
    error = read_error(response.text)
    if error is not None:
        return _failed(replace(error, status=error.status or response.status))
    raise InputError(
        source,
        "an az --debug log without a run-command result or error: its last 'Response "
        "content:' is not one",
    )


def _from_text(text: str, source: str) -> RunCommandOutput:
    if is_debug_log(text):
        return _from_debug_log(text, source)
    tsv = _from_tsv(text, source)
    if tsv is not None:
        return tsv
    if _STDOUT.strip() in text or _STATUS_LINE.match(text):
        return _split_message(text, Provisioning.UNKNOWN, Platform.LINUX, bare=True)
    error = read_error(text) if looks_like_error(text) else None
    if error is not None:
        return _failed(error)
    raise InputError(
        source,
        "not a run-command result: no '[stdout]' section, no 'Enable succeeded/failed' line, "
        "no '--query value -o tsv' row and no Azure error ('ERROR: (Code) ...', 'Code: ...', "
        "'ErrorCode: ...')",
        line=1,
    )


class Outcome(StrEnum):
    """What a pasted run-command answer amounts to (the CLI prints `.value` as its status)."""

    COMPLETE = "complete"  # the whole output, as far as the capture can show
    TRUNCATED = "truncated"  # cut: by the service's 4,096-byte limit, or the capture ends early
    RUNNING = "running"  # a managed run command not finished: output not final
    UNKNOWN = "unknown"  # no state in the capture
    BUSY = "busy"  # 409 Conflict: another run command is in progress on the VM; try later
    TIMED_OUT = "timed-out"  # the extension or the script did not finish in time
    NOT_RUNNING = "not-running"  # the VM is stopped or deallocated, or its agent is not up
    DENIED = "denied"  # 403, a lock or a policy: retrying cannot help
    THROTTLED = "throttled"  # 429: the compute request bucket is empty
    NOT_FOUND = "not-found"  # the VM or scale set is gone
    FAILED = "failed"  # the extension or Azure failed otherwise


_DENIED_CODES = frozenset(
    {
        "AuthorizationFailed",
        "LinkedAuthorizationFailed",
        "DenyAssignmentAuthorizationFailed",
        "RequestDisallowedByPolicy",
        "ScopeLocked",
        "Forbidden",
    }
)
_THROTTLED_CODES = frozenset({"TooManyRequests", "SubscriptionRequestsThrottled"})
_NOT_RUNNING_CODES = frozenset({"OperationNotAllowed", "VMAgentStatusCommunicationError"})
_TIMEOUT_CODES = frozenset(
    {"VMExtensionProvisioningTimeout", "OperationTimedOut", "TimedOut", "RequestTimeout"}
)
_NOT_FOUND_CODES = frozenset({"NotFound", "ResourceNotFound", "ParentResourceNotFound"})


def classify_error(error: ArmError) -> Outcome:
    """Busy, timed out, not running, denied, throttled, not found or failed: by the HTTP status
    when known and every code, the nested ones included (a ReadOnly lock answers 409
    ScopeLocked: a denial, not a busy VM; compute throttling answers 429 OperationNotAllowed)."""
    codes = set(error.codes)
    status = error.status
    if status in (401, 403) or codes & _DENIED_CODES:
        return Outcome.DENIED
    if status == 429 or codes & _THROTTLED_CODES or "too many requests" in error.message.lower():
        return Outcome.THROTTLED
    if codes & _NOT_RUNNING_CODES:
        return Outcome.NOT_RUNNING
    if status in (408, 504) or codes & _TIMEOUT_CODES:
        return Outcome.TIMED_OUT
    if status == 409 or "Conflict" in codes:
        return Outcome.BUSY
    if status == 404 or codes & _NOT_FOUND_CODES:
        return Outcome.NOT_FOUND
    return Outcome.FAILED


def outcome(output: RunCommandOutput) -> Outcome:
    if output.error is not None:
        return classify_error(output.error)
    if output.provisioning is Provisioning.FAILED:
        said = output.message.lower().replace(" ", "")
        return Outcome.TIMED_OUT if "timedout" in said or "timeout" in said else Outcome.FAILED
    if output.provisioning is Provisioning.RUNNING:
        return Outcome.RUNNING
    if output.provisioning is Provisioning.UNKNOWN:
        return Outcome.UNKNOWN
    return Outcome.TRUNCATED if output.truncated else Outcome.COMPLETE


# What each outcome that gave no output means, and what to do next.
_NEXT_STEP: dict[Outcome, tuple[str, str]] = {
    Outcome.BUSY: (
        "run command busy: another run command is in progress on this VM (not a failure)",
        "Try again later: a VM runs one run command at a time, for up to 90 minutes, and it "
        "cannot be cancelled. Nothing was learnt about the node yet.",
    ),
    Outcome.TIMED_OUT: (
        "run command timed out: the extension or the script did not finish in time",
        "Check the instance's VM agent is Ready (its instance view) and that the node "
        "reaches Azure on 443 (AzureCloud), then retry.",
    ),
    Outcome.NOT_RUNNING: (
        "run command not possible: the VM is not running (stopped, deallocated, or its agent "
        "does not report)",
        "Check the instance's power state and VM agent; start it or check a running instance.",
    ),
    Outcome.DENIED: (
        "run command denied: a role, lock or policy forbids it here",
        "Retrying cannot help: grant runCommand/action on the scale set (Virtual Machine "
        "Contributor), or lift the lock or policy named in the error (AKS node resource group "
        "lockdown denies it by design). Until then this node is not covered.",
    ),
    Outcome.THROTTLED: (
        "run command throttled: the subscription's compute request bucket is empty",
        "Wait for the Retry-After time (the scale-set VM update bucket refills about 4 calls "
        "a minute per VM), then retry.",
    ),
    Outcome.NOT_FOUND: (
        "run command target not found: the VM or scale set is gone",
        "List the scale set's instances again (scaled in?) and pick one that exists.",
    ),
    Outcome.FAILED: (
        "run command failed: the node could not be checked",
        "Retry once no other run command is running on the node; check the VM agent is Ready "
        "and the node reaches Azure on 443.",
    ),
}


# The instance view shows the power state, the VM agent and the run-command extension's status.
_INSTANCE_VIEW = command(
    "az", "vmss", "get-instance-view", "-g", placeholder("node-resource-group"),
    "-n", placeholder("scale-set"), "--instance-id", placeholder("instance-id"),
)  # fmt: skip
_COMMANDS: dict[Outcome, tuple[Command, ...]] = {
    o: (_INSTANCE_VIEW,) for o in (Outcome.BUSY, Outcome.TIMED_OUT, Outcome.NOT_RUNNING)
}


def next_step(result: Outcome) -> tuple[str, str] | None:
    """(summary, what to do) for an outcome without usable output; None otherwise."""
    return _NEXT_STEP.get(result)


def findings(output: RunCommandOutput, subject: Subject | None = None) -> tuple[Finding, ...]:
    """COVERAGE when the command gave no output (we could not look), with what to do next;
    INCONCLUSIVE when the output is cut or not final."""
    subject = subject or Subject()
    out: list[Finding] = []
    result = outcome(output)
    step = next_step(result)
    if step is not None:
        evidence = [output.message] if output.message else []
        if output.error is not None and output.error.status is not None:
            evidence.append(f"HTTP status {output.error.status}")
        out.append(
            Finding(
                check="runcommand.result",
                cause=None,
                kind=Kind.COVERAGE,
                severity=Severity.WARNING,
                subject=subject,
                title=step[0],
                evidence=tuple(evidence),
                remediation=Remediation(summary=step[1], commands=_COMMANDS.get(result, ())),
                key="failed" if result is Outcome.FAILED else result.value,
                origin=Origin.TUNNELWATCH,
            )
        )
    elif output.provisioning in (Provisioning.RUNNING, Provisioning.UNKNOWN):
        out.append(
            Finding(
                check="runcommand.result",
                cause=None,
                kind=Kind.INCONCLUSIVE,
                severity=Severity.WARNING,
                subject=subject,
                title=f"run command state {output.provisioning.value}: output not final",
                evidence=(output.message,) if output.message else (),
                key="state",
                origin=Origin.TUNNELWATCH,
            )
        )
    cut = [
        n
        for n, c in (("stdout", output.truncated_stdout), ("stderr", output.truncated_stderr))
        if c
    ] + (["the end of the capture"] if output.ends_early else [])
    if cut:
        out.append(
            Finding(
                check="runcommand.result",
                cause=None,
                kind=Kind.INCONCLUSIVE,
                severity=Severity.WARNING,
                subject=subject,
                title=f"run command output possibly truncated ({', '.join(cut)})",
                evidence=tuple(n for n in output.notes if "limit" in n)
                + ((output.ends_early,) if output.ends_early else ()),
                remediation=Remediation(
                    summary="The service keeps only the last 4,096 bytes of each stream: print "
                    "less, or send the full output to a blob (managed run command outputBlobUri).",
                ),
                key="truncated",
                origin=Origin.TUNNELWATCH,
            )
        )
    return tuple(out)
