"""Run-command answers in the forms people paste them (issue 10, item 9): tsv rows, the error
texts of the az CLI, the Python SDK and PowerShell, nested ARM errors, az --debug logs and
blockquoted pastes; each classified (complete, cut, busy, timed out, not running, denied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.analysis.findings import Kind
from shared.analysis.paste import clean
from shared.analysis.runcommand import Outcome, Platform, findings, outcome, split_result
from shared.cli.main import main
from shared.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runcommand"
BUSY = (
    "Run command extension execution is in progress. Please wait for completion before "
    "invoking a run command."
)
STDOUT = (
    "target=10.224.0.5:10250\nConnection to 10.224.0.5 10250 port [tcp/*] succeeded!\n"
    "10.224.0.5:10250 exit=0\n"
)


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _cli(path: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["analyze", "runcommand", str(path), "--json"])
    return code, json.loads(capsys.readouterr().out)


# -- results -----------------------------------------------------------------------------------


def test_value_tsv_rows_linux_are_a_whole_result() -> None:
    """`--query value -o tsv`: code, displayStatus, level, message, time joined by tabs."""
    out = split_result(_fixture("value-tsv-linux.txt"), "r.tsv")
    assert outcome(out) is Outcome.COMPLETE  # the time column after the message ends it
    assert out.platform is Platform.LINUX and out.stdout == STDOUT and out.stderr == ""
    assert out.message == "Enable succeeded" and not out.ends_early


def test_value_tsv_rows_windows_two_statuses() -> None:
    out = split_result(_fixture("value-tsv-windows.txt"), "w.tsv")
    assert out.platform is Platform.WINDOWS and outcome(out) is Outcome.COMPLETE
    assert out.stdout.splitlines()[-1] == "TcpTestSucceeded : True"
    assert out.stderr == ""  # `None`-free empty message of the StdErr row


def test_value_tsv_cut_anywhere_is_never_complete() -> None:
    """Defect 7's rule for the tsv form: a capture cut before its time column is cut."""
    for name in ("value-tsv-linux.txt", "value-tsv-windows.txt"):
        whole = _fixture(name)
        for n in range(1, len(whole.rstrip("\n"))):
            try:
                out = split_result(whole[:n], "cut")
            except InputError:
                continue
            assert outcome(out) is not Outcome.COMPLETE, (name, n)


def test_message_alone_with_real_newlines_is_read_as_a_result() -> None:
    """`--query 'value[0].message' -o tsv`: read, streams split; its end is unproven (exit 3)."""
    out = split_result(_fixture("message-only.txt"), "m.txt")
    assert out.stdout == STDOUT and out.stderr == "\n"
    assert outcome(out) is Outcome.TRUNCATED and out.ends_early


