"""The limits behind the parser bounds, each shown on the input it is for (issue 15, defect 2):
an error quotes an excerpt, a CLI input past 32 MiB is refused by name, an nc line no tool
could print is reported (not read, never ignored), a blob that inflates past its limit makes
the report inconclusive."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
from pathlib import Path

import pytest

from shared.analysis import netcat
from shared.analysis.ufw.parse import parse_status
from shared.cli.common import MAX_INPUT_BYTES
from shared.cli.main import main
from shared.errors import InputError, excerpt
from shared.probe.output import parse_probe_output
from tests.fuzz.corpus import _UFW_HEAD, _probe, _triage


def test_excerpt_keeps_short_text_and_shortens_long_text() -> None:
    assert excerpt("abc") == "'abc'"
    long = excerpt("x" * 5000)
    assert long.startswith("'" + "x" * 120 + "'...") and "(5,000 characters)" in long
    assert len(long) < 160


def test_a_ufw_error_quotes_an_excerpt_of_a_1_mb_line() -> None:
    with pytest.raises(InputError) as err:
        parse_status(_UFW_HEAD + "10250/tcp ALLOW IN " + "x:" * 500_000 + "\n", "status.txt")
    message = str(err.value)
    assert message.startswith("status.txt:8: ")
    assert len(message) < 700 and "characters)" in message


def test_any_input_error_message_is_capped() -> None:
    assert len(str(InputError("f", "y" * 100_000))) < 700


def test_cli_refuses_an_input_past_the_limit_by_name(tmp_path: Path) -> None:
    big = tmp_path / "huge-nc.txt"
    with big.open("wb") as f:
        f.truncate(MAX_INPUT_BYTES + 1)  # sparse: no 32 MiB written to disk
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["analyze", "nc", str(big)])
    assert code == 2
    assert str(big) in err.getvalue() and "32 MiB" in err.getvalue()


def test_an_input_at_the_limit_is_read(tmp_path: Path) -> None:
    line = b"nc: connect to 10.0.0.5 port 10250 (tcp) failed: Connection refused\n"
    path = tmp_path / "nc.txt"
    path.write_bytes(line * 3)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["analyze", "nc", str(path)]) == 1


def test_an_nc_line_too_long_to_read_is_reported_and_outvotes_nothing() -> None:
    text = (
        "target=10.0.0.5:10250\n"
        + "nc: connect to 10.0.0.5 port 10250 (tcp) failed: " + "a:" * 5000 + "\n"
        + "Connection to 10.0.0.5 10250 port [tcp/*] succeeded!\n"
    )  # fmt: skip
    report = netcat.analyze(text, "nc.txt")
    assert report.verdict is None  # not "open": one line said something we did not read
    found = netcat.findings(report)
    (unread,) = [f for f in found if "not read" in f.title]
    assert unread.kind.value == "inconclusive"
    assert "(10,049 characters)" in unread.evidence[0] and len(unread.evidence[0]) < 300


def test_a_blob_past_the_decompression_limit_is_an_error_of_the_report() -> None:
    bomb = base64.b64encode(gzip.compress(b"\0" * (5 * 1024 * 1024), 9)).decode()
    report = parse_probe_output(_probe([f"ncgz\t{bomb}"], "triage"), "probe")
    assert report.complete and report.targets is None
    (error,) = report.errors
    assert "larger than 4194304 bytes" in error.message


def test_the_reported_71_second_triage_reads_at_once() -> None:
    blob = _triage("a:" * 64000)
    assert len(blob) < 1000  # the 316-byte blob, give or take the framing
    report = parse_probe_output(blob, "probe")
    assert report.targets is not None and report.targets.verdict is None
