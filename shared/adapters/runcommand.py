"""Run command on one scale-set VM, through azure-mgmt-compute, as a value the worker can act on.

`RunCommandRunner.run` starts `RunShellScript` with the probe script and its validated
parameters, waits for the long-running operation, and returns a `RunOutcome`: the output split
into stdout/stderr (shared.analysis.runcommand), or what went wrong, classified by what the
worker must do about it. No exception of the SDK crosses this boundary:

    BUSY         409 Conflict: another run command runs on this VM (ours or the owners'); the
                 extension runs one at a time. Try later, never at once.
    NOT_RUNNING  409 OperationNotAllowed: the VM is stopped or deallocated. Skip it.
    DENIED       403 (AuthorizationFailed, a deny assignment of node resource group lockdown,
                 RequestDisallowedByPolicy, LinkedAuthorizationFailed): a coverage gap that
                 retrying cannot close.
    THROTTLED    429: the subscription's compute bucket is empty; `retry_after` says for how long.
    NOT_FOUND    404: the VM or scale set is gone (scaled in since the inventory was read).
    FAILED       anything else (5xx, a failed or timed-out operation, a connection error):
                 worth another attempt later.

The script travels as one element of `script` (the extension joins the lines anyway) and the
parameters as run-command parameters, which the extension prepends as `export NAME=value`;
they are rendered here once more through `rendered_preamble`, which refuses any value with a
character the shell would interpret, so nothing unchecked can reach a node through this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from azure.core.exceptions import AzureError, HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import RunCommandInput, RunCommandInputParameter

from shared.analysis.runcommand import split_result
from shared.core.runcommand import Failure, RunOutcome
from shared.errors import InputError
from shared.probe.params import rendered_preamble

__all__ = ["Failure", "RunCommandRunner", "RunOutcome"]

log = logging.getLogger(__name__)

COMMAND_ID = "RunShellScript"
_DENIED_CODES = frozenset(
    {
        "AuthorizationFailed",
        "LinkedAuthorizationFailed",
        "RequestDisallowedByPolicy",
        "DenyAssignmentAuthorizationFailed",
        "ScopeLocked",
    }
)


def _retry_after(error: HttpResponseError) -> float | None:
    response = error.response
    if response is None:
        return None
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the worker's own backoff applies


def _classify(error: HttpResponseError) -> Failure:
    code = (error.error.code if error.error is not None else "") or ""
    status = error.status_code
    # The code first: a ReadOnly management lock answers a POST action with 409 ScopeLocked,
    # which is a denial to report, not a busy VM to wait for.
    if status == 403 or code in _DENIED_CODES:
        return Failure.DENIED
    if status == 409:
        return Failure.NOT_RUNNING if code == "OperationNotAllowed" else Failure.BUSY
    if status == 429:
        return Failure.THROTTLED
    if status == 404:
        return Failure.NOT_FOUND
    return Failure.FAILED


class RunCommandRunner:
    """Runs the probe on scale-set VMs of one subscription (the client is passed in)."""

    def __init__(self, compute: ComputeManagementClient, *, timeout_seconds: float = 300) -> None:
        self._compute = compute
        self._timeout = timeout_seconds

    def run(
        self,
        node_resource_group: str,
        vmss: str,
        instance_id: str,
        script: str,
        parameters: Sequence[tuple[str, str]],
    ) -> RunOutcome:
        # Raises InputError for a value that could be shell code: a bug of the caller, who
        # must have validated first; nothing is sent.
        rendered_preamble(parameters)
        body = RunCommandInput(
            command_id=COMMAND_ID,
            script=[script],
            parameters=[RunCommandInputParameter(name=n, value=v) for n, v in parameters],
        )
        started = time.monotonic()
        where = f"{node_resource_group}/{vmss}/{instance_id}"
        try:
            poller = self._compute.virtual_machine_scale_set_vms.begin_run_command(
                node_resource_group, vmss, instance_id, body
            )
            # wait, then look: result(timeout) returns whatever the poller holds, and the
            # operation may end between that and a later done().
            poller.wait(timeout=self._timeout)
            result = poller.result() if poller.done() else None
        except HttpResponseError as exc:
            failure = _classify(exc)
            code = (exc.error.code if exc.error is not None else "") or ""
            message = (exc.error.message if exc.error is not None else "") or str(exc.message)
            log.warning(
                "run command on %s: %s (%s %s)", where, failure.value, exc.status_code, code
            )
            return RunOutcome(
                failure=failure,
                status=exc.status_code,
                code=code,
                message=message[:500],
                retry_after=_retry_after(exc),
                seconds=time.monotonic() - started,
            )
        except AzureError as exc:
            log.warning("run command on %s failed: %s", where, type(exc).__name__)
            return RunOutcome(
                failure=Failure.FAILED,
                code=type(exc).__name__,
                message=str(exc)[:500],
                seconds=time.monotonic() - started,
            )
        seconds = time.monotonic() - started
        if result is None:
            return RunOutcome(
                failure=Failure.FAILED,
                code="Timeout",
                message=f"no result within {self._timeout:.0f} s (the command may still run)",
                seconds=seconds,
            )
        doc = {"value": [{"code": v.code, "message": v.message} for v in result.value or []]}
        try:
            output = split_result(doc, f"run command on {where}")
        except InputError as exc:
            return RunOutcome(
                failure=Failure.FAILED, code="UnreadableResult", message=str(exc), seconds=seconds
            )
        return RunOutcome(output=output, seconds=seconds)