def test_one_status_object_is_a_result() -> None:
    """`--query 'value[0]'` (-o json): one status object, not a list."""
    status = json.loads(_fixture("linux-succeeded.json"))["value"][0]
    out = split_result(json.dumps(status), "s.json")
    assert outcome(out) is Outcome.COMPLETE and out.stdout.startswith("target=")


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("az-conflict.txt", None),  # ERROR: (Conflict) ... / Code: / Message:
        ("powershell-conflict.txt", 409),  # ErrorCode: / StatusCode: 409 block
        ("powershell7-conflict.txt", 409),  # the same, word-wrapped in pwsh 7's | frame
        ("sdk-http-response-error-conflict.txt", 409),  # azure-core ResourceExistsError
        ("az-debug-conflict.txt", 409),  # az --debug: Response status + content
        ("conflict-error.json", None),  # the ARM body
    ],
)
def test_a_409_in_progress_is_busy_not_failed(
    name: str, status: int | None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = split_result(_fixture(name), name)
    assert outcome(out) is Outcome.BUSY
    assert out.error is not None and out.error.code == "Conflict"
    assert out.error.status == status and out.error.message == BUSY
    (finding,) = findings(out)
    assert finding.kind is Kind.COVERAGE and "busy" in finding.title
    assert finding.remediation is not None and "Try again later" in finding.remediation.summary
    code, doc = _cli(FIXTURES / name, capsys)
    assert (code, doc["status"]) == (3, "busy")
    assert doc["next_step"] and "Try again later" in str(doc["next_step"])


def test_sdk_cloud_error_timeout() -> None:
    out = split_result(_fixture("sdk-cloud-error-timeout.txt"), "t.txt")
    assert outcome(out) is Outcome.TIMED_OUT
    assert out.error is not None and out.error.code == "VMExtensionProvisioningTimeout"
    assert out.error.message.startswith("Provisioning of VM extension 'RunCommandLinux'")


def test_nested_arm_error_reports_the_innermost_code(capsys: pytest.CaptureFixture[str]) -> None:
    out = split_result(_fixture("arm-error-nested.json"), "n.json")
    assert out.error is not None and out.error.code == "VMExtensionProvisioningError"
    assert out.error.inner == ("VMExtensionHandlerError", "VMExtensionProvisioningTimeout")
    assert out.error.innermost == "VMExtensionProvisioningTimeout"
    assert outcome(out) is Outcome.TIMED_OUT  # decided by the inner code
    code, doc = _cli(FIXTURES / "arm-error-nested.json", capsys)
    assert code == 3 and doc["error"]["innermost_code"] == "VMExtensionProvisioningTimeout"  # type: ignore[index]
    assert main(["analyze", "runcommand", str(FIXTURES / "arm-error-nested.json")]) == 3
    assert "innermost code VMExtensionProvisioningTimeout" in capsys.readouterr().out


def test_azure_core_nested_details_text() -> None:
    """azure-core's text: each nested error one more tab in, the first glued to its label."""
    text = (
        "(VMExtensionProvisioningError) VM has reported a failure.\n"
        "Code: VMExtensionProvisioningError\nMessage: VM has reported a failure.\n"
        "Exception Details:\t(VMExtensionHandlerError) The handler reported an error.\n"
        "\tCode: VMExtensionHandlerError\n\tMessage: The handler reported an error.\n"
        "\tException Details:\t\t(VMExtensionProvisioningTimeout) It timed out.\n"
        "\t\tCode: VMExtensionProvisioningTimeout\n\t\tMessage: It timed out.\n"
    )
    out = split_result("azure.core.exceptions.HttpResponseError: " + text, "e.txt")
    assert out.error is not None and out.error.code == "VMExtensionProvisioningError"
    assert out.error.innermost == "VMExtensionProvisioningTimeout"
    assert out.error.message == "VM has reported a failure."


def _az_error(code: str, message: str) -> str:
    return f"ERROR: ({code}) {message}\nCode: {code}\nMessage: {message}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _az_error("OperationNotAllowed", "Operation 'runCommand' is not allowed on VM "
                      "'aks-nodepool1-12345678-vmss_0' since the VM is deallocated."),
            Outcome.NOT_RUNNING,
        ),
        (
            _az_error("AuthorizationFailed", "The client 'probe' does not have authorization "
                      "to perform action 'Microsoft.Compute/virtualMachineScaleSets/"
                      "virtualMachines/runCommand/action' over scope '/subscriptions/x'."),
            Outcome.DENIED,
        ),
        (
            _az_error("ScopeLocked", "The scope '/subscriptions/x/resourceGroups/MC_rg' cannot "
                      "perform write operation because the following scope(s) are locked."),
            Outcome.DENIED,  # 409, but a lock: retrying cannot help
        ),
        (
            _az_error("RequestDisallowedByPolicy", "Resource 'vmss' was disallowed by policy."),
            Outcome.DENIED,
        ),
        (
            "ErrorCode: OperationNotAllowed\nErrorMessage: The server rejected the request "
            "because too many requests have been received for this subscription.\n"
            "ErrorTarget: \nStatusCode: 429\nReasonPhrase: Too Many Requests\n",
            Outcome.THROTTLED,  # compute throttling: 429 OperationNotAllowed
        ),
        (_az_error("ResourceNotFound", "The Resource 'vmss' was not found."), Outcome.NOT_FOUND),
        (_az_error("InternalExecutionError", "An internal error occurred."), Outcome.FAILED),
    ],
)  # fmt: skip
def test_each_error_is_classified_with_a_next_step(
    text: str, expected: Outcome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = split_result(text, "e.txt")
    assert outcome(out) is expected
    (finding,) = findings(out)
    assert finding.kind is Kind.COVERAGE and finding.remediation is not None
    path = tmp_path / "e.txt"
    path.write_text(text)
    code, doc = _cli(path, capsys)
    assert doc["status"] == expected.value and doc["summary"] and doc["next_step"]
    assert code == (1 if expected is Outcome.FAILED else 3)


def test_managed_command_exit_code_decides_the_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A complete result exits with the script's own status where Azure reports one."""
    path = tmp_path / "m.json"
    view = {"executionState": "Succeeded", "exitCode": 2, "output": "x\n", "error": ""}
    path.write_text(json.dumps(view))
    code, doc = _cli(path, capsys)
    assert (code, doc["status"], doc["exit_code"]) == (1, "complete", 2)


def test_debug_log_of_a_successful_run_reads_the_last_response(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operation's final poll carries the result: read it, not the earlier polls."""
    prefix = "DEBUG: cli.azure.cli.core.sdk.policies: "
    result = json.loads(_fixture("linux-succeeded.json"))
    polls = [
        ("202", ""),
        ("200", json.dumps({"status": "InProgress", "name": "op"}, indent=2)),
        ("200", json.dumps({"status": "Succeeded", "properties": {"output": result}}, indent=2)),
    ]
    lines = []
    for status, body in polls:
        lines += [f"{prefix}Response status: {status}", f"{prefix}Response content:"]
        lines += [prefix + s for s in body.split("\n")] if body else []
    text = "\n".join(lines) + "\n"
    out = split_result(text, "d.log")
    assert outcome(out) is Outcome.COMPLETE and out.stdout == STDOUT
    path = tmp_path / "d.log"
    path.write_text(text)
    assert _cli(path, capsys)[0] == 0


@pytest.mark.parametrize(
    "name", ["az-conflict.txt", "value-tsv-linux.txt", "az-debug-conflict.txt",
             "powershell-conflict.txt", "arm-error-nested.json"],
)  # fmt: skip
def test_blockquoted_and_prompted_pastes_after_the_paste_pre_pass(name: str) -> None:
    """The shared pre-pass (shared/analysis/paste.py) removes `> ` marks and the command line;
    what it leaves is read like the plain capture."""
    plain = split_result(_fixture(name), name)
    lines = _fixture(name).rstrip("\n").split("\n")
    quoted = "\n".join(["> $ az vmss run-command invoke -g rg -n vmss --instance-id 0 "
                        "--command-id RunShellScript --scripts @probe.sh",
                        *(f"> {s}" for s in lines)]) + "\n"  # fmt: skip
    read = split_result(clean(quoted).text, name)
    assert outcome(read) is outcome(plain) and read.error == plain.error
    assert (read.stdout, read.stderr) == (plain.stdout, plain.stderr)


def test_an_error_text_without_a_code_is_still_refused() -> None:
    with pytest.raises(InputError) as err:
        split_result("ERROR: something went wrong\n", "e.txt")
    assert "not a run-command result" in err.value.message


@pytest.mark.parametrize(
    "text",
    [
        "(UNKNOWN) [10.0.0.5] 10250 (?) open\n",  # traditional netcat, not "(Code) message"
        '{"value": [{"name": {"value": "UsedSnatPorts"}, "timeseries": []}]}',  # metrics
        '{"value": [{"name": "allow-443", "properties": {"priority": 100}}]}',  # NSG rules
    ],
)
def test_other_tools_output_is_refused_not_classified(text: str) -> None:
    with pytest.raises(InputError) as err:
        split_result(text, "other.txt")
    assert "not a run-command result" in err.value.message


def test_debug_log_ending_while_the_operation_runs_is_not_final() -> None:
    prefix = "DEBUG: cli.azure.cli.core.sdk.policies: "
    body = json.dumps({"status": "InProgress", "name": "op"}, indent=2).split("\n")
    text = "\n".join([f"{prefix}Response status: 200", f"{prefix}Response content:",
                      *(prefix + s for s in body)]) + "\n"  # fmt: skip
    out = split_result(text, "d.log")
    assert outcome(out) is Outcome.RUNNING and out.ends_early
