"""The scale-set VM run command (action form) as a long-running operation with a pluggable executor.

POST .../virtualMachines/{id}/runCommand answers 202 with `Azure-AsyncOperation` and `Location`;
the status URL says InProgress until the executor has finished and the client has polled at
least `min_polls` times, then Succeeded with the output; the Location URL answers 202 until then
and 200 with the RunCommandResult after. Like the real extension: one command at a time per VM
(409 Conflict), only the last 4,096 bytes of each stream, "Enable succeeded" whatever the script
did, two StdOut/StdErr entries on Windows.

The executor is called as `executor(subscription, rg, vmss, instance_id, script_lines,
parameters)` with parameters as ((name, value), ...) in request order, and returns
(stdout, stderr). The default one returns the output configured for the instance.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.armsim.estate import Estate, InstanceState

__all__ = ["Executor", "RunCommandRecord", "RunCommands", "format_result"]

Executor = Callable[[str, str, str, str, Sequence[str], Sequence[tuple[str, str]]], tuple[str, str]]

OUTPUT_LIMIT = 4096
BUSY_MESSAGE = (
    "Run command extension execution is in progress. "
    "Please wait for completion before invoking a run command."
)


@dataclass(frozen=True, slots=True)
class RunCommandRecord:
    """One accepted run-command request, as tests inspect it."""

    subscription: str
    resource_group: str
    vmss: str
    instance_id: str
    command_id: str
    script: tuple[str, ...]
    parameters: tuple[tuple[str, str], ...]


@dataclass
class _Operation:
    id: str
    record: RunCommandRecord
    os_type: str
    done: threading.Event = field(default_factory=threading.Event)
    polls: int = 0
    stdout: str = ""
    stderr: str = ""
    error: str | None = None


def _tail(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= OUTPUT_LIMIT:
        return text
    # The extension keeps the last 4,096 bytes; a character cut in half is replaced.
    return data[-OUTPUT_LIMIT:].decode("utf-8", errors="replace")


def format_result(os_type: str, stdout: str, stderr: str) -> dict[str, Any]:
    """The RunCommandResult body (`value[]` of InstanceViewStatus)."""
    out, err = _tail(stdout), _tail(stderr)
    if os_type == "Windows":
        return {"value": [
            {"code": "ComponentStatus/StdOut/succeeded", "level": "Info",
             "displayStatus": "Provisioning succeeded", "message": out},
            {"code": "ComponentStatus/StdErr/succeeded", "level": "Info",
             "displayStatus": "Provisioning succeeded", "message": err},
        ]}  # fmt: skip
    return {"value": [{
        "code": "ProvisioningState/succeeded", "level": "Info",
        "displayStatus": "Provisioning succeeded",
        "message": f"Enable succeeded: \n[stdout]\n{out}\n[stderr]\n{err}",
    }]}  # fmt: skip


class RunCommands:
    """Accepts, runs and reports run commands; thread-safe."""

    def __init__(self, estate: Estate, executor: Executor | None, min_polls: int) -> None:
        self._estate = estate
        self._executor = executor or self._configured_output
        self._min_polls = min_polls
        self._lock = threading.Lock()
        self._busy: dict[str, str] = {}  # lower VM id -> operation id
        self._ops: dict[str, _Operation] = {}
        self.records: list[RunCommandRecord] = []

    def _configured_output(
        self, sub: str, rg: str, vmss: str, iid: str, script: Sequence[str],
        params: Sequence[tuple[str, str]],
    ) -> tuple[str, str]:  # fmt: skip
        for state in self._estate.instances.values():
            if (state.subscription.lower(), state.resource_group.lower(), state.vmss.lower(),
                    state.instance_id) == (sub.lower(), rg.lower(), vmss.lower(), iid):  # fmt: skip
                return state.stdout, state.stderr
        return "", ""

    def start(self, state: InstanceState, body: dict[str, Any]) -> str | None:
        """Start a command; the operation id, or None when one already runs on this VM."""
        params = tuple(
            (str(p.get("name", "")), str(p.get("value", "")))
            for p in body.get("parameters") or []
            if isinstance(p, dict)
        )
        record = RunCommandRecord(
            state.subscription, state.resource_group, state.vmss, state.instance_id,
            str(body.get("commandId", "")), tuple(str(s) for s in body.get("script") or []), params,
        )  # fmt: skip
        key = state.vm_id.lower()
        with self._lock:
            if key in self._busy:
                return None
            op = _Operation(str(uuid.uuid4()), record, state.os_type)
            self._busy[key] = op.id
            self._ops[op.id] = op
            self.records.append(record)
        threading.Thread(target=self._run, args=(op, key), daemon=True).start()
        return op.id

    def _run(self, op: _Operation, key: str) -> None:
        r = op.record
        try:
            op.stdout, op.stderr = self._executor(
                r.subscription, r.resource_group, r.vmss, r.instance_id, r.script, r.parameters
            )
        except Exception as e:  # the executor is test code; its failure becomes a Failed LRO
            op.error = f"{type(e).__name__}: {e}"
        finally:
            with self._lock:
                self._busy.pop(key, None)
            op.done.set()

    def poll(self, op_id: str) -> tuple[str, dict[str, Any] | None, str | None] | None:
        """(status, result body, error) of an operation after counting this poll; None if unknown."""
        op = self._ops.get(op_id)
        if op is None:
            return None
        with self._lock:
            op.polls += 1
            polls = op.polls
        if not op.done.is_set() or polls < self._min_polls:
            return "InProgress", None, None
        if op.error is not None:
            return "Failed", None, op.error
        return "Succeeded", format_result(op.os_type, op.stdout, op.stderr), None

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait for running executors (the server calls this when it stops)."""
        for op in list(self._ops.values()):
            op.done.wait(timeout)
