"""nc / ncat / busybox / bash /dev/tcp output: wordings, context, verdict, findings, CLI."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.analysis import netcat
from shared.analysis.findings import Kind, Severity
from shared.analysis.netcat import Status, Tool
from shared.analysis.netcat.lines import read_line
from shared.cli.main import main
from shared.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nc"


def _results(text: str) -> dict[str, str]:
    return {r.target.label(): r.status.value for r in netcat.analyze(text, "t").results}


@pytest.mark.parametrize(
    ("line", "status", "tool", "host", "port"),
    [
        ("Connection to 10.0.0.4 10250 port [tcp/*] succeeded!", "open", "openbsd-nc",
         "10.0.0.4", 10250),
        ("nc: connect to 10.0.0.4 port 10250 (tcp) failed: Connection refused", "refused",
         "openbsd-nc", "10.0.0.4", 10250),
        ("nc: connect to 10.0.0.4 port 10250 (tcp) timed out: Operation now in progress",
         "timeout", "openbsd-nc", "10.0.0.4", 10250),
        ("nc: connect to 10.0.0.4 port 10250 (tcp) failed: No route to host", "unreachable",
         "openbsd-nc", "10.0.0.4", 10250),
        ("nc: connect to 10.0.0.4 port 10250 (tcp) failed: Network is unreachable",
         "unreachable", "openbsd-nc", "10.0.0.4", 10250),
        ('nc: getaddrinfo for host "node-1" port 10250: Name or service not known', "unknown",
         "openbsd-nc", "node-1", 10250),
        ("Ncat: Connected to 10.0.0.4:10250.", "open", "ncat", "10.0.0.4", 10250),
        ("Ncat: Connected to [fd00::4]:10250.", "open", "ncat", "fd00::4", 10250),
        ("Ncat: Connection refused.", "refused", "ncat", None, None),
        ("Ncat: TIMEOUT.", "timeout", "ncat", None, None),
        ("Ncat: Connection timed out.", "timeout", "ncat", None, None),
        ("Ncat: No route to host.", "unreachable", "ncat", None, None),
        ("nc: can't connect to remote host (10.0.0.4): Connection refused", "refused",
         "busybox-nc", "10.0.0.4", None),
        ("10.0.0.4 (10.0.0.4:10250) open", "open", "busybox-nc", "10.0.0.4", 10250),
        ("nc: timed out", "timeout", "busybox-nc", None, None),
        ("Connection to 10.0.0.4 port 10250 [tcp/*] succeeded!", "open", "macos-nc",
         "10.0.0.4", 10250),
        ("nc: connectx to 10.0.0.4 port 10250 (tcp) failed: Connection refused", "refused",
         "macos-nc", "10.0.0.4", 10250),
        ("nc: connectx to 10.0.0.4 port 10250 (tcp) failed: Operation timed out", "timeout",
         "macos-nc", "10.0.0.4", 10250),
        ("bash: /dev/tcp/10.0.0.4/10250: Connection refused", "refused", "bash-dev-tcp",
         "10.0.0.4", 10250),
        ("bash: line 1: /dev/tcp/10.0.0.4/10250: Connection timed out", "timeout",
         "bash-dev-tcp", "10.0.0.4", 10250),
        ("Get https://10.0.0.4:10250/containerLogs: dial tcp 10.0.0.4:10250: i/o timeout",
         "timeout", "go-dial", "10.0.0.4", 10250),
        ("Connection to 10.0.0.4 1194 port [udp/openvpn] succeeded!", "unknown", "openbsd-nc",
         "10.0.0.4", 1194),
    ],
)  # fmt: skip
def test_each_wording(
    line: str, status: str, tool: str, host: str | None, port: int | None
) -> None:
    parsed = read_line(line, "t", 1)
    assert parsed is not None
    assert (parsed.status.value, parsed.tool.value) == (status, tool)
    assert (parsed.target.host, parsed.target.port) == (host, port)


def test_noise_is_ignored() -> None:
    assert read_line("Ncat: Version 7.92 ( https://nmap.org/ncat )", "t", 1) is None
    assert read_line("some unrelated log line", "t", 1) is None
    assert netcat.analyze("hello\nworld\n", "t").verdict is None


def test_real_openbsd_capture() -> None:
    text = (FIXTURES / "openbsd-real.txt").read_text()
    assert _results(text) == {
        "127.0.0.1:10254": "open",
        "127.0.0.1:10250": "timeout",
        "127.0.0.1:10251": "unreachable",
        "127.0.0.1:10252": "unreachable",
        "127.0.0.1:10253": "refused",
        "nonexistent.invalid:10250": "unknown",
        "localhost:10254": "open",
    }


def test_real_bash_capture_merges_the_two_lines_and_uses_exit_status() -> None:
    report = netcat.analyze((FIXTURES / "bash-real.txt").read_text(), "t")
    by = {r.target.label(): r for r in report.results}
    assert by["127.0.0.1:10250"].status is Status.TIMEOUT
    assert by["127.0.0.1:10250"].decisive.tool is Tool.TIMEOUT
    assert by["127.0.0.1:10254"].status is Status.OPEN  # silent success, exit 0
    assert len(by["127.0.0.1:10251"].attempts) == 1  # "connect:" + "/dev/tcp" = one attempt
    assert by["nonexist.invalid:10250"].status is Status.UNKNOWN
    assert "name resolution" in by["nonexist.invalid:10250"].decisive.reason


def test_framing_gives_ncat_failures_a_target_and_without_it_they_stay_unknown() -> None:
    framed = "target=10.0.0.5:10250\nNcat: TIMEOUT.\n10.0.0.5:10250 exit=1\n"
    assert _results(framed) == {"10.0.0.5:10250": "timeout"}
    assert _results("Ncat: TIMEOUT.\n") == {"?:?": "timeout"}
    busybox = (
        "target=10.0.0.7:10250\nnc: can't connect to remote host (10.0.0.7): Connection refused\n"
    )
    assert _results(busybox) == {"10.0.0.7:10250": "refused"}


@pytest.mark.parametrize(
    ("exit_line", "status"),
    [("exit=0", "open"), ("exit=124", "timeout"), ("exit=137", "timeout"), ("exit=2", "unknown")],
)
def test_exit_status_decides_only_when_no_tool_spoke(exit_line: str, status: str) -> None:
    assert _results(f"target=10.0.0.5:10250 {exit_line}\n") == {"10.0.0.5:10250": status}
    spoke = f"target=10.0.0.5:10250\nnc: connect to 10.0.0.5 port 10250 (tcp) failed: Connection refused\n10.0.0.5:10250 {exit_line}\n"
    assert _results(spoke) == {"10.0.0.5:10250": "refused"}


def test_framed_target_without_output_is_unknown_not_dropped() -> None:
    assert _results("target=10.0.0.5:10250\ntarget=10.0.0.6:10250\n") == {
        "10.0.0.5:10250": "unknown",
        "10.0.0.6:10250": "unknown",
    }


def test_several_addresses_last_decisive_attempt_wins_and_mixed_is_flagged() -> None:
    text = (
        "nc: connect to node-1 (fd00::5) port 10250 (tcp) failed: Connection refused\n"
        "Connection to node-1 (10.0.0.5) 10250 port [tcp/*] succeeded!\n"
    )
    (result,) = netcat.analyze(text, "t").results
    assert result.status is Status.OPEN
    assert result.mixed and len(result.attempts) == 2


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ok\ntarget=\n", 2),
        ("target=10.0.0.5\n", 1),
        ("target=10.0.0.5:99999\n", 1),
        ("target=fd00::1:10250\n", 1),
        ("x\ny\n10.0.0.5:10250 exit=abc\n", 3),
        ("target=10.0.0.5:10250 junk\n", 1),
        ("abc\x00def\n", 1),
    ],
)
def test_bad_input_names_the_line(text: str, line: int) -> None:
    with pytest.raises(InputError) as err:
        netcat.analyze(text, "probe.txt")
    assert err.value.line == line
    assert str(err.value).startswith(f"probe.txt:{line}:")


def test_verdicts() -> None:
    one = "Connection to a 1 port [tcp/*] succeeded!\n"
    assert netcat.analyze(one, "t", expect=1).verdict is Status.OPEN
    # Issue 15, defect 7: a capture cannot show that no target follows (a second one, maybe
    # refused, cut off); nor that a last line without a newline was not cut.
    assert netcat.analyze(one, "t").verdict is None
    assert netcat.analyze(one, "t", expect=2).verdict is None
    assert netcat.analyze(one.rstrip("\n"), "t", expect=1).verdict is None
    assert netcat.analyze(one.rstrip("\n"), "t", whole=True).verdict is Status.OPEN
    cut = one + "nc: connect to b port 1 (tcp) failed: Connection"
    report = netcat.analyze(cut, "t", expect=2)
    assert report.verdict is None and "(line 2) has no newline" in report.cut
    mixed = "Connection to a 1 port [tcp/*] succeeded!\nNcat: TIMEOUT.\n"
    assert netcat.analyze(mixed, "t").verdict is Status.TIMEOUT
    unknown = "Connection to a 1 port [tcp/*] succeeded!\ntarget=b:2\n"
    assert netcat.analyze(unknown, "t").verdict is None
    assert netcat.analyze("", "t").verdict is None


def test_findings_leave_the_cause_open_and_point_at_the_checks() -> None:
    text = "nc: connect to 10.0.0.5 port 10250 (tcp) timed out: Operation now in progress\ntarget=10.0.0.6:10250\n"
    found = netcat.findings(netcat.analyze(text, "t"))
    problem, undecided = found
    assert problem.check == "probe.tcp" and problem.cause is None
    assert problem.kind is Kind.PROBLEM and problem.severity is Severity.CRITICAL
    assert problem.remediation is not None
    assert all(w in problem.remediation.summary for w in ("nsg", "ufw", "iptables"))
    assert "timed out" in problem.evidence[0]
    assert undecided.kind is Kind.INCONCLUSIVE
    other = netcat.findings(
        netcat.analyze("nc: connect to h port 8080 (tcp) failed: Connection refused\n", "t")
    )
    assert other[0].severity is Severity.WARNING  # not a tunnel port


# -- the real tool, on loopback (no namespace needed) ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("nc") is None, reason="needs OpenBSD nc")
def test_real_nc_refused_and_open_are_read_back() -> None:
    closed = _free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        open_port = listener.getsockname()[1]
        outputs = []
        for port in (closed, open_port):
            proc = subprocess.run(
                ["nc", "-vz", "-w", "2", "127.0.0.1", str(port)],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            outputs.append(f"target=127.0.0.1:{port}\n{proc.stderr}{proc.stdout}")
    assert _results("".join(outputs)) == {
        f"127.0.0.1:{closed}": "refused",
        f"127.0.0.1:{open_port}": "open",
    }


# -- robustness ---------------------------------------------------------------------------------

_VOCAB = [
    "target=10.0.0.5:10250",
    "target=[fd00::5]:10250/udp",
    "10.0.0.5:10250 exit=124",
    "Ncat: TIMEOUT.",
    "bash: connect: Connection refused",
    "bash: /dev/tcp/10.0.0.5/10250: Connection refused",
    "nc: timed out",
    "Connection to 10.0.0.5 10250 port [tcp/*] succeeded!",
    "nc: connect to 10.0.0.5 port 10250 (tcp) failed: No route to host",
    "10.0.0.5 (10.0.0.5:10250) open",
    "target=",
    "exit=",
]


def _ok_or_input_error(text: str) -> None:
    try:
        report = netcat.analyze(text, "fuzz")
    except InputError as exc:
        assert exc.source == "fuzz"
        return
    netcat.findings(report)
    json.dumps([r.to_json() for r in report.results])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_crashes(text: str) -> None:
    _ok_or_input_error(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_VOCAB), st.text(max_size=40)), max_size=12))
def test_random_lines_never_crash(lines: list[str]) -> None:
    _ok_or_input_error("\n".join(lines))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.txt"))),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 50), st.text(max_size=8)), max_size=5),
)
def test_mutated_captures_never_crash(name: str, cuts: list[tuple[int, int, str]]) -> None:
    text = (FIXTURES / name).read_text()
    for start, length, junk in cuts:
        i = start % (len(text) + 1)
        text = text[:i] + junk + text[i + length :]
    _ok_or_input_error(text)


# -- command line -------------------------------------------------------------------------------


def test_cli_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "nc", str(FIXTURES / "openbsd-real.txt"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"results", "counts", "findings"}
    assert set(doc["results"][0]) >= {"target", "host", "port", "status", "tool", "line"}
    assert doc["counts"]["refused"] == 1 and doc["counts"]["open"] == 2

    good = tmp_path / "good.txt"
    good.write_text("Connection to 10.0.0.5 10250 port [tcp/*] succeeded!\n")
    assert main(["analyze", "nc", str(good), "--expect", "1"]) == 0
    assert "10.0.0.5:10250" in capsys.readouterr().out
    assert main(["analyze", "nc", str(good)]) == 3  # more targets may follow
    assert "capture incomplete: nc prints nothing after its last target" in (
        capsys.readouterr().out
    )

    nothing = tmp_path / "nothing.txt"
    nothing.write_text("hello\n")  # lines, none a connection test's: bad input (issue 10)
    assert main(["analyze", "nc", str(nothing)]) == 2
    assert f"{nothing}: no connection test output recognised" in capsys.readouterr().err
    nothing.write_text("")  # nothing captured (a silent `nc -z`): inconclusive
    assert main(["analyze", "nc", str(nothing)]) == 3
    capsys.readouterr()

    bad = tmp_path / "bad.txt"
    bad.write_text("target=nope\n")
    assert main(["analyze", "nc", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{bad}:1:" in err and "host>:<port>" in err
