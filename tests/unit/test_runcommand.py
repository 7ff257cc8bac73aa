"""Run-command results: every shape split into stdout/stderr, truncation, failures, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.analysis.findings import Kind
from shared.analysis.runcommand import (
    OUTPUT_LIMIT_BYTES,
    Platform,
    Provisioning,
    findings,
    possibly_truncated,
    split_result,
)
from shared.cli.main import main
from shared.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runcommand"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _linux(stdout: str, stderr: str = "", state: str = "succeeded") -> dict[str, Any]:
    verb = "Enable succeeded" if state == "succeeded" else "Enable failed"
    return {
        "value": [
            {
                "code": f"ProvisioningState/{state}",
                "level": "Info" if state == "succeeded" else "Error",
                "message": f"{verb}: \n[stdout]\n{stdout}\n[stderr]\n{stderr}",
            }
        ]
    }


def test_linux_result_splits_exactly() -> None:
    out = split_result(_fixture("linux-succeeded.json"), "r.json")
    assert out.platform is Platform.LINUX and out.provisioning is Provisioning.SUCCEEDED
    assert out.stdout.splitlines() == [
        "target=10.224.0.5:10250",
        "Connection to 10.224.0.5 10250 port [tcp/*] succeeded!",
        "10.224.0.5:10250 exit=0",
    ]
    assert out.stderr == ""
    assert not out.truncated
    assert out.message == "Enable succeeded"
    assert any("not that it exited 0" in n for n in out.notes)


def test_message_only_and_json_string_forms_match_the_full_result() -> None:
    full = split_result(_fixture("linux-succeeded.json"), "a")
    tsv = split_result(_fixture("message-only.txt"), "b")
    assert tsv.stdout == full.stdout
    message = json.loads(_fixture("linux-succeeded.json"))["value"][0]["message"]
    as_json_string = split_result(json.dumps(message), "c")
    assert (as_json_string.stdout, as_json_string.stderr) == (full.stdout, full.stderr)


def test_mapping_input_is_accepted() -> None:
    out = split_result(_linux("hello", "warn"), "sdk")
    assert (out.stdout, out.stderr) == ("hello", "warn")


def test_script_failure_is_still_enable_succeeded() -> None:
    out = split_result(_fixture("linux-script-failed.json"), "r")
    assert out.provisioning is Provisioning.SUCCEEDED
    assert "command not found" in out.stderr


def test_enable_failed_and_arm_errors_are_failures_with_their_message() -> None:
    out = split_result(_fixture("linux-enable-failed.json"), "r")
    assert out.provisioning is Provisioning.FAILED
    assert "exit status=127" in out.message
    assert "not found" in out.stderr
    conflict = split_result(_fixture("conflict-error.json"), "r")
    assert conflict.provisioning is Provisioning.FAILED
    assert conflict.message.startswith("Conflict: Run command extension execution is in progress")
    (finding,) = findings(conflict)
    assert finding.kind is Kind.COVERAGE and finding.cause is None


def test_windows_two_statuses() -> None:
    out = split_result(_fixture("windows.json"), "w")
    assert out.platform is Platform.WINDOWS
    assert out.stdout == "TcpTestSucceeded : False"
    assert out.stderr.startswith("WARNING")


def test_managed_instance_view_and_running_state() -> None:
    out = split_result(_fixture("managed-instance-view.json"), "m")
    assert out.exit_code == 0 and out.provisioning is Provisioning.SUCCEEDED
    assert "exit=124" in out.stdout
    running = split_result(_fixture("managed-running.json"), "m")
    assert running.provisioning is Provisioning.RUNNING
    assert findings(running)[0].kind is Kind.INCONCLUSIVE
    failed = split_result(
        {"executionState": "Failed", "exitCode": 3, "output": "", "error": "x"}, "m"
    )
    assert failed.provisioning is Provisioning.FAILED and failed.exit_code == 3


def test_truncation_counts_bytes_at_the_4096_limit() -> None:
    assert not possibly_truncated("a" * (OUTPUT_LIMIT_BYTES - 1))
    assert possibly_truncated("a" * OUTPUT_LIMIT_BYTES)
    assert possibly_truncated("é" * (OUTPUT_LIMIT_BYTES // 2))  # 2,048 characters, 4,096 bytes
    out = split_result(_fixture("linux-truncated.json"), "r")
    assert out.truncated_stdout and not out.truncated_stderr
    assert len(out.stdout.encode()) == OUTPUT_LIMIT_BYTES
    (finding,) = findings(out)
    assert finding.kind is Kind.INCONCLUSIVE and "truncated" in finding.title
    cut_err = split_result(_linux("ok", "e" * 5000), "r")
    assert cut_err.truncated_stderr and not cut_err.truncated_stdout


def test_a_stream_printing_the_marker_is_flagged() -> None:
    out = split_result(_linux("before\n[stderr]\nafter", "real"), "r")
    assert any("more than once" in n for n in out.notes)


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ('{"value": ]', "invalid JSON", 1),
        ('{\n"value": 3,\n}', "invalid JSON", 3),
        ("just some output\n", "not a run-command result", 1),
        ('{"value": []}', "no status entries", None),
        ('{"foo": 1}', "not a run-command result", None),
        ("42", "not a run-command result", 1),
        ("[1, 2]", "no status entries", None),
        ("[" * 5000 + "]" * 5000, "nested too deeply", None),
    ],
)
def test_bad_input(text: str, fragment: str, line: int | None) -> None:
    with pytest.raises(InputError) as err:
        split_result(text, "result.json")
    assert fragment in err.value.message
    assert err.value.line == line
    assert str(err.value).startswith("result.json")


# -- robustness ---------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["value", "code", "message", "level", "error", "output", "properties",
                         "instanceView", "executionState", "exitCode", "provisioningState", "x"]),
        children,
        max_size=5,
    ),
    max_leaves=20,
)  # fmt: skip


def _ok_or_input_error(value: str | dict[str, Any]) -> None:
    try:
        out = split_result(value, "fuzz")
    except InputError as exc:
        assert exc.source == "fuzz"
        return
    findings(out)
    assert isinstance(out.stdout, str) and isinstance(out.stderr, str)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_crashes(text: str) -> None:
    _ok_or_input_error(text)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_random_json_never_crashes(doc: Any) -> None:
    _ok_or_input_error(json.dumps(doc))
    if isinstance(doc, dict):
        _ok_or_input_error(doc)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.*") if p.suffix != ".md")),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 30), st.text(max_size=6)), max_size=4),
)
def test_mutated_results_never_crash(name: str, cuts: list[tuple[int, int, str]]) -> None:
    text = _fixture(name)
    for start, length, junk in cuts:
        i = start % (len(text) + 1)
        text = text[:i] + junk + text[i + length :]
    _ok_or_input_error(text)


# -- command line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("linux-succeeded.json", 0, "complete"),
        ("message-only.txt", 3, "truncated"),  # the message alone does not show its end
        ("windows.json", 0, "complete"),
        ("linux-enable-failed.json", 1, "failed"),
        ("conflict-error.json", 3, "busy"),  # 409 in progress: try later, not failed
        ("linux-truncated.json", 3, "truncated"),
        ("managed-running.json", 3, "running"),
    ],
)
def test_cli(name: str, code: int, status: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "runcommand", str(FIXTURES / name), "--json"]) == code
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"stdout", "stderr", "truncated", "platform", "status", "findings"}
    assert doc["status"] == status
    assert set(doc["truncated"]) == {"stdout", "stderr"}


def test_cli_text_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "runcommand", str(FIXTURES / "linux-truncated.json")]) == 3
    assert "possibly truncated at the start" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"value": [')  # a cut capture: inconclusive
    assert main(["analyze", "runcommand", str(bad)]) == 3
    assert "capture incomplete: the JSON ends before" in capsys.readouterr().out
    bad.write_text('{"value": ]')
    assert main(["analyze", "runcommand", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{bad}:1: invalid JSON" in err


def test_a_capture_cut_at_its_end_is_never_complete() -> None:
    """Issue 15, defect 7: a message or JSON cut short is inconclusive, never "complete"."""
    whole = _fixture("linux-succeeded.json")
    message = json.loads(whole)["value"][0]["message"]
    bare = message + "\n"  # what `--query value[0].message -o tsv` prints
    counts = {"complete": 0, "other": 0, "error": 0}
    for text in [whole[:n] for n in range(1, len(whole) - 1)] + [
        bare[:n] for n in range(1, len(bare) + 1)
    ]:
        try:
            out = split_result(text, "cut")
        except InputError:
            counts["error"] += 1
            continue
        assert out.truncated and out.ends_early, text
        counts["complete" if not out.truncated else "other"] += 1
    assert counts["complete"] == 0 and counts["other"] > len(whole) - 2
    assert not split_result(whole, "whole").truncated
    assert split_result(json.dumps(message), "json string").ends_early == ""
