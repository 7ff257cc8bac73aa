"""shared.redaction: every secret format masked, ordinary text untouched, idempotent, and log
records redacted where they are made (message, arguments, exception, stack)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest
from hypothesis import given
from hypothesis import strategies as st

from functions import probe_timer, scan_timer
from shared.redaction import (
    MASK,
    RedactedError,
    install_log_redaction,
    redact,
    redact_json,
    redacted_exceptions,
)
from tests.redaction_samples import ORDINARY, SECRETS, Sample, secrets_in

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sample", SECRETS, ids=repr)
def test_every_format_is_masked(sample: Sample) -> None:
    out = redact(sample.text)
    assert sample.secret not in out
    assert MASK in out
    assert redact(out) == out


@pytest.mark.parametrize("sample", SECRETS, ids=repr)
def test_formats_are_masked_inside_longer_text(sample: Sample) -> None:
    # As an ARM error quotes them: in a sentence, in JSON, after a newline.
    for text in (
        f"(InvalidRequest) call failed: {sample.text}. Retry later.",
        f'{{"error": {{"message": "{sample.text.replace(chr(34), chr(92) + chr(34))}"}}}}',
        f"line one\n{sample.text}\nline three",
    ):
        assert sample.secret not in redact(text), text


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_not_changed(text: str) -> None:
    assert redact(text) == text


def test_basic_needs_a_real_credential() -> None:
    # "Basic" + a word is prose; only base64 of user:password is a credential.
    assert redact("Basic networking (kubenet)") == "Basic networking (kubenet)"
    assert redact("Basic dXNlcjpwdw==") == f"Basic {MASK}"


def test_unterminated_json_value_is_masked_to_the_end_of_its_line() -> None:
    assert redact('{"password": "cut here\nnext') == f'{{"password": "{MASK}\nnext'


def test_names_that_only_end_like_a_secret_are_kept() -> None:
    text = "SharedAccessKeyName=RootManageSharedAccessKey&$skiptoken=abc&xsig=1"
    assert redact(text) == text


def test_redact_json_masks_values_and_keeps_our_keys() -> None:
    sample = SECRETS[0]
    doc = {"key": "rule-1", "run": {"errors": [sample.text], "count": 3, "ok": None}}
    out = redact_json(doc)
    assert out["key"] == "rule-1"  # our own field named key: a value, not a secret
    assert out["run"]["count"] == 3 and out["run"]["ok"] is None
    assert sample.secret not in out["run"]["errors"][0]


_FRAGMENTS = st.sampled_from([s.text for s in SECRETS] + list(ORDINARY))
_TEXT = st.lists(
    st.one_of(_FRAGMENTS, st.text(alphabet="ab=:;&\"'/@.-_ \n\\eyJ*%3D", max_size=40)),
    max_size=8,
).map("".join)


@given(_TEXT)
def test_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@given(
    st.lists(st.sampled_from(SECRETS), min_size=1, max_size=4),
    st.sampled_from([" ", "\n", "; ", ", "]),
)
def test_no_secret_survives_in_a_mix(samples: list[Sample], sep: str) -> None:
    assert secrets_in(redact(sep.join(s.text for s in samples))) == []


@pytest.mark.parametrize(
    "text",
    [
        "a" * 300_000,
        "eyJ-" * 75_000,
        "eyJa.eyJb." * 30_000,
        '"password": "' * 25_000,
        "'key':'" * 40_000,
        "\\" * 300_000,
        ("A" * 86 + "= ") * 3_000,
        "SharedKey " + "a" * 300_000,
        "http://" + "a" * 300_000,
        "a://b:c" * 40_000,
        "Bearer " * 40_000,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_pathological_lines_finish_and_never_grow_much(text: str) -> None:
    # No clock here: the fuzz suite times the parsers. Completing at all shows no blowup.
    out = redact(text)
    assert len(out) <= len(text) + len(text) // 4
    assert redact(out) == out


@pytest.fixture
def log_redaction() -> Iterator[None]:
    before = logging.getLogRecordFactory()
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    yield
    logging.setLogRecordFactory(before)


def test_log_records_are_redacted(log_redaction: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log = logging.getLogger("shared.jobs.scan")
    sdk = logging.getLogger("azure.core.pipeline")
    try:
        raise RuntimeError(f"ARM said: {SECRETS[0].text}")
    except RuntimeError:
        log.exception("cluster %s: scan failed: %s", "aks-1", SECRETS[6].text)
    sdk.warning("retrying %s", SECRETS[15].text, stack_info=True)
    log.info("%d formats: " + " | ".join(s.text.replace("%", "%%") for s in SECRETS), len(SECRETS))
    assert secrets_in(caplog.text) == []
    assert "cluster aks-1: scan failed" in caplog.text
    assert "RuntimeError: ARM said:" in caplog.text  # the traceback is kept, redacted
    for record in caplog.records:
        assert record.exc_info is None  # no exception object left for an exporter to send
        assert secrets_in(record.getMessage() + (record.exc_text or "")) == []


def test_a_bad_format_string_is_logged_not_raised(
    log_redaction: None, caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("shared.x").warning("%d items, %s", "not-a-number", SECRETS[3].text)
    assert "%d items" in caplog.text
    assert secrets_in(caplog.text) == []


def test_function_app_installs_log_redaction() -> None:
    # In a fresh interpreter, as the Functions worker imports it: the trigger modules' log lines
    # (and the SDKs') reach the host's handler redacted.
    code = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, format='%(name)s %(message)s')\n"
        "import function_app\n"
        "from tests.redaction_samples import SECRETS\n"
        "for s in SECRETS:\n"
        "    logging.getLogger('functions.scan_timer').error('scan r1: %s', s.text)\n"
        "logging.getLogger('azure.storage').error(SECRETS[0].text)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("functions.scan_timer scan r1: ") == len(SECRETS)
    assert secrets_in(proc.stdout + proc.stderr) == []


def test_exceptions_leaving_a_block_are_redacted() -> None:
    with pytest.raises(RedactedError) as info, redacted_exceptions():
        raise ValueError(f"storage said: {SECRETS[4].text}")
    assert secrets_in(str(info.value)) == []
    assert str(info.value).startswith("ValueError: storage said:")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    plain = KeyError("no secret here")
    with pytest.raises(KeyError) as kept, redacted_exceptions():
        raise plain
    assert kept.value is plain  # nothing to mask: the original, with its traceback


@pytest.mark.parametrize("trigger", ["scan_timer", "probe_timer"])
def test_trigger_failures_reach_the_host_redacted(
    trigger: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Functions worker sends a raised exception's text to the host (and App Insights)
    # without going through logging.
    def failing(*_: object) -> Any:
        raise RuntimeError(f"cannot reach storage: {SECRETS[0].text} {SECRETS[6].text}")

    module = scan_timer if trigger == "scan_timer" else probe_timer
    monkeypatch.setattr(module, "make_deps", failing)
    monkeypatch.setenv("TUNNELWATCH_SUBSCRIPTIONS", "11111111-1111-1111-1111-111111111111")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    with pytest.raises(RedactedError) as info:
        getattr(module, trigger)(TimerRequest(past_due=False))
    assert "cannot reach storage" in str(info.value)
    assert secrets_in(str(info.value)) == []
